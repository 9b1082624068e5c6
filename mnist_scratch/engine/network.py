"""Modules built from the layer primitives, and a Sequential container that names parameters
'<index>.<name>' (e.g. '0.w', '0.b') for optimizers, L2 and checkpoints."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from common.errors import UserError
from common.models import ModelConfig
from mnist_scratch.engine import conv
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS, affine_backward, affine_forward
from mnist_scratch.engine.limits import check_array, check_parameters


class Dense:
    """Fully connected layer; params w (D, M) and b (M,)."""

    def __init__(self, fan_in: int, fan_out: int, init: str, rng: np.random.Generator, dtype=np.float32):
        check_parameters(fan_in * fan_out + fan_out, f"a {fan_in:,}→{fan_out:,} dense layer")
        self.params = {"w": INITS[init](fan_in, fan_out, rng).astype(dtype),
                       "b": np.zeros(fan_out, dtype=dtype)}

    def forward(self, x):
        w = self.params["w"]
        check_array(len(x) * w.shape[1], w.dtype, f"the output of a {w.shape[0]:,}→{w.shape[1]:,} layer for {len(x):,} "
                                                  "examples")
        return affine_forward(x, w, self.params["b"])

    def backward(self, dout, cache, need_dx: bool = True):
        dx, dw, db = affine_backward(dout, cache, need_dx)
        return dx, {"w": dw, "b": db}


class Activation:
    """An element-wise non-linearity from ACTIVATIONS; no parameters."""

    def __init__(self, name: str):
        self.name = name
        self.fn = ACTIVATIONS[name]
        self.params: dict[str, np.ndarray] = {}

    def forward(self, x):
        return self.fn.forward(x)

    def backward(self, dout, cache, need_dx: bool = True):
        return self.fn.backward(dout, cache), {}


class Conv2D:
    """Filters w (F, C, K, K) and b (F,); NCHW in and out."""

    def __init__(self, in_channels: int, filters: int, kernel: int, init: str, rng: np.random.Generator,
                 stride: int = 1, pad: int = 0, dtype=np.float32):
        area = kernel * kernel
        check_parameters(filters * in_channels * area + filters, f"a {kernel}x{kernel} convolution of {in_channels:,} "
                                                                 f"to {filters:,} channels")
        w = INITS[init](in_channels * area, filters * area, rng, shape=(filters, in_channels, kernel, kernel))
        self.params = {"w": w.astype(dtype), "b": np.zeros(filters, dtype=dtype)}
        self.stride, self.pad = stride, pad

    def forward(self, x):
        return conv.conv2d_forward(x, self.params["w"], self.params["b"], self.stride, self.pad)

    def backward(self, dout, cache, need_dx: bool = True):
        dx, dw, db = conv.conv2d_backward(dout, cache, need_dx)
        return dx, {"w": dw, "b": db}


class _Pool:
    forward_fn = backward_fn = None

    def __init__(self, kernel: int = 2, stride: int | None = None):
        self.kernel, self.stride = kernel, stride or kernel
        self.params: dict[str, np.ndarray] = {}

    def forward(self, x):
        return type(self).forward_fn(x, self.kernel, self.stride)

    def backward(self, dout, cache, need_dx: bool = True):
        return type(self).backward_fn(dout, cache), {}


class MaxPool2D(_Pool):
    forward_fn, backward_fn = staticmethod(conv.maxpool_forward), staticmethod(conv.maxpool_backward)


class AvgPool2D(_Pool):
    forward_fn, backward_fn = staticmethod(conv.avgpool_forward), staticmethod(conv.avgpool_backward)


class Reshape:
    """(N, D) -> (N, *shape), e.g. flat pixels to (N, 1, 28, 28) in front of a CNN."""
    params: dict[str, np.ndarray] = {}

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(len(x), *self.shape), x.shape

    def backward(self, dout, cache, need_dx: bool = True):
        return (dout.reshape(cache) if need_dx else None), {}


class Flatten:
    """(N, C, H, W) -> (N, C*H*W)."""
    params: dict[str, np.ndarray] = {}

    def forward(self, x):
        return x.reshape(len(x), -1), x.shape

    def backward(self, dout, cache, need_dx: bool = True):
        return dout.reshape(cache), {}


class Sequential:
    def __init__(self, layers: Sequence):
        self.layers = list(layers)
        # references to the live arrays: optimizers update them in place
        self._params = {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def forward(self, x: np.ndarray):
        """x (N, D) -> logits (N, C) and the caches for backward."""
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x)
            caches.append(cache)
        return x, caches

    def backward(self, dout: np.ndarray, caches: list) -> dict[str, np.ndarray]:
        """dlogits (N, C) -> gradients by parameter name. The input gradient is never computed."""
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            dout, layer_grads = self.layers[i].backward(dout, caches[i], need_dx=i > 0)
            for name, grad in layer_grads.items():
                grads[f"{i}.{name}"] = grad
        return grads

    def params(self) -> dict[str, np.ndarray]:
        return self._params

    def logits(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Forward pass in chunks (no caches kept): (N, D) -> (N, C)."""
        outs = []
        for start in range(0, len(x), batch_size):
            out = x[start:start + batch_size]
            for layer in self.layers:
                out, _ = layer.forward(out)
            outs.append(out)
        return np.concatenate(outs)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name, value in self._params.items():
            if name not in state or state[name].shape != value.shape:
                found = state[name].shape if name in state else "nothing"
                raise UserError(f"checkpoint does not fit this network: {name} expects {value.shape}, "
                                f"found {found}")
            value[...] = state[name]


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """A fully connected classifier on this engine: inputs -> hidden layers -> classes (softmax), the
    activation after every hidden layer. mnist_scratch's MLP and fashion_mnist_ffn's FFN are this network."""
    inputs: int = 784
    hidden: tuple[int, ...] = (128, 64)
    classes: int = 10
    activation: str = "relu"
    init: str = "he"
    eval_batch = 8192  # examples per forward pass when evaluating

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.inputs, *self.hidden, self.classes)

    def parameter_count(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def __post_init__(self):   # before any array is made: a sweep's hidden_size 1e8 ended in a MemoryError
        check_parameters(self.parameter_count(), f"the network {self.describe()}")

    def describe(self) -> str:
        return "→".join(map(str, self.sizes)) + f" {self.activation} MLP"


def mlp(sizes: Sequence[int], activation: str, init: str, rng: np.random.Generator,
        dtype=np.float32) -> Sequential:
    """sizes = (inputs, hidden..., classes); the activation follows every hidden layer."""
    check_parameters(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])), "an MLP " + "→".join(map(str, sizes)))
    layers: list = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(fan_in, fan_out, init, rng, dtype))
        if i < len(sizes) - 2:
            layers.append(Activation(activation))
    return Sequential(layers)
