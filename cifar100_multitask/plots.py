"""The confusion matrices of the hierarchy, made readable: classes ordered by their parent label, with
lines between parents and the parents' names on the axes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.plots import save_figure


def grouped_order(parent: np.ndarray) -> np.ndarray:
    """Class indices sorted by parent label (stable: class order kept inside a parent)."""
    return np.argsort(parent, kind="stable")


def plot_grouped_confusion(matrix: np.ndarray, names: Sequence[str], parent: np.ndarray,
                           parent_names: Sequence[str], path: Path, *, title: str) -> Path:
    """Row-normalised confusion (rows true, columns predicted) with classes grouped by `parent`:
    separators between parents, every class named, each block labelled with its parent."""
    order = grouped_order(parent)
    shown = np.asarray(matrix, float)[np.ix_(order, order)]
    shown = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)
    n = len(order)
    size = 6 + 0.12 * n
    fig, ax = plt.subplots(figsize=(size + 3, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(shown.max(), 1e-9))
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.16 if n > 40 else 0.22, label="share of the true class's examples")
    fontsize = 5 if n > 40 else 7
    ax.set_xticks(range(n), [names[k] for k in order], rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), [names[k] for k in order], fontsize=fontsize)
    sorted_parent = parent[order]
    bounds = np.flatnonzero(np.diff(sorted_parent)) + 0.5
    for b in bounds:
        ax.axhline(b, color="crimson", lw=0.6)
        ax.axvline(b, color="crimson", lw=0.6)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_parent)) + 1])
    ends = np.concatenate([starts[1:], [n]])
    for s, e in zip(starts, ends):
        ax.text(n + 0.5, (s + e - 1) / 2, parent_names[sorted_parent[s]], fontsize=fontsize + 1,
                va="center", ha="left", color="crimson", clip_on=False)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if shown[i, j] >= 0.005:
                    ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if shown[i, j] > 0.5 * shown.max() else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
