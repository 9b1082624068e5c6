"""dfad_kd's own figure: the teacher's predicted-class histogram on the inputs the student learns from."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.plots import save_figure


def plot_class_histogram(records: Sequence[Mapping], classes: Sequence[str], path: Path, title: str = "") -> Path:
    """Left: the share of each teacher class per epoch (a heat map; one bright row = mode collapse);
    right: the last epoch's histogram against the uniform share."""
    hist = np.array([r["class_hist"] for r in records if "class_hist" in r])       # (epochs, K)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    image = left.imshow(hist.T, aspect="auto", cmap="viridis", origin="lower", vmin=0,
                        extent=(0.5, len(hist) + 0.5, -0.5, len(classes) - 0.5))
    fig.colorbar(image, ax=left, fraction=0.046, pad=0.04)
    left.set_yticks(range(len(classes)), classes, fontsize=7)
    left.set_xlabel("epoch")
    left.set_title("teacher's class share per epoch", fontsize=9)
    right.bar(range(len(classes)), hist[-1])
    right.axhline(1 / len(classes), color="k", linestyle="--", linewidth=1, label="uniform")
    right.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    right.set_title("last epoch", fontsize=9)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
