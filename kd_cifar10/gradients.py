"""Per-layer gradient norms during training, and the plot of gradient norm against depth.

A GradientMonitor hooks every trainable parameter (register_post_accumulate_grad_hook): each backward
pass adds ||grad||^2 of a parameter to its layer's slot, `next_step()` (train.py calls it before every
forward pass) turns the finished step's slots into per-layer norms, and `epoch_means()` returns their
mean over the epoch. Everything stays on the device until that once-per-epoch read.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from common.plots import plt, save_figure


class GradientMonitor:
    def __init__(self, groups: Sequence[tuple[str, Sequence[nn.Parameter]]]):
        self.names = [name for name, _ in groups]
        device = next(p.device for _, params in groups for p in params)
        self._step = torch.zeros(len(groups), device=device)    # (G,) sum of squared grads, this step
        self._total = torch.zeros(len(groups), device=device)   # (G,) sum over steps of per-step norms
        self._steps = 0
        self._open = False
        self._handles = [p.register_post_accumulate_grad_hook(partial(self._add, index))
                         for index, (_, params) in enumerate(groups) for p in params if p.requires_grad]

    def _add(self, index: int, param: nn.Parameter) -> None:
        self._step[index] += param.grad.detach().float().pow(2).sum()
        self._open = True

    def next_step(self) -> None:
        """Close the previous step (call before each forward pass)."""
        if self._open:
            self._total += self._step.sqrt()
            self._steps += 1
            self._step.zero_()
            self._open = False

    def epoch_means(self) -> list[float]:
        """Mean per-layer gradient norm over the steps since the last call (one host sync)."""
        self.next_step()
        means = (self._total / max(self._steps, 1)).tolist()
        self._total.zero_()
        self._steps = 0
        return means

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def plot_gradient_norms(curves: Mapping[str, Sequence[float]], names: Sequence[str], path: Path,
                        title: str = "") -> Path:
    """Per-layer gradient norm (log scale) against depth, one line per label (an epoch, or a run)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.28 * len(names) + 2), 3.8))
    for label, values in curves.items():
        ax.plot(range(len(values)), [max(v, 1e-12) for v in values], marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("mean gradient norm per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
