"""common.models: the config convention (to_dict / from_dict / describe) and rebuilding from a checkpoint."""
from __future__ import annotations

import json
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
