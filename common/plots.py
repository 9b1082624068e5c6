"""Figures every assignment needs: training curves, an annotated confusion matrix, an image grid,
and overlays of one metric across runs. All write PNG files and close their figures."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def save_figure(fig, path: Path) -> Path:
    """tight_layout, write the PNG (making its folder), close the figure; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(records: Sequence[Mapping], panels: Mapping[str, Sequence[str]], path: Path,
                title: str = "", x_key: str = "epoch") -> Path:
    """One panel per entry of `panels` (e.g. {"loss": ["train_loss", "test_loss"]}), metric vs epoch."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    xs = [r[x_key] for r in records]
    for ax, (ylabel, keys) in zip(axes[0], panels.items()):
        for key in keys:
            ax.plot(xs, [r.get(key, np.nan) for r in records], marker="o", markersize=3,
                    label=key.replace("_", " "))
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path, *, normalize: bool = False,
                   title: str = "") -> Path:
    """Annotated confusion matrix; rows true, columns predicted. `normalize` shows row fractions."""
    matrix = np.asarray(matrix, dtype=float)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    n = len(classes)
    size = max(4.5, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > threshold else "black")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    return save_figure(fig, path)


def plot_image_grid(images: np.ndarray, titles: Sequence[str], path: Path, *, ncols: int = 10,
                    title: str = "") -> Path:
    """Images (N, H, W) grey or (N, H, W, C) colour, one title each."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_overlays(panels: Mapping[str, Mapping[str, Sequence[float]]], path: Path, *, ylabel: str,
                  title: str = "", xlabel: str = "epoch", sharey: bool = False) -> Path:
    """Several runs' curves of one metric: one panel per entry (panel title -> run label -> values)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, sharey=sharey)
    for ax, (panel_title, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=2.5, label=label)
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title, fontsize=9)
        if not sharey:
            ax.set_ylabel(panel_title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if sharey:
        axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
