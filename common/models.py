"""One convention for model configs and for rebuilding a model from a checkpoint.

A model's configuration is a frozen dataclass that inherits ModelConfig:

    @dataclass(frozen=True)
    class NetConfig(ModelConfig):
        width: int = 64
        layers: tuple[int, ...] = (2, 2)
        def describe(self) -> str: return f"net w{self.width}"

`to_dict()` is what a checkpoint (and summary.json) stores: JSON-friendly, tuples as lists; `from_dict()` reads it
back (lists back to tuples where the field is a tuple) and refuses unknown fields in one line. `rebuild_model` is
the one way a script turns a checkpoint's {"model_config": ..., "model": ...} back into a model: every way a file
can fail to fit (not a checkpoint of this kind, another architecture, missing weights) is one UserError that names
the file, never a load_state_dict traceback.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from common.checkpoint import check_finite
from common.errors import UserError

C = TypeVar("C", bound="ModelConfig")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _wrong_type(field: dataclasses.Field, value: Any) -> bool:
    """Whether `value` is not of the kind the field's default is (bool, int, a number for a float, str, tuple,
    list); a field without a default, or whose default is None, takes anything."""
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if default is dataclasses.MISSING or default is None:
        return False
    if isinstance(default, bool) or isinstance(value, bool):
        return not (isinstance(default, bool) and isinstance(value, bool))
    if isinstance(default, float):
        return not isinstance(value, (int, float))
    return not isinstance(value, type(default))


def _is_tuple_field(field: dataclasses.Field) -> bool:
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    return str(annotation).startswith("tuple")


class ModelConfig:
    """Mixin for a model's frozen config dataclass: to_dict / from_dict / describe."""

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        if not isinstance(values, Mapping):
            raise UserError(f"a {cls.__name__} must be a mapping of field names to values, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"{cls.__name__} has no field(s) {', '.join(map(str, unknown))}: the file was written "
                            f"by another model or another version")
        kwargs = {k: tuple(v) if isinstance(v, list) and _is_tuple_field(fields[k]) else v for k, v in values.items()}
        wrong = [f"{k} = {str(v)[:40]}" for k, v in kwargs.items() if _wrong_type(fields[k], v)]
        if wrong:
            raise UserError(f"{cls.__name__}: {', '.join(wrong)}: not of its field's type; the file was written by "
                            f"another model or was damaged")
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise UserError(f"{cls.__name__}: {err}") from None

    def describe(self) -> str:
        raise NotImplementedError


def count_parameters(model, trainable_only: bool = False) -> int:
    """All of a torch module's parameters, or only those that require gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def rebuild_model(state: Any, build: Callable[[dict], Any], source: Path | str, what: str):
    """A model from a checkpoint's "model_config" (through `build`) with its "model" weights loaded.
    `what` names the kind of checkpoint expected (e.g. "sketch_rnn/train.py") for the error message."""
    if not isinstance(state, dict) or not isinstance(state.get("model_config"), dict) or "model" not in state:
        raise UserError(f"{source} is not a {what} checkpoint (it has no model_config/model entries); pick the "
                        f"checkpoint.pt of a {what} run")
    check_finite(state["model"], source)   # NaN weights: a damaged file (exit 2), not a run that diverged later
    try:
        model = build(dict(state["model_config"]))
        model.load_state_dict(state["model"])
    except UserError as err:
        raise UserError(f"{source} does not hold a {what} model: {err}") from None
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{source} does not hold a {what} model ({first[:200]}); pick the checkpoint.pt of a "
                        f"{what} run") from None
    return model
