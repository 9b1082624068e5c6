"""The figures of the foundation experiments (activations, XOR, approximation, gradient flow). Each
function writes one PNG and closes its figure; common.plots has the figures every assignment shares.

    plot_activations(x, {"relu": (f, df), ...}, run.file("activations.png"))
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from common.plots import plt, save_figure


LINE_STYLES = ["-", "--", "-.", ":"]  # curves that coincide (ReLU and leaky ReLU for x > 0) stay visible


def _finish(ax, title: str, xlabel: str, ylabel: str = "") -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_activations(x: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path,
                     title: str = "") -> Path:
    """Two panels over x (P,): every activation's f(x), then its f'(x)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (name, (value, derivative)), style in zip(curves.items(), LINE_STYLES * len(curves)):
        axes[0].plot(x, value, style, lw=1.6, label=name)
        axes[1].plot(x, derivative, style, lw=1.6, label=name)
    for ax, panel in zip(axes, ("f(x)", "f'(x)")):
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        _finish(ax, panel, "x")
    axes[0].set_ylim(-1.5, min(float(x[-1]), 4.0))
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_decision_boundary(predict: Callable[[np.ndarray], np.ndarray], points: np.ndarray, labels: np.ndarray,
                           losses: Sequence[float], path: Path, *, cloud: np.ndarray | None = None,
                           cloud_labels: np.ndarray | None = None, title: str = "") -> Path:
    """P(class 1) over the plane as filled contours with the points (N, 2), and the loss per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    low, high = points.min() - 0.5, points.max() + 0.5
    grid = np.linspace(low, high, 201)
    gx, gy = np.meshgrid(grid, grid)                                     # (201, 201) each
    prob = predict(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    filled = axes[0].contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.8)
    axes[0].contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.2)
    fig.colorbar(filled, ax=axes[0], label="P(class 1)")
    for label, marker, colour in ((0, "o", "white"), (1, "s", "black")):
        if cloud is not None and len(cloud):
            noisy = cloud[cloud_labels == label]
            axes[0].scatter(noisy[:, 0], noisy[:, 1], marker=marker, s=10, c=colour, edgecolors="k", linewidths=0.4)
        chosen = points[labels == label]
        axes[0].scatter(chosen[:, 0], chosen[:, 1], marker=marker, s=120, c=colour, edgecolors="k", linewidths=1.5,
                        label=f"class {label}")
    axes[0].set_aspect("equal")
    _finish(axes[0], "decision boundary (black line: P = 0.5)", "x1", "x2")
    axes[1].semilogy(range(1, len(losses) + 1), losses, label="cross-entropy (full batch)")
    _finish(axes[1], "training loss", "epoch (one full-batch step)")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_fits(x: np.ndarray, target: np.ndarray, predictions: Mapping[int, np.ndarray],
              samples: tuple[np.ndarray, np.ndarray], path: Path, title: str = "") -> Path:
    """One panel per hidden width: the target and the network's fit over x (P,), training samples dotted."""
    widths = list(predictions)
    ncols = min(4, len(widths))
    nrows = int(np.ceil(len(widths) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(widths):]:
        ax.axis("off")
    for ax, width in zip(axes.flat, widths):
        ax.scatter(samples[0], samples[1], s=3, color="grey", alpha=0.5, label="training samples")
        ax.plot(x, target, color="k", lw=1.2, label="target")
        ax.plot(x, predictions[width], color="tab:red", lw=1.4, label="network")
        _finish(ax, f"{width} hidden unit{'s' if width > 1 else ''}", "x")
        if ax is not axes.flat[0]:
            ax.get_legend().remove()
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_error_vs_width(errors: Mapping[str, Mapping[int, float]], curves: Mapping[int, Sequence[float]],
                        path: Path, title: str = "") -> Path:
    """Final MSE against the hidden width (log-log), one line per split; and the training MSE curves."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, by_width in errors.items():
        axes[0].loglog(list(by_width), list(by_width.values()), marker="o", label=split)
    axes[0].set_xticks(list(next(iter(errors.values()))), [str(w) for w in next(iter(errors.values()))])
    _finish(axes[0], "final mean squared error vs width", "hidden units", "MSE")
    for width, curve in curves.items():
        axes[1].loglog(range(1, len(curve) + 1), curve, label=f"{width} units")
    _finish(axes[1], "training MSE per step", "step (full batch)")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_gradient_flow(norms: Mapping[str, Mapping[str, Sequence[float]]], losses: Mapping[str, tuple],
                       path: Path, title: str = "") -> Path:
    """||dW|| per Dense layer (log y) for each activation, solid at init and dashed after training;
    and each activation's training loss (losses: name -> (steps, values))."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = dict(zip(norms, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for name, by_phase in norms.items():
        for phase, style in (("init", "-"), ("trained", "--")):
            values = by_phase[phase]
            axes[0].semilogy(range(1, len(values) + 1), values, style, marker="o", markersize=3,
                             color=colours[name], label=f"{name}, {phase}")
    _finish(axes[0], "weight-gradient norm per layer (mean over probe batches)", "Dense layer (1 = input side)",
            "||dL/dW||")
    for name, (steps, values) in losses.items():
        axes[1].plot(steps, values, color=colours[name], label=name)
    _finish(axes[1], "training loss", "step", "cross-entropy (window mean)")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_lr_schedules(panels: Mapping[str, Mapping[str, Sequence[float]]], path: Path, title: str = "") -> Path:
    """One panel per metric (panel -> schedule -> value per epoch); the first panel, the learning rate,
    on a log scale so that step's and polynomial's late epochs stay visible."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False)
    for index, (ax, (panel, curves)) in enumerate(zip(axes[0], panels.items())):
        for label, values in curves.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=2.5, label=label)
        if index == 0:
            ax.set_yscale("log")
        _finish(ax, panel, "epoch", panel)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
