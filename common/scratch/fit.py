"""The epoch loop every NumPy train.py shares: per-epoch lr schedule, one training pass, evaluation
on the named splits, one metrics record and one checkpoint per epoch, and --resume.

Records hold `epoch, lr, train_loss, train_acc, <split>_loss, <split>_acc ..., train_seconds`; the
checkpoint holds the model's config, so evaluation rebuilds the network without the CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from threadpoolctl import threadpool_limits

from common.errors import TrainingDiverged, UserError
from common.metrics import accuracy
from common.rundir import CHECKPOINT, RunDir
from common.scratch.optim import Optimizer
from common.scratch.schedules import SCHEDULES
from common.scratch.trainer import evaluate, train_epoch

Split = tuple[np.ndarray, np.ndarray]  # (x (N, D...), y (N,))


@dataclass(frozen=True)
class ScratchFitSettings:
    epochs: int
    lr: float                 # base learning rate; the schedule scales it per epoch
    lr_schedule: str          # a key of SCHEDULES
    batch_size: int
    l2: float
    seed: int
    loss_fn: Callable
    eval_batch: int = 8192
    quiet: bool = False       # no progress bars or per-epoch lines (smoke runs)
    blas_threads: int | None = None  # BLAS threads while training; None: all (see blas_threads_for)


def blas_threads_for(batch_size: int, has_conv: bool = False) -> int | None:
    """One BLAS thread for an MLP's mini-batch products: they are too small to split, and a
    multi-threaded BLAS on a busy machine spins (measured 10-40x slower per epoch with another
    process running on 2 cores). Full-batch steps and conv layers' im2col products get all threads."""
    return None if has_conv or batch_size > 1024 else 1


def fit(net, optimizer: Optimizer, states: dict, run: RunDir, train: Split, eval_splits: Mapping[str, Split],
        settings: ScratchFitSettings, model_config: dict) -> list[dict]:
    """Train from the last checkpoint (when --resume found one) to `settings.epochs`; returns all
    records."""
    start_epoch, elapsed = 0, 0.0
    resumed = run.resume_state(as_numpy=True, required=("epoch", "elapsed", "model", "optimizer"))
    if resumed is not None:
        try:
            net.load_state_dict(resumed["model"])
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise UserError(f"{run.path / CHECKPOINT} does not fit this network ({str(err)[:200]}); resume with "
                            f"the flags it was started with, or start over with --overwrite") from None
        states.clear()
        states.update(resumed["optimizer"])
        start_epoch, elapsed = int(resumed["epoch"]), float(resumed["elapsed"])
        print(f"resuming {run.path.name} after epoch {start_epoch}")

    x_train, y_train = train
    kept, reference = start_epoch, None
    for epoch in range(start_epoch, settings.epochs):
        optimizer.lr = SCHEDULES[settings.lr_schedule](settings.lr, epoch, settings.epochs)
        tic = time.perf_counter()
        try:
            with threadpool_limits(limits=settings.blas_threads, user_api="blas"):
                reference = train_epoch(net, optimizer, states, x_train, y_train, batch_size=settings.batch_size,
                                        rng=np.random.default_rng([settings.seed, 4, epoch]),
                                        loss_fn=settings.loss_fn, l2=settings.l2, epoch=epoch + 1,
                                        quiet=settings.quiet, reference=reference)
        except TrainingDiverged as err:
            kept_note = (f"the last good checkpoint (epoch {kept}) is kept in {run.path}" if kept else
                         "no checkpoint was written (it diverged before the first epoch ended)")
            raise TrainingDiverged(f"{err}; {kept_note}; lower --lr") from None
        elapsed += time.perf_counter() - tic
        record = {"epoch": epoch + 1, "lr": optimizer.lr}
        for split, (x, y) in {"train": train, **eval_splits}.items():
            result = evaluate(net, x, y, settings.loss_fn, settings.l2, settings.eval_batch)
            record[f"{split}_loss"], record[f"{split}_acc"] = result.loss, accuracy(y, result.predictions)
        record["train_seconds"] = elapsed
        run.log(record)
        run.save_checkpoint({"epoch": epoch + 1, "elapsed": elapsed, "model_config": model_config,
                             "model": net.state_dict(), "optimizer": states})
        kept = epoch + 1
        if not settings.quiet:
            print(f"epoch {epoch + 1:>3}/{settings.epochs}  " + "  ".join(
                f"{split} loss {record[f'{split}_loss']:.4f} acc {record[f'{split}_acc']:.4f}"
                for split in ("train", *eval_splits)), flush=True)
    return run.metrics()
