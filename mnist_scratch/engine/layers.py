"""Layer primitives as pure functions, CS231n style: forward returns (out, cache), backward takes
(dout, cache). Shapes: N batch, D inputs, M outputs."""
from __future__ import annotations

import numpy as np


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """x (N, D), w (D, M), b (M,) -> out (N, M)."""
    out = x @ w
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache, need_dx: bool = True):
    """dout (N, M) -> dx (N, D) or None, dw (D, M), db (M,). The first layer skips dx."""
    x, w = cache
    dw = x.T @ dout
    db = dout.sum(axis=0)
    dx = dout @ w.T if need_dx else None
    return dx, dw, db


class ReLU:
    @staticmethod
    def forward(x):
        out = np.maximum(x, 0)
        return out, out

    @staticmethod
    def backward(dout, cache):
        return dout * (cache > 0)

    @staticmethod
    def derivative(x):
        return (x > 0).astype(x.dtype)


class LeakyReLU:
    slope = 0.01

    @classmethod
    def forward(cls, x):
        return np.where(x > 0, x, cls.slope * x), x

    @classmethod
    def backward(cls, dout, cache):
        return dout * cls.derivative(cache)

    @classmethod
    def derivative(cls, x):
        return np.where(x > 0, 1.0, cls.slope).astype(x.dtype)


class Sigmoid:
    @staticmethod
    def forward(x):
        out = 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow
        return out, out

    @staticmethod
    def backward(dout, cache):
        return dout * cache * (1 - cache)

    @classmethod
    def derivative(cls, x):
        out, _ = cls.forward(x)
        return out * (1 - out)


class Tanh:
    @staticmethod
    def forward(x):
        out = np.tanh(x)
        return out, out

    @staticmethod
    def backward(dout, cache):
        return dout * (1 - cache * cache)

    @staticmethod
    def derivative(x):
        return 1 - np.tanh(x) ** 2


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}
