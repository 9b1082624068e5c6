"""The pieces a NumPy train.py's own epoch loop calls (the engine's counterpart of common/training.py):

    start, elapsed = resume(run, net, states)                      # (0, 0.0) unless --resume found a checkpoint
    guard = LossGuard(run)
    for epoch in range(start, args.epochs):
        optimizer.lr = SCHEDULES[args.lr_schedule](epoch, args.epochs) * args.lr
        for step, (xb, yb) in enumerate(shuffled_batches(x, y, batch_size, seed=args.seed, epoch=epoch)):
            logits, caches = net.forward(xb)
            loss, dlogits = loss_fn(logits, yb)
            guard.check(loss, epoch, step)                           # a diverged run stops here
            grads = net.backward(dlogits, caches)
            add_l2_grads(grads, params, args.l2)
            for name, w in params.items():
                optimizer.update(w, grads[name], states[name])
        guard.end_epoch(mean_loss)
        ... evaluate(net, x, y, loss_fn, args.l2) per split ...
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, states))   # common.training

Also the one-call step the small scripts use (`loss_and_grads`) and the BLAS thread rule (`blas_threads_for`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from common.divergence import advice_for, check_loss
from common.errors import UserError
from common.formats import is_whole
from common.rundir import CHECKPOINT, RunDir
from mnist_scratch.engine.network import Conv2D
from mnist_scratch.engine.optim import Optimizer

# The names of common.schedules.SCHEDULES the NumPy scripts offer; each is applied once per epoch.
SCHEDULE_NAMES = ("constant", "step", "exponential", "polynomial", "cosine")


def blas_threads_for(batch_size: int, has_conv: bool = False) -> int | None:
    """One BLAS thread for an MLP's mini-batch products: they are too small to split, and a
    multi-threaded BLAS on a busy machine spins (measured 10-40x slower per epoch with another
    process running on 2 cores). Full-batch steps and conv layers' im2col products get all threads."""
    return None if has_conv or batch_size > 1024 else 1


def init_states(net, optimizer: Optimizer) -> dict[str, dict]:
    return {name: optimizer.init_state(w) for name, w in net.params().items()}


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int,
                     epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch's mini-batches (x[idx], y[idx]) in an order set by (seed, epoch) alone, so a resumed run sees
    the batches an uninterrupted one sees. One batch that holds everything is (x, y) itself, unshuffled."""
    n = len(y)
    if batch_size >= n:
        yield x, y
        return
    order = np.random.default_rng([seed, 4, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def add_l2_grads(grads: dict[str, np.ndarray], params: dict[str, np.ndarray], l2: float) -> None:
    """The gradient of 0.5 * l2 * ||W||^2 added in place to the weights' gradients (not the biases')."""
    if l2:
        for name, w in params.items():
            if name.endswith(".w"):
                grads[name] += l2 * w


def l2_penalty(net, l2: float) -> float:
    if not l2:
        return 0.0
    return 0.5 * l2 * sum(float(np.sum(w * w)) for n, w in net.params().items() if n.endswith(".w"))


def loss_and_grads(net, x: np.ndarray, y: np.ndarray, loss_fn, l2: float = 0.0):
    """Forward, loss and backward of one batch: (data loss, gradients by parameter name). L2 is added to the
    gradients only: its value is counted by `evaluate`."""
    logits, caches = net.forward(x)
    loss, dlogits = loss_fn(logits, y)
    grads = net.backward(dlogits, caches)
    add_l2_grads(grads, net.params(), l2)
    return loss, grads


@dataclass
class Evaluation:
    loss: float           # data loss + L2 penalty, mean over examples
    predictions: np.ndarray


def evaluate(net, x: np.ndarray, y: np.ndarray, loss_fn, l2: float = 0.0, batch_size: int = 8192) -> Evaluation:
    """The loss and predictions on (x, y). An MLP is evaluated on one BLAS thread: OpenBLAS's float32 product
    differs in the last bit between one thread and two, and how many it uses changed with the machine's load,
    so two identical runs (or a resumed one) logged different losses. Conv layers keep every thread."""
    threads = None if any(isinstance(layer, Conv2D) for layer in net.layers) else 1
    with threadpool_limits(limits=threads, user_api="blas"):
        logits = net.logits(x, batch_size)
    loss, _ = loss_fn(logits, y)
    return Evaluation(loss + l2_penalty(net, l2), logits.argmax(axis=1))


class LossGuard:
    """Stops a NumPy run at the first step whose loss is NaN or infinite, or past
    common.divergence.explosion_limit(reference): the reference is the run's first step loss, then the
    previous epoch's mean step loss. Every epoch before the current one wrote a checkpoint, which is kept.
    The message's advice names the run's own flags (common.divergence.advice_for)."""

    def __init__(self, run: RunDir):
        self.where = run.path
        self.reference: float | None = None
        self.advice = advice_for(run.args)

    def check(self, loss: float, epoch: int, step: int) -> None:
        """`epoch` counts from 0, `step` within the epoch."""
        check_loss(loss, self.reference, epoch + 1, epoch, self.where, step=step, advice=self.advice)
        if self.reference is None:
            self.reference = loss

    def end_epoch(self, mean_loss: float) -> None:
        self.reference = mean_loss


def checkpoint(epoch: int, elapsed: float, model_config: dict, net, states: dict) -> dict:
    """What a NumPy checkpoint holds: enough to resume (the optimizer's state per parameter) and to rebuild the
    network without the command line (model_config)."""
    return {"epoch": epoch, "elapsed": elapsed, "model_config": model_config, "model": net.state_dict(),
            "optimizer": states}


def _states_fit(saved, fresh: dict) -> bool:
    """Whether a checkpoint's optimizer `saved` has the entries of `fresh` (init_states): per parameter the same
    keys, arrays of the same shapes and integer step counts."""
    if not isinstance(saved, dict) or saved.keys() != fresh.keys():
        return False
    for name, state in fresh.items():
        got = saved[name]
        if not isinstance(got, dict) or got.keys() != state.keys():
            return False
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                if not (isinstance(got[key], np.ndarray) and got[key].shape == value.shape
                        and np.issubdtype(got[key].dtype, np.floating)):
                    return False
            elif not is_whole(got[key]):
                return False
    return True


def resume(run: RunDir, net, states: dict) -> tuple[int, float]:
    """(epochs done, training seconds so far): loads the checkpoint into `net` and the optimizer `states` when
    --resume found one; (0, 0.0) otherwise. A checkpoint that does not fit is one UserError, raised before any
    file of the run changes."""
    state = run.resume_state(as_numpy=True, required=("epoch", "elapsed", "model", "optimizer"))
    if state is None:
        return 0, 0.0
    try:
        net.load_state_dict(state["model"])
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{run.path / CHECKPOINT} does not fit this network ({str(err)[:200]}); resume with "
                        f"the flags it was started with, or start over with --overwrite") from None
    if not _states_fit(state["optimizer"], states):
        raise UserError(f"{run.path / CHECKPOINT}: its optimizer state does not fit this run's optimizer and network; "
                        f"resume with the flags it was started with, or start over with --overwrite")
    states.clear()
    states.update(state["optimizer"])
    print(f"resuming {run.path.name} after epoch {state['epoch']}")
    return int(state["epoch"]), float(state["elapsed"])
