"""Learning-rate schedules shared by the step-scheduled scripts (a LambdaLR factor per optimiser step)."""
from __future__ import annotations


def warmup_halving(warmup: int, decay: int):
    """Linear warm-up over `warmup` steps, then x0.5 every `decay` steps (Slot Attention's schedule).
    Returns the factor for torch.optim.lr_scheduler.LambdaLR."""
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup if warmup else 1.0) * 0.5 ** (max(0, step - warmup) / decay)
    return factor
