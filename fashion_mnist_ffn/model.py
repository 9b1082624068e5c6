"""The feed-forward classifier: 784 -> hidden layers (sizes from flags) -> 10, softmax output, on the
shared NumPy engine. The config is stored in every checkpoint, so evaluation rebuilds the network
without the CLI (`build_model(FFNConfig.from_dict(d), seed)`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_scratch.engine.network import MLPConfig, Sequential, mlp



@dataclass(frozen=True)
class FFNConfig(MLPConfig):
    """The shared NumPy MLP; the defaults are the README's network (784-256-256-10 ReLU, He init)."""
    hidden: tuple[int, ...] = (256, 256)

    def describe(self) -> str:
        return "→".join(map(str, self.sizes)) + f" {self.activation} FFN ({self.init} init)"


def hidden_sizes(num_layers: int, hidden_size: int, explicit: list[int] | None) -> tuple[int, ...]:
    """--hidden 256 128 when given, else --num-layers copies of --hidden-size (the seed's flags)."""
    return tuple(explicit) if explicit else (hidden_size,) * num_layers


def build_model(config: FFNConfig, seed: int, dtype=np.float32) -> Sequential:
    """Weights from `config.init` with a generator of their own (independent of the data order)."""
    return mlp(config.sizes, config.activation, config.init, np.random.default_rng([seed, 3]), dtype)
