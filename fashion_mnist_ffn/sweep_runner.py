"""Running a sweep: locally (grid, random) through `run_local_sweep`, which records one JSON line per finished
trial in <sweep_dir>/trials.jsonl and continues an interrupted sweep where it stopped, or on wandb
(`wandb.sweep` / `wandb.agent`, also bayes) when online. The config format is sweep_config.py's.
"""
from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from common.errors import TrainingDiverged, UserError
from common.progress import progress
from common.formats import is_real, is_whole
from common.rundir import read_json, read_jsonl, write_json
from fashion_mnist_ffn.sweep_config import Trial, make_trials, metric_of, validate_sweep_config

TRIALS_FILE = "trials.jsonl"
SWEEP_FILE = "sweep.json"

# train_fn(params, trial_name) -> the run's summary, holding the sweep's metric
TrainFn = Callable[[dict, str], Mapping[str, Any]]


# ------------------------------------------------------------------------------------------------
# running a sweep locally
# ------------------------------------------------------------------------------------------------
@dataclass
class TrialResult:
    """A finished trial as trials.jsonl holds it. `value` is the sweep metric (NaN when diverged)."""
    name: str
    index: int
    params: dict
    status: str  # "ok" or "diverged"
    metric: str
    value: float
    seconds: float
    summary: dict = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and math.isfinite(self.value)

    def get(self, metric: str) -> float:
        """The value of `metric` (the sweep's own, or any number in the summary such as test_acc);
        NaN for a diverged trial or a metric the summary lacks."""
        if not self.ok:
            return math.nan
        if metric == self.metric:
            return self.value
        found = self.summary.get(metric)
        return float(found) if is_real(found) else math.nan

    def to_record(self) -> dict:
        return _jsonable({"name": self.name, "index": self.index, "params": self.params,
                          "status": self.status, "metric": self.metric, "value": self.value,
                          "seconds": round(self.seconds, 3), "summary": self.summary,
                          "error": self.error})

    @classmethod
    def from_record(cls, record: object) -> "TrialResult":
        """A trials.jsonl line as to_record wrote it; anything else is a ValueError (load_trials words it)."""
        if not isinstance(record, dict):
            raise ValueError("not an object")
        value, seconds = record.get("value"), record.get("seconds", 0.0)
        summary, error = record.get("summary") or {}, record.get("error", "")
        kinds = ((record["name"], str), (record["params"], dict), (record["status"], str), (record["metric"], str),
                 (summary, dict), (error, str))
        if not all(isinstance(v, kind) for v, kind in kinds) or not is_whole(record["index"]) \
                or not (value is None or is_real(value)) or not is_real(seconds):
            raise ValueError("a field of another kind")
        return cls(record["name"], int(record["index"]), record["params"], record["status"], record["metric"],
                   math.nan if value is None else float(value), float(seconds), summary, error)


