"""common.models: the config convention (to_dict / from_dict / describe) and rebuilding from a checkpoint."""
from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, dataclass, field

import pytest
import torch
from torch import nn

from common.errors import UserError
from common.models import ModelConfig, count_parameters, rebuild_model


@dataclass(frozen=True)
class TinyConfig(ModelConfig):
    width: int = 3
    layers: tuple[int, ...] = (2, 1)
    names: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"tiny w{self.width}"


class Tiny(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.width, sum(config.layers))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def build(config: dict) -> Tiny:
    return Tiny(TinyConfig.from_dict(config))


def test_config_round_trips_through_json_with_tuples_restored():
    config = TinyConfig(width=5, layers=(3, 4, 5), names=["a", "b"])
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored == {"width": 5, "layers": [3, 4, 5], "names": ["a", "b"]}
    again = TinyConfig.from_dict(stored)
    assert again == config and isinstance(again.layers, tuple) and isinstance(again.names, list)
    with pytest.raises(FrozenInstanceError):
        config.width = 7


def test_from_dict_refuses_unknown_fields_and_non_mappings_in_one_line():
    with pytest.raises(UserError, match="no field.*depth"):
        TinyConfig.from_dict({"width": 3, "depth": 9})
    with pytest.raises(UserError, match="mapping"):
        TinyConfig.from_dict([1, 2])


def test_count_parameters_all_and_trainable():
    model = Tiny(TinyConfig(width=4, layers=(1, 2)))
    assert count_parameters(model) == (4 * 3 + 3) + (2 * 2 + 2)
    assert count_parameters(model, trainable_only=True) == 4 * 3 + 3


def test_rebuild_model_loads_the_weights():
    model = Tiny(TinyConfig(width=4))
    state = {"model_config": model.config.to_dict(), "model": model.state_dict()}
    rebuilt = rebuild_model(state, build, "run/checkpoint.pt", "tiny")
    assert rebuilt.config == model.config
    x = torch.randn(2, 4)
    assert torch.equal(rebuilt.linear(x), model.linear(x))


@pytest.mark.parametrize("state, message", [
    ({"foo": 1}, "not a tiny checkpoint"),
    ("a string", "not a tiny checkpoint"),
    ({"model_config": {"width": 4}, "model": {}}, "does not hold a tiny model"),                 # missing keys
    ({"model_config": {"width": 4, "bogus": 1}, "model": {}}, "does not hold a tiny model.*bogus"),
    ({"model_config": {"width": 9}, "model": Tiny(TinyConfig(width=4)).state_dict()}, "does not hold"),  # shapes
])
def test_rebuild_model_turns_every_mismatch_into_one_user_error(state, message):
    with pytest.raises(UserError, match=message) as info:
        rebuild_model(state, build, "x.pt", "tiny")
    assert "\n" not in str(info.value) and "x.pt" in str(info.value)


@dataclass(frozen=True)
class TypedConfig(ModelConfig):
    width: int = 3
    rate: float = 0.5
    flag: bool = False
    name: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    anything: object = None
    required: int = field(default=1)

    def describe(self) -> str:
        return "typed"


@pytest.mark.parametrize("values, wrong", [
    ({"width": "4"}, "width = 4"), ({"width": 4.0}, "width = 4.0"), ({"width": True}, "width = True"),
    ({"flag": 1}, "flag = 1"), ({"rate": "x"}, "rate = x"), ({"name": 5}, "name = 5"), ({"sizes": 3}, "sizes = 3"),
    ({"width": None}, "width = None"), ({"width": {}, "name": []}, "width = {}, name = []"),
])
def test_a_stored_field_of_another_type_is_one_user_error(values, wrong):
    """sketch_rnn/sample.py on a checkpoint whose model_config held max_len "x" or null built the model and then
    failed with a TypeError traceback while sampling; a field's value must be of the kind its default is."""
    with pytest.raises(UserError, match=re.escape(f"TypedConfig: {wrong}: not of its field's type")) as info:
        TypedConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_stored_fields_of_their_own_type_still_load():
    config = TypedConfig.from_dict({"width": 4, "rate": 1, "flag": True, "name": "b", "sizes": [3], "anything": [1]})
    assert (config.width, config.rate, config.flag, config.sizes, config.anything) == (4, 1, True, (3,), [1])
    assert TypedConfig.from_dict(config.to_dict()) == config
