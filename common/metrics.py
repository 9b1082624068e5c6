"""Classification metrics through scikit-learn, plus a one-glance description of a loss curve."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

SPARK = "▁▂▃▄▅▆▇█"


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(accuracy_score(y_true, y_pred))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """A tiny text plot of a curve, resampled to `width` characters."""
    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if vals.size == 0:
        return ""
    idx = np.linspace(0, vals.size - 1, min(width, vals.size)).round().astype(int)
    vals = vals[idx]
    span = np.ptp(vals)
    levels = np.zeros_like(vals, dtype=int) if span == 0 else ((vals - vals.min()) / span * 7).round().astype(int)
    return "".join(SPARK[i] for i in levels)


def loss_trend(values: Sequence[float]) -> str:
    """'2.30→0.05 ↓ ▇▅▃▂▁': first and last value, direction, and the curve's shape.
    ↓ falls by over 5%, → stays within 5%, ↑ rises by over 5%; 'diverged' when it became NaN/inf."""
    if not values:
        return "n/a"
    if any(not math.isfinite(v) for v in values):
        return "diverged (NaN/inf)"
    first, last = values[0], values[-1]
    change = (last - first) / abs(first) if first else 0.0
    arrow = "↓" if change < -0.05 else ("↑" if change > 0.05 else "→")
    return f"{first:.3g}→{last:.3g} {arrow} {sparkline(values)}"
