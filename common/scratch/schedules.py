"""Learning-rate schedules per epoch: `schedule(base_lr, epoch, total_epochs) -> lr` (epoch from 0)."""
from __future__ import annotations

import math


def constant(base_lr: float, epoch: int, total: int) -> float:
    return base_lr


def step(base_lr: float, epoch: int, total: int, gamma: float = 0.1) -> float:
    """Divide by 10 at one third and two thirds of training."""
    every = max(1, math.ceil(total / 3))
    return base_lr * gamma ** (epoch // every)


def exponential(base_lr: float, epoch: int, total: int, gamma: float = 0.9) -> float:
    return base_lr * gamma ** epoch


def polynomial(base_lr: float, epoch: int, total: int, power: float = 2.0) -> float:
    return base_lr * (1 - epoch / max(total, 1)) ** power


def cosine(base_lr: float, epoch: int, total: int) -> float:
    return base_lr * 0.5 * (1 + math.cos(math.pi * epoch / max(total, 1)))


SCHEDULES = {"constant": constant, "step": step, "exponential": exponential, "polynomial": polynomial,
             "cosine": cosine}
