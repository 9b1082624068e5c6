"""The seed's network, 784 -> 128 -> 64 -> 10 with ReLU and softmax, and a small CNN, both on the
shared NumPy engine. The config is stored in every checkpoint, so evaluation rebuilds the model
without the CLI (`build_model(config_from_dict(d), seed)`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import UserError
from common.models import ModelConfig
from mnist_scratch.engine.network import MLPConfig as ScratchMLPConfig
from mnist_scratch.engine.network import (Activation, AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, Reshape,
                                    Sequential, mlp)

POOLS = {"max": MaxPool2D, "avg": AvgPool2D}


@dataclass(frozen=True)
class MLPConfig(ScratchMLPConfig):
    """The seed's network (784 -> 128 -> 64 -> 10, ReLU) by default; `kind` tells checkpoints apart."""
    kind: str = "mlp"


@dataclass(frozen=True)
class CNNConfig(ModelConfig):
    """[Conv KxK (same padding) -> activation -> 2x2 pool] per entry of `channels`, then an MLP head."""
    image: tuple[int, int, int] = (1, 28, 28)   # (C, H, W)
    channels: tuple[int, ...] = (32, 64)
    kernel: int = 3
    pool: str = "max"
    hidden: tuple[int, ...] = (128,)
    classes: int = 10
    activation: str = "relu"
    init: str = "he"
    kind: str = "cnn"
    eval_batch = 500  # im2col of a conv layer grows with the batch: keep evaluation memory small

    def describe(self) -> str:
        convs = "-".join(f"conv{self.kernel}x{self.kernel}({c})" for c in self.channels)
        head = "→".join(map(str, (*self.hidden, self.classes)))
        return f"{convs} {self.pool}pool CNN, head {head}"

    def receptive_fields(self) -> list[tuple[str, int, int]]:
        """(layer, receptive field in input pixels, jump between neighbouring outputs) per layer:
        r_out = r_in + (k - 1) * j_in, j_out = j_in * stride."""
        field, jump, rows = 1, 1, []
        for i, _ in enumerate(self.channels, 1):
            field, jump = field + (self.kernel - 1) * jump, jump
            rows.append((f"conv{i}", field, jump))
            field, jump = field + (2 - 1) * jump, jump * 2
            rows.append((f"pool{i}", field, jump))
        return rows


def config_from_dict(values: dict):
    """Rebuild a config saved by to_dict (lists back to tuples)."""
    kind = values.get("kind", "mlp")
    if kind not in MODELS:
        raise UserError(f"unknown model kind '{kind}' in the checkpoint; expected one of {', '.join(MODELS)}")
    return MODELS[kind].from_dict(values)


def _build_mlp(config: MLPConfig, rng: np.random.Generator, dtype) -> Sequential:
    return mlp(config.sizes, config.activation, config.init, rng, dtype)


def _build_cnn(config: CNNConfig, rng: np.random.Generator, dtype) -> Sequential:
    channels, height, width = config.image
    layers: list = [Reshape(config.image)]
    for filters in config.channels:
        layers += [Conv2D(channels, filters, config.kernel, config.init, rng, pad=config.kernel // 2, dtype=dtype),
                   Activation(config.activation), POOLS[config.pool](2)]
        channels, height, width = filters, height // 2, width // 2
    layers.append(Flatten())
    sizes = (channels * height * width, *config.hidden, config.classes)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(fan_in, fan_out, config.init, rng, dtype))
        if i < len(sizes) - 2:
            layers.append(Activation(config.activation))
    return Sequential(layers)


MODELS = {"mlp": MLPConfig, "cnn": CNNConfig}
BUILDERS = {"mlp": _build_mlp, "cnn": _build_cnn}


def build_model(config, seed: int, dtype=np.float32) -> Sequential:
    """Weights drawn from `config.init` with a generator of their own (independent of data order);
    float64 for gradient checks."""
    return BUILDERS[config.kind](config, np.random.default_rng([seed, 3]), dtype)