def run_local_sweep(config: Mapping, train_fn: TrainFn, sweep_dir: Path | str, *, count: int | None = None,
                    seed: int = 0, quiet: bool = False, overwrite: bool = False) -> list[TrialResult]:
    """Run every trial of a grid/random sweep through `train_fn(params, trial_name) -> summary`.

    Each finished trial is appended to sweep_dir/trials.jsonl at once, so an interrupted sweep run
    again with the same config skips what is done. A trial that raises TrainingDiverged is recorded
    as "diverged" (value NaN) and the sweep goes on; any other error stops it (nothing recorded for
    that trial, so it reruns next time). sweep_dir/sweep.json holds the config, method, count and
    seed; another config (or seed) in the same folder is refused unless `overwrite`.
    Returns the results of this sweep's trials in order, earlier runs' included."""
    config = validate_sweep_config(copy.deepcopy(dict(config)))
    metric, goal = metric_of(config)
    trials = make_trials(config, count, seed)
    sweep_dir = Path(sweep_dir)
    done = _prepare_sweep_dir(sweep_dir, config, count=count, seed=seed, overwrite=overwrite)

    results: dict[int, TrialResult] = {}
    todo = []
    for trial in trials:
        previous = done.get(trial.name)
        if previous is not None and _same(previous.params, trial.params):
            results[trial.index] = previous
        else:
            todo.append(trial)
    if "goal" not in config["metric"] and not quiet:
        print(f"note: the sweep config sets no metric goal, so {metric} is minimised (wandb's default); "
              f"add goal: maximize under metric if higher is better")
    if done and not quiet:
        print(f"sweep {sweep_dir.name}: {len(results)} of {len(trials)} trials already done; "
              f"running {len(todo)}")

    bar = progress(todo, desc=f"sweep {sweep_dir.name}", total=len(todo), quiet=quiet, leave=True)
    for trial in bar:
        record = _run_trial(trial, train_fn, metric).to_record()
        _append(sweep_dir / TRIALS_FILE, record)
        result = TrialResult.from_record(record)  # as a later load_trials reads it back
        results[trial.index] = result
        finished = [r for r in results.values() if r.ok]
        if finished and hasattr(bar, "set_postfix_str"):
            best = best_trial(finished, goal)
            bar.set_postfix_str(f"best {best.name} {metric}={best.value:.4g}")
        if not quiet:
            shown = f"{metric}={result.value:.4g}" if result.ok else f"diverged ({result.error})"
            _write(bar, f"{trial.name} {shown} in {result.seconds:.1f} s  {_short_params(trial.params)}")
    return [results[t.index] for t in trials]


def _run_trial(trial: Trial, train_fn: TrainFn, metric: str) -> TrialResult:
    start = time.perf_counter()
    try:
        summary = dict(train_fn(copy.deepcopy(trial.params), trial.name))
    except TrainingDiverged as err:
        return TrialResult(trial.name, trial.index, trial.params, "diverged", metric, math.nan,
                           time.perf_counter() - start, {}, str(err))
    seconds = time.perf_counter() - start
    if not is_real(summary.get(metric)):
        raise UserError(f"{trial.name}: the training function's summary has no number {metric!r} (the "
                        f"sweep's metric name); it returned {sorted(summary)}: return it, or fix metric.name")
    value = float(summary[metric])
    status = "ok" if math.isfinite(value) else "diverged"
    return TrialResult(trial.name, trial.index, trial.params, status, metric, value, seconds, summary,
                       "" if status == "ok" else f"{metric} is {value}")


def best_trial(results: list[TrialResult], goal: str) -> TrialResult | None:
    """The finished trial with the best metric value (None when none finished)."""
    finished = [r for r in results if r.ok]
    if not finished:
        return None
    pick = max if goal == "maximize" else min
    return pick(finished, key=lambda r: r.value)


def _prepare_sweep_dir(sweep_dir: Path, config: dict, *, count: int | None, seed: int,
                       overwrite: bool) -> dict[str, TrialResult]:
    """Check sweep.json against this sweep, write it, and return the trials already finished."""
    sweep_file, trials_file = sweep_dir / SWEEP_FILE, sweep_dir / TRIALS_FILE
    if overwrite:
        sweep_file.unlink(missing_ok=True)
        trials_file.unlink(missing_ok=True)
    if sweep_file.exists():
        previous = read_json(sweep_file, "pass --overwrite to start over, or pick another sweep folder", keys=())
        if _canonical(previous.get("config")) != _canonical(config):
            raise UserError(f"{sweep_dir} holds a sweep with another config; use the same config to "
                            f"continue it, pass --overwrite to start over, or pick another sweep folder")
        if config["method"] == "random" and previous.get("seed") != seed:
            raise UserError(f"{sweep_dir} holds a random sweep drawn with seed {previous.get('seed')} "
                            f"(now {seed}); use the same seed, --overwrite, or another sweep folder")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_file, {"config": config, "method": config["method"], "count": count, "seed": seed,
                            "metric": config["metric"]})
    done = load_trials(sweep_dir)
    if trials_file.exists():  # rewritten whole: drops a cut-off last line, ends with a newline
        fd, tmp = tempfile.mkstemp(prefix=f".{TRIALS_FILE}.", dir=sweep_dir)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(json.dumps(r.to_record()) + "\n" for r in done)
        os.replace(tmp, trials_file)
    return {r.name: r for r in done}


