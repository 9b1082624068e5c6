"""The seed's network, 784 -> 128 -> 64 -> 10 with ReLU and softmax, on the shared NumPy engine.
The config is stored in every checkpoint, so evaluation rebuilds the model without the CLI."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from common.scratch.network import Sequential, mlp


@dataclass(frozen=True)
class MLPConfig:
    inputs: int = 784
    hidden: tuple[int, ...] = (128, 64)
    classes: int = 10
    activation: str = "relu"
    init: str = "he"

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.inputs, *self.hidden, self.classes)

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict) -> "MLPConfig":
        return cls(**{**values, "hidden": tuple(values["hidden"])})


def build_mlp(config: MLPConfig, seed: int) -> Sequential:
    """Weights drawn from `config.init` with a generator of their own (independent of data order)."""
    return mlp(config.sizes, config.activation, config.init, np.random.default_rng([seed, 3]))
