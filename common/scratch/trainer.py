"""The training mechanics every NumPy assignment shares: one step, one epoch, one evaluation."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.divergence import explosion_limit
from common.errors import TrainingDiverged
from common.progress import progress
from common.scratch.optim import Optimizer


def loss_and_grads(net, x: np.ndarray, y: np.ndarray, loss_fn, l2: float = 0.0):
    """Data loss and gradients for one batch; L2 (0.5 * l2 * ||W||^2 on weights, not biases) is added
    to the gradients only: its value is counted by `evaluate`, which keeps the hot loop lean."""
    logits, caches = net.forward(x)
    loss, dlogits = loss_fn(logits, y)
    grads = net.backward(dlogits, caches)
    if l2:
        for name, w in net.params().items():
            if name.endswith(".w"):
                grads[name] += l2 * w
    return loss, grads


def l2_penalty(net, l2: float) -> float:
    if not l2:
        return 0.0
    return 0.5 * l2 * sum(float(np.sum(w * w)) for n, w in net.params().items() if n.endswith(".w"))


@dataclass
class Evaluation:
    loss: float           # data loss + L2 penalty, mean over examples
    predictions: np.ndarray


def evaluate(net, x: np.ndarray, y: np.ndarray, loss_fn, l2: float = 0.0, batch_size: int = 8192) -> Evaluation:
    logits = net.logits(x, batch_size)
    loss, _ = loss_fn(logits, y)
    return Evaluation(loss + l2_penalty(net, l2), logits.argmax(axis=1))


def init_states(net, optimizer: Optimizer) -> dict[str, dict]:
    return {name: optimizer.init_state(w) for name, w in net.params().items()}


def train_epoch(net, optimizer: Optimizer, states: dict, x: np.ndarray, y: np.ndarray, *,
                batch_size: int, rng: np.random.Generator, loss_fn, l2: float = 0.0,
                epoch: int = 0, quiet: bool = False, reference: float | None = None) -> float:
    """One pass over (x, y) in shuffled mini-batches; returns the mean batch loss. Raises TrainingDiverged at
    the first non-finite loss, or one past common.divergence.explosion_limit(reference) (the reference:
    the previous epoch's mean loss, or this epoch's first step loss when None)."""
    n = len(y)
    order = rng.permutation(n) if batch_size < n else None
    params = net.params()
    total, batches = 0.0, 0
    starts = range(0, n, batch_size)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is caught below, in one line
        for step, start in enumerate(progress(starts, desc=f"epoch {epoch}", quiet=quiet)):
            loss = _step(net, optimizer, states, params, x, y, order, start, batch_size, loss_fn, l2)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss} at epoch {epoch}, step {step}")
            reference = loss if reference is None else reference
            if loss > explosion_limit(reference):
                raise TrainingDiverged(f"the loss exploded to {loss:.3g} (from {reference:.3g}) at epoch {epoch}, "
                                       f"step {step}")
            total += loss
            batches += 1
    return total / max(batches, 1)


def _step(net, optimizer, states, params, x, y, order, start, batch_size, loss_fn, l2) -> float:
    """One gradient step on the batch starting at `start` of `order` (all of x when order is None)."""
    if order is None:
        xb, yb = x, y
    else:
        idx = order[start:start + batch_size]
        xb, yb = x[idx], y[idx]
    loss, grads = loss_and_grads(net, xb, yb, loss_fn, l2)
    if math.isfinite(loss):
        for name, w in params.items():
            optimizer.update(w, grads[name], states[name])
    return loss
