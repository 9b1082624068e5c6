"""The learning-rate schedules: one registry, one signature.

`SCHEDULES[name](step, total) -> multiplier of the base learning rate`, where `step` counts from 0 and `total`
is the number of steps the schedule spans. A script steps its schedule per optimiser step or per epoch; the
schedule does not care which. `lr_lambda` adds a linear warm-up and gives the function LambdaLR takes; the
NumPy engine calls `SCHEDULES[name](epoch, epochs) * lr` directly.
"""
from __future__ import annotations

import math
from typing import Callable

from common.cli import non_negative_float, non_negative_int, positive_float, positive_int

Schedule = Callable[[int, int], float]


def constant(step: int, total: int) -> float:
    return 1.0


def cosine(step: int, total: int) -> float:
    """Half a cosine from 1 down to 0 over `total` steps (and 0 after)."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def cosine_floor(step: int, total: int, floor: float = 0.05) -> float:
    """Half a cosine from 1 down to `floor`: a late epoch still learns."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def thirds(step: int, total: int, gamma: float = 0.1) -> float:
    """Divided by 10 at one third and at two thirds of training."""
    return gamma ** (step // max(1, math.ceil(total / 3)))


def milestones(step: int, total: int) -> float:
    """Divided by 10 at 30%, 60% and 80% of training (DFAD's milestones)."""
    return 0.1 ** sum(step >= m * total for m in (0.3, 0.6, 0.8))


def exponential(step: int, total: int, gamma: float = 0.9) -> float:
    return gamma ** step


def polynomial(step: int, total: int, power: float = 2.0) -> float:
    return (1 - step / max(total, 1)) ** power


def halving(every: int) -> Schedule:
    """Halved every `every` steps (Slot Attention's schedule, after its warm-up)."""
    return lambda step, total: 0.5 ** (max(0, step) / every)


SCHEDULES: dict[str, Schedule] = {
    "constant": constant, "cosine": cosine, "cosine_floor": cosine_floor, "step": thirds,
    "milestones": milestones, "exponential": exponential, "polynomial": polynomial,
}


def lr_lambda(schedule: str | Schedule, total: int, warmup: int = 0) -> Callable[[int], float]:
    """The LambdaLR factor: a linear warm-up over `warmup` steps ((step + 1) / warmup), then the schedule over
    the remaining `total - warmup` steps. A function of (step, total, warmup) alone, never of saved state, so a
    resumed run follows the same curve."""
    shape = SCHEDULES[schedule] if isinstance(schedule, str) else schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return shape(step - warmup, total - warmup)
    return factor


def add_step_schedule_flags(parser, *, warmup: int = 300, decay: int = 3000, clip: float = 1.0,
                            explode: float = 50.0) -> None:
    """--warmup-steps / --decay-steps (halving), --grad-clip, and --explode-factor (DivergenceGuard)."""
    add = parser.add_argument
    add("--warmup-steps", type=non_negative_int, default=warmup, help="linear LR warm-up steps (default: %(default)s)")
    add("--decay-steps", type=positive_int, default=decay,
        help="the LR halves every this many steps after warm-up (default: %(default)s)")
    add("--grad-clip", type=positive_float, default=clip, help="max global gradient norm (default: %(default)s)")
    add("--explode-factor", type=non_negative_float, default=explode,
        help="stop when a step's loss exceeds this many times the running mean (0: only non-finite) "
             "(default: %(default)s)")
