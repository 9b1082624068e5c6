"""When a training run has diverged, and how it says so (both epoch loops use this).

A run stops when its loss becomes NaN or infinite, when its parameters or buffers do (a BatchNorm running
variance can reach inf while the loss is still finite), or when a step's loss explodes past
`explosion_limit(reference)`: the reference is the run's first step loss in its first epoch and the previous
epoch's mean afterwards, so a loss that grows a hundredfold (3e18 from 2.3) stops the run while ordinary noise
and negative losses (a mixture density's NLL) do not. A loss that cannot explode (text2math's is the log of a
mixture of probabilities floored at 1e-10, at most 23: --lr 1e9 averaged 14, then 20 a token, and the run went
on to the end at chance) stops the run when an epoch's mean is over CHANCE_FACTOR times the loss of a uniform
guess (`chance_loss`, where the script gives it). The last checkpoint on disk was checked finite when it was
written, so it is kept as the last good one.
"""
from __future__ import annotations

import math
from pathlib import Path

from common.errors import TrainingDiverged

EXPLODE_FACTOR = 100.0
CHANCE_FACTOR = 2.0   # an epoch's mean loss over twice a uniform guess's: no run that learns averages that
ADVICE = "lower --lr"
DECAY_FLAGS = {"weight_decay": "--weight-decay", "l2": "--l2"}   # flags beside --lr that scale a step


def advice_for(args) -> str:
    """ADVICE, naming the run's decay flag beside --lr when it is set: --weight-decay / --l2 1e30 diverged in the
    first epoch, and "lower --lr" alone sent the user to the wrong flag. `args`: the run's flags (None: ADVICE)."""
    return " or ".join([ADVICE, *(flag for dest, flag in DECAY_FLAGS.items() if getattr(args, dest, 0))])


def explosion_limit(reference: float, factor: float = EXPLODE_FACTOR) -> float:
    """The largest step loss still taken for training rather than divergence."""
    return reference + factor * max(abs(reference), 1.0)


def check_loss(peak: float, reference: float | None, epoch: int, kept_epoch: int, where: Path | None,
               step: int | None = None, advice: str = ADVICE) -> None:
    """Raise TrainingDiverged when an epoch's largest step loss `peak` (or, given `step`, that step's loss) is
    non-finite or above the limit; the message ends with `advice`."""
    at = f" at step {step}" if step is not None else ""
    if not math.isfinite(peak):
        raise TrainingDiverged(diverged(f"the training loss became {peak}{at}", epoch, kept_epoch, where, advice))
    if reference is not None and math.isfinite(reference) and peak > explosion_limit(reference):
        raise TrainingDiverged(diverged(f"the training loss exploded to {peak:.3g} (from {reference:.3g}){at}",
                                        epoch, kept_epoch, where, advice))


def check_chance(mean: float, chance_loss: float | None, epoch: int, kept_epoch: int, where: Path | None,
                 advice: str = ADVICE) -> None:
    """Raise TrainingDiverged when an epoch's mean loss is over CHANCE_FACTOR x `chance_loss`, the loss of a
    uniform guess (ln of the number of classes); None: no such check."""
    if chance_loss is not None and mean > CHANCE_FACTOR * chance_loss:
        raise TrainingDiverged(diverged(f"the training loss averaged {mean:.3g}, over {CHANCE_FACTOR:g}x that of a "
                                        f"uniform guess ({chance_loss:.3g})", epoch, kept_epoch, where, advice))


def diverged(what: str, epoch: int, kept_epoch: int, where: Path | None, advice: str = ADVICE) -> str:
    """'<what> in epoch N; the last good checkpoint (epoch K) is kept in <dir>; <advice>', without claiming a
    checkpoint where none was written."""
    if kept_epoch > 0 and where is not None:
        kept = f"the last good checkpoint (epoch {kept_epoch}) is kept in {where}"
    elif kept_epoch > 0:
        kept = f"the last good checkpoint is epoch {kept_epoch}'s"
    else:
        kept = "no checkpoint was written (it diverged before the first epoch ended)"
    return f"{what} in epoch {epoch}; {kept}; {advice}"


class DivergenceGuard:
    """Per-step check for step-scheduled loops: stops training at the first step whose loss is not finite
    or exceeds `factor` x the running mean of the earlier steps (after 20 steps); names the step and the
    checkpoint that is kept. `scheduler.last_epoch` counts the steps taken."""

    def __init__(self, factor: float, run_path: Path, scheduler):
        self.factor, self.run_path, self.scheduler = factor, run_path, scheduler
        self.mean, self.seen = 0.0, 0

    def check(self, loss, epoch: int) -> None:
        value = float(loss.detach())
        step = self.scheduler.last_epoch + 1
        exploded = self.factor and self.seen >= 20 and value > self.factor * self.mean
        if not math.isfinite(value) or exploded:
            what = f"became {value}" if not math.isfinite(value) else \
                f"exploded to {value:.4g} ({value / self.mean:.0f}x the running mean {self.mean:.4g})"
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {self.run_path}" if epoch else \
                "no epoch had finished, so there is no checkpoint"
            raise TrainingDiverged(f"the training loss {what} at step {step} (epoch {epoch + 1}); {kept}; "
                                   f"lower --lr or --grad-clip, or raise --warmup-steps")
        self.seen += 1
        self.mean += (value - self.mean) / min(self.seen, 100)