def load_trials(sweep_dir: Path | str) -> list[TrialResult]:
    """Every trial recorded in sweep_dir/trials.jsonl, in index order (the last record of a name wins). A last
    line cut off by an interrupted write is left out (read_jsonl): the runner runs that trial again."""
    trials = read_jsonl(Path(sweep_dir) / TRIALS_FILE, TrialResult.from_record, "a trial record",
                        "fix or delete that line (or the file, to rerun every trial)",
                        unreadable="delete it to rerun every trial")
    return sorted({r.name: r for r in trials}.values(), key=lambda r: r.index)


def load_sweep(sweep_dir: Path | str) -> tuple[dict, list[TrialResult]]:
    """(sweep.json's contents, the recorded trials): everything a report needs, without rerunning."""
    sweep_file = Path(sweep_dir) / SWEEP_FILE
    if not sweep_file.exists():
        raise UserError(f"no sweep in {sweep_dir} (no {SWEEP_FILE}); run the sweep first or fix the path")
    return read_json(sweep_file, "run the sweep again with --overwrite", keys=()), load_trials(sweep_dir)


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record, allow_nan=False) + "\n")
        handle.flush()


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to null, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)


def _canonical(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True)


def _same(a: Mapping, b: Mapping) -> bool:
    return _canonical(a) == _canonical(b)


def _short_params(params: Mapping) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_value(value: Any) -> str:
    """A parameter value as tables and plots show it: lists as '128-64', floats to 4 digits."""
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value) if value else "[]"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _write(bar: Any, line: str) -> None:
    writer = getattr(bar, "write", None)
    (writer or print)(line)


# ------------------------------------------------------------------------------------------------
# running a sweep on wandb
# ------------------------------------------------------------------------------------------------
def run_wandb_sweep(config: Mapping, train_fn: TrainFn, *, project: str, count: int | None = None,
                    entity: str | None = None) -> str:
    """Create the sweep on wandb (any method, bayes included) and run `count` trials of it in this
    process with wandb's agent. Each trial: wandb.init() inside the agent, params from run.config,
    train_fn(params, run.name), its summary logged to run.summary. Returns the sweep id, which
    `wandb agent <entity/project/id>` on other machines can join."""
    config = validate_sweep_config(copy.deepcopy(dict(config)))
    try:
        import wandb   # optional and slow to import: only for a sweep on wandb
    except ImportError:
        raise UserError("--wandb online needs the wandb package: pip install wandb") from None
    metric, _ = metric_of(config)
    try:
        sweep_id = wandb.sweep(sweep=copy.deepcopy(config), project=project, entity=entity)
    except Exception as err:  # wandb raises many types for login and network problems
        raise UserError(f"wandb could not create the sweep ({err}); run `wandb login`, or sweep "
                        f"offline with --wandb offline") from None

    def one_trial() -> None:
        run = wandb.init()
        try:
            params = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
            name = run.name or run.id
            try:
                summary = dict(train_fn(params, name))
            except TrainingDiverged as err:
                summary = {"status": "diverged", "error": str(err)}
            else:
                summary.setdefault("status", "ok" if is_real(summary.get(metric)) else "missing metric")
            run.summary.update({k: v for k, v in _jsonable(summary).items()
                                if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
        finally:
            run.finish()

    wandb.agent(sweep_id, function=one_trial, count=count, project=project, entity=entity)
    return sweep_id
