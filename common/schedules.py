"""Learning-rate schedules shared by the step-scheduled scripts (a LambdaLR factor per optimiser step)."""
from __future__ import annotations

from common.cli import non_negative_float, non_negative_int, positive_float, positive_int


def warmup_halving(warmup: int, decay: int):
    """Linear warm-up over `warmup` steps, then x0.5 every `decay` steps (Slot Attention's schedule).
    Returns the factor for torch.optim.lr_scheduler.LambdaLR."""
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup if warmup else 1.0) * 0.5 ** (max(0, step - warmup) / decay)
    return factor


def add_step_schedule_flags(parser, *, warmup: int = 300, decay: int = 3000, clip: float = 1.0,
                            explode: float = 50.0) -> None:
    """--warmup-steps / --decay-steps (warmup_halving), --grad-clip, and --explode-factor (DivergenceGuard)."""
    add = parser.add_argument
    add("--warmup-steps", type=non_negative_int, default=warmup, help="linear LR warm-up steps (default: %(default)s)")
    add("--decay-steps", type=positive_int, default=decay,
        help="the LR halves every this many steps after warm-up (default: %(default)s)")
    add("--grad-clip", type=positive_float, default=clip, help="max global gradient norm (default: %(default)s)")
    add("--explode-factor", type=non_negative_float, default=explode,
        help="stop when a step's loss exceeds this many times the running mean (0: only non-finite) "
             "(default: %(default)s)")
