"""Sweep configs in wandb's sweep-config format: loading, validation and the trials they describe. The same
YAML/JSON file feeds a real `wandb.sweep` / `wandb.agent` (grid, random, bayes) when online, and runs here
without a network (grid, random) through sweep_runner.py's `run_local_sweep`.

A config (https://docs.wandb.ai/models/sweeps/sweep-config-keys):
    method: grid | random | bayes
    metric: {name: val_acc, goal: maximize}        # goal defaults to minimize, as in wandb
    run_cap: 20                                    # optional
    parameters:
      optimizer: {values: [sgd, adam]}             # optional probabilities: [0.3, 0.7] (random)
      epochs: {value: 5}                           # fixed
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}
      hidden_size: {distribution: int_uniform, min: 32, max: 128}   # min/max alone: inferred
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import re

from common.errors import UserError
from common.formats import is_real, is_whole, read_text

GOALS = ("maximize", "minimize")
MAX_NODES = 100_000   # values, lists and mappings in a sweep config, each YAML alias counted where it is used
MAX_GRID = 100_000    # trials of a grid run to its end, and values of any one parameter's grid
ALL_METHODS = ("grid", "random", "bayes")  # what wandb accepts; METHODS below is what runs offline


# ------------------------------------------------------------------------------------------------
# distributions: how to sample one value, and (for the discrete ones) every value for a grid
# ------------------------------------------------------------------------------------------------
def _uniform(spec: dict, rng: np.random.Generator) -> float:
    return float(rng.uniform(spec["min"], spec["max"]))


def _int_uniform(spec: dict, rng: np.random.Generator) -> int:
    return int(rng.integers(spec["min"], spec["max"], endpoint=True))  # both ends included


def _log_uniform_values(spec: dict, rng: np.random.Generator) -> float:
    """Uniform in log space between the values min and max (wandb's `log_uniform_values`)."""
    low, high = math.log(spec["min"]), math.log(spec["max"])
    return float(min(max(math.exp(rng.uniform(low, high)), spec["min"]), spec["max"]))


def _q_uniform(spec: dict, rng: np.random.Generator) -> int | float:
    """round(uniform(min, max) / q) * q, as wandb does; ints stay ints."""
    return _quantise(spec, rng.uniform(spec["min"], spec["max"]))


def _quantise(spec: dict, value: float) -> int | float:
    q = spec.get("q", 1)
    out = round(value / q) * q
    return int(out) if all(is_whole(spec.get(k, 1)) for k in ("min", "max", "q")) else float(out)


def _int_steps(spec: dict) -> range:
    return range(spec["min"], spec["max"] + 1)


def _q_steps(spec: dict) -> range:
    """The multiples k of q (value k * q) between min and max."""
    q = spec.get("q", 1)
    return range(math.ceil(spec["min"] / q), math.floor(spec["max"] / q) + 1)


def _int_grid(spec: dict) -> list:
    return list(_int_steps(spec))


def _q_grid(spec: dict) -> list:
    q = spec.get("q", 1)
    return [_quantise(spec, k * q) for k in _q_steps(spec)]


SAMPLERS: dict[str, Callable[[dict, np.random.Generator], Any]] = {
    "uniform": _uniform,
    "int_uniform": _int_uniform,
    "log_uniform_values": _log_uniform_values,
    "q_uniform": _q_uniform,
}
# wandb's grid search accepts these distributions besides values/value: they are finite sets
GRID_VALUES: dict[str, Callable[[dict], list]] = {"int_uniform": _int_grid, "q_uniform": _q_grid}


def _kind(spec: dict) -> str | None:
    """'values', 'value' or a distribution name (min/max without one: inferred like wandb)."""
    dist = spec.get("distribution")
    if dist == "categorical" or (dist is None and "values" in spec):
        return "values"
    if dist == "constant" or (dist is None and "value" in spec):
        return "value"
    if dist is None and "min" in spec and "max" in spec:
        return "int_uniform" if is_whole(spec["min"]) and is_whole(spec["max"]) else "uniform"
    return dist


# ------------------------------------------------------------------------------------------------
# loading and validating a config
# ------------------------------------------------------------------------------------------------
def load_sweep_config(path: Path | str) -> dict:
    """Read a sweep config from .yaml/.yml/.json and validate it; returns the dict unchanged, ready
    for `wandb.sweep(config, project=...)` or `run_local_sweep`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep config {path} not found; pass the path of a .yaml or .json sweep config")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise UserError(f"sweep config {path}: unknown file type {path.suffix!r}; use .yaml, .yml or .json")
    try:
        text = read_text(path, "pass the path of a .yaml or .json sweep config")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read sweep config {path} ({getattr(err, 'strerror', None) or type(err).__name__}); "
                        f"pass the path of a .yaml or .json sweep config") from None
    try:
        if suffix == ".json":
            config = json.loads(text)
        else:
            config = _load_yaml(text)
    except (ValueError, ImportError) as err:  # json.JSONDecodeError is a ValueError
        raise UserError(f"sweep config {path} could not be parsed ({err}); fix the syntax") from None
    except Exception as err:  # yaml.YAMLError without importing yaml at module level
        raise UserError(f"sweep config {path} could not be parsed ({str(err).splitlines()[0]}); "
                        f"fix the YAML syntax") from None
    _check_size(config, str(path))
    return validate_sweep_config(config, source=str(path))


def _check_size(config: Any, source: str) -> None:
    """Refuse a config of more than MAX_NODES values once its YAML aliases are expanded: nine nested lists of
    nine aliases each (a 'billion laughs') parse into little but grew to 11 GB in a minute when used."""
    stack, seen = [config], 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise UserError(f"sweep config {source} holds more than {MAX_NODES:,} values (YAML aliases counted "
                            f"where they are used); a sweep config is a few dozen")
        if isinstance(value, dict):
            stack += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            stack += value


def _load_yaml(text: str) -> Any:
    """yaml.safe_load, except that 1e-4 is a float (YAML 1.2) rather than the string PyYAML's
    YAML 1.1 rules make of it, so `min: 1e-4` and `values: [1e-3, 1e-4]` mean numbers."""

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"), list("-+0123456789."))
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def validate_sweep_config(config: Any, *, source: str = "sweep config") -> dict:
    """Check a config the way wandb would (method, metric, each parameter's spec); raise one-line
    UserErrors naming `source` and the parameter at fault. Returns the config itself."""
    def fail(problem: str) -> UserError:
        return UserError(f"{source}: {problem}")

    if not isinstance(config, dict):
        raise fail("expected a mapping with method, metric and parameters at the top level")
    method = config.get("method")
    if method not in ALL_METHODS:
        raise fail(f"unknown method {method!r}; use one of {', '.join(ALL_METHODS)}")
    metric = config.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise fail("metric needs a name (e.g. metric: {name: val_acc, goal: maximize})")
    if metric.get("goal", "minimize") not in GOALS:
        raise fail(f"metric goal {metric['goal']!r} is unknown; use maximize or minimize")
    run_cap = config.get("run_cap")
    if run_cap is not None and not (is_whole(run_cap) and run_cap > 0):
        raise fail(f"run_cap must be a positive integer, got {run_cap!r}")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise fail("parameters must map at least one parameter name to a spec "
                   "(values, value or distribution with min and max)")
    for name, spec in parameters.items():
        _validate_parameter(name, spec, method, fail)
    return config


def _validate_parameter(name: str, spec: Any, method: str, fail: Callable[[str], UserError]) -> None:
    where = f"parameter {name!r}"
    if not isinstance(spec, dict):
        raise fail(f"{where} must be a mapping such as {{values: [...]}} or {{value: x}}, got {spec!r}")
    if "parameters" in spec:
        raise fail(f"{where} nests parameters; the local runner supports flat parameters only, "
                   f"so flatten it (e.g. {name}_a, {name}_b)")
    kind = _kind(spec)
    if kind is None:
        raise fail(f"{where} has none of values, value or distribution (with min and max); add one")
    if kind == "values":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise fail(f"{where} has empty or non-list values; give at least one value")
        probabilities = spec.get("probabilities")
        if probabilities is not None:
            if method == "grid":
                raise fail(f"{where} sets probabilities, which grid search does not allow; drop them "
                           f"or use method: random")
            numbers = isinstance(probabilities, list) and all(is_real(x) for x in probabilities)
            p = np.asarray(probabilities, dtype=float) if numbers else None
            if p is None or p.shape != (len(values),) or (p < 0).any() or abs(p.sum() - 1) > 1e-6:
                raise fail(f"{where} probabilities must be {len(values)} non-negative numbers summing to 1")
        return
    if kind == "value":
        if "value" not in spec:
            raise fail(f"{where} uses distribution constant without a value; add value: x")
        return
    if kind not in SAMPLERS:
        raise fail(f"{where} has unknown distribution {kind!r}; the local runner supports "
                   f"{', '.join(SAMPLERS)} (or values / value)")
    low, high = spec.get("min"), spec.get("max")
    if not (is_real(low) and is_real(high)):
        raise fail(f"{where} distribution {kind} needs numeric min and max, got min={low!r} max={high!r}")
    if low > high:
        raise fail(f"{where} has min {low} > max {high}; swap them")
    if kind == "int_uniform" and not (is_whole(low) and is_whole(high)):
        raise fail(f"{where} int_uniform needs integer min and max, got {low!r} and {high!r}")
    if kind == "log_uniform_values" and low <= 0:
        raise fail(f"{where} log_uniform_values needs min > 0 (these are values, not exponents), got {low}")
    if kind == "q_uniform" and not (is_real(spec.get("q", 1)) and spec.get("q", 1) > 0):
        raise fail(f"{where} q_uniform needs a positive q, got {spec.get('q')!r}")
    if method == "grid" and kind not in GRID_VALUES:
        raise fail(f"{where} uses the continuous distribution {kind}, which grid search cannot enumerate; "
                   f"give values: [...] or use method: random")
    count = _grid_count(spec) if method == "grid" else 0
    if count > MAX_GRID:
        raise fail(f"{where} spans {count:,} grid values, more than {MAX_GRID:,}; narrow min / max, "
                   f"raise q, or use method: random")


def metric_of(config: Mapping) -> tuple[str, str]:
    """(metric name, goal); the goal defaults to minimize, as in wandb."""
    return config["metric"]["name"], config["metric"].get("goal", "minimize")


# ------------------------------------------------------------------------------------------------
# trials: the configurations a local sweep runs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """One configuration of a sweep: its position in the method's order and its parameters."""
    index: int
    params: dict

    @property
    def name(self) -> str:
        return trial_name(self.index)


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def _cap(config: Mapping, count: int | None) -> int | None:
    caps = [c for c in (count, config.get("run_cap")) if c is not None]
    return min(caps) if caps else None


def grid_trials(config: Mapping, count: int | None = None, seed: int = 0) -> list[Trial]:
    """The cartesian product of every parameter's values in config order, the last parameter
    varying fastest (fixed `value`s appear in every trial); the first `count`/`run_cap` of it."""
    names = list(config["parameters"])
    choices = [_grid_values(config["parameters"][n]) for n in names]
    cap = _cap(config, count)
    size = math.prod(len(c) for c in choices)
    if cap is None and size > MAX_GRID:
        raise UserError(f"the grid holds {size:,} trials, more than {MAX_GRID:,} run to the end; pass --count N "
                        f"(its first N) or set run_cap in the config")
    product = itertools.product(*choices)
    combos = itertools.islice(product, cap) if cap is not None else product
    return [Trial(i, dict(zip(names, combo))) for i, combo in enumerate(combos)]


def _grid_count(spec: dict) -> int:
    """How many values a parameter's grid holds, without listing them."""
    kind = _kind(spec)
    if kind == "values":
        return len(spec["values"])
    if kind == "value":
        return 1
    steps = _int_steps(spec) if kind == "int_uniform" else _q_steps(spec)
    return max(0, steps.stop - steps.start)   # not len(): a range past 2**63 has none


def _grid_values(spec: dict) -> list:
    kind = _kind(spec)
    if kind == "values":
        return list(spec["values"])
    if kind == "value":
        return [spec["value"]]
    return GRID_VALUES[kind](spec)


def random_trials(config: Mapping, count: int | None = None, seed: int = 0) -> list[Trial]:
    """`count` (or `run_cap`) independent samples. Trial i draws from its own generator seeded with
    (seed, i), so a longer sweep with the same seed extends a shorter one trial for trial."""
    n = _cap(config, count)
    if n is None:
        raise UserError("random search runs until stopped on wandb; offline it needs a number of "
                        "trials: pass a count (--count N) or set run_cap in the config")
    return [Trial(i, sample_params(config, np.random.default_rng([seed, i]))) for i in range(n)]


def sample_params(config: Mapping, rng: np.random.Generator) -> dict:
    """One random draw of every parameter (values uniformly or by their probabilities)."""
    params = {}
    for name, spec in config["parameters"].items():
        kind = _kind(spec)
        if kind == "values":
            values = spec["values"]
            params[name] = values[int(rng.choice(len(values), p=spec.get("probabilities")))]
        elif kind == "value":
            params[name] = spec["value"]
        else:
            params[name] = SAMPLERS[kind](spec, rng)
    return params


# the methods that run offline; wandb's bayes needs its server (it fits a model to finished runs)
METHODS: dict[str, Callable[..., list[Trial]]] = {"grid": grid_trials, "random": random_trials}


def make_trials(config: Mapping, count: int | None = None, seed: int = 0) -> list[Trial]:
    """The trials a local sweep runs, by the config's method."""
    method = config["method"]
    if count is not None and count < 1:
        raise UserError(f"the number of trials must be at least 1, got {count}; pass a positive --count")
    if method not in METHODS:
        raise UserError(f"method {method} needs the wandb service: run with --wandb online (after "
                        f"`wandb login`), or set method: grid or random to sweep offline")
    return METHODS[method](config, count, seed)

