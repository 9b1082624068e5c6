"""Optimizers, CS231n style: `update(w, dw, state) -> (w, state)`, updating w in place.
Each follows torch.optim's formula exactly (tests check several steps against it). Adding one is
one small class and one line in OPTIMIZERS."""
from __future__ import annotations

import inspect
from typing import Iterable

import numpy as np

from common.errors import UserError


class Optimizer:
    def __init__(self, lr: float):
        self.lr = lr  # a schedule may change it between epochs

    def init_state(self, w: np.ndarray) -> dict:
        return {}

    def update(self, w: np.ndarray, dw: np.ndarray, state: dict):
        raise NotImplementedError


class SGD(Optimizer):
    """w <- w - lr * dw"""

    def update(self, w, dw, state):
        w -= self.lr * dw
        return w, state


class Momentum(Optimizer):
    """v <- mu v + dw; w <- w - lr v   (torch.optim.SGD with momentum)"""

    def __init__(self, lr: float, momentum: float = 0.9):
        super().__init__(lr)
        self.momentum = momentum

    def init_state(self, w):
        return {"velocity": np.zeros_like(w)}

    def update(self, w, dw, state):
        v = state["velocity"]
        v *= self.momentum
        v += dw
        w -= self.lr * v
        return w, state


class Nesterov(Momentum):
    """v <- mu v + dw; w <- w - lr (dw + mu v)   (torch.optim.SGD with nesterov=True)"""

    def update(self, w, dw, state):
        v = state["velocity"]
        v *= self.momentum
        v += dw
        w -= self.lr * (dw + self.momentum * v)
        return w, state


class RMSProp(Optimizer):
    """s <- a s + (1 - a) dw^2; w <- w - lr dw / (sqrt(s) + eps)   (torch.optim.RMSprop)"""

    def __init__(self, lr: float, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(lr)
        self.alpha, self.eps = alpha, eps

    def init_state(self, w):
        return {"square_avg": np.zeros_like(w)}

    def update(self, w, dw, state):
        s = state["square_avg"]
        s *= self.alpha
        s += (1 - self.alpha) * dw * dw
        w -= self.lr * dw / (np.sqrt(s) + self.eps)
        return w, state


class Adam(Optimizer):
    """Kingma & Ba (2015) with bias correction   (torch.optim.Adam)"""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def init_state(self, w):
        return {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}

    def _moments(self, dw, state):
        state["t"] += 1
        m, v = state["m"], state["v"]
        m *= self.beta1
        m += (1 - self.beta1) * dw
        v *= self.beta2
        v += (1 - self.beta2) * dw * dw
        return m, np.sqrt(v / (1 - self.beta2 ** state["t"])) + self.eps  # m, denominator

    def update(self, w, dw, state):
        m, denom = self._moments(dw, state)
        w -= (self.lr / (1 - self.beta1 ** state["t"])) * m / denom
        return w, state


class Nadam(Adam):
    """Dozat (2016), Adam with Nesterov momentum and torch's momentum-decay schedule
    (torch.optim.NAdam, momentum_decay=4e-3)."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 momentum_decay: float = 4e-3):
        super().__init__(lr, beta1, beta2, eps)
        self.momentum_decay = momentum_decay

    def init_state(self, w):
        return {**super().init_state(w), "mu_product": 1.0}

    def _mu(self, t: int) -> float:
        return self.beta1 * (1 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def update(self, w, dw, state):
        m, denom = self._moments(dw, state)
        t = state["t"]
        mu, mu_next = self._mu(t), self._mu(t + 1)
        state["mu_product"] *= mu
        product = state["mu_product"]
        w -= (self.lr * (1 - mu) / (1 - product)) * dw / denom
        w -= (self.lr * mu_next / (1 - product * mu_next)) * m / denom
        return w, state


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSProp,
              "adam": Adam, "nadam": Nadam}


def takes(name: str, option: str) -> bool:
    """Whether optimizer `name` uses `option` (a keyword of its constructor, e.g. momentum)."""
    return option in inspect.signature(OPTIMIZERS[name].__init__).parameters


def refuse_unused(name: str, options: Iterable[str]) -> None:
    """One line (UserError) for the first of `options` (flags the user typed) that optimizer `name` does not use."""
    for option in sorted(options):
        if not takes(name, option):
            users = ", ".join(n for n in OPTIMIZERS if takes(n, option))
            raise UserError(f"--{option} is not used by --optimizer {name}; it applies to {users}")


def build_optimizer(name: str, lr: float, **options) -> Optimizer:
    """OPTIMIZERS[name](lr, ...) with just the options that optimizer takes (e.g. momentum)."""
    return OPTIMIZERS[name](lr, **{k: v for k, v in options.items() if takes(name, k)})
