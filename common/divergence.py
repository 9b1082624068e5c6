"""When a training run has diverged, and how it says so (both epoch loops use this).

A run stops when its loss becomes NaN or infinite, when its parameters or buffers do (a BatchNorm running
variance can reach inf while the loss is still finite), or when a step's loss explodes past
`explosion_limit(reference)`: the reference is the run's first step loss in its first epoch and the previous
epoch's mean afterwards, so a loss that grows a hundredfold (3e18 from 2.3) stops the run while ordinary noise
and negative losses (a mixture density's NLL) do not. The last checkpoint on disk was checked finite when it
was written, so it is kept as the last good one.
"""
from __future__ import annotations

import math
from pathlib import Path

from common.errors import TrainingDiverged

EXPLODE_FACTOR = 100.0


def explosion_limit(reference: float, factor: float = EXPLODE_FACTOR) -> float:
    """The largest step loss still taken for training rather than divergence."""
    return reference + factor * max(abs(reference), 1.0)


def check_loss(peak: float, reference: float | None, epoch: int, kept_epoch: int, where: Path | None) -> None:
    """Raise TrainingDiverged when an epoch's largest step loss `peak` is non-finite or above the limit."""
    if not math.isfinite(peak):
        raise TrainingDiverged(diverged(f"the training loss became {peak}", epoch, kept_epoch, where))
    if reference is not None and math.isfinite(reference) and peak > explosion_limit(reference):
        raise TrainingDiverged(diverged(f"the training loss exploded to {peak:.3g} (from {reference:.3g})",
                                        epoch, kept_epoch, where))


def diverged(what: str, epoch: int, kept_epoch: int, where: Path | None) -> str:
    """'<what> in epoch N; the last good checkpoint (epoch K) is kept in <dir>; lower --lr', without claiming a
    checkpoint where none was written."""
    if kept_epoch > 0 and where is not None:
        kept = f"the last good checkpoint (epoch {kept_epoch}) is kept in {where}"
    elif kept_epoch > 0:
        kept = f"the last good checkpoint is epoch {kept_epoch}'s"
    else:
        kept = "no checkpoint was written (it diverged before the first epoch ended)"
    return f"{what} in epoch {epoch}; {kept}; lower --lr"
