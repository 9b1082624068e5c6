"""The sweep panels wandb draws, as PNGs: parallel coordinates, parameter importance, the metric by parameter."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from common.plots import plt, save_figure
from fashion_mnist_ffn.sweep_analysis import (MIN_TRIALS_FOR_IMPORTANCE, SweepAnalysis, format_metric, levels,
                                              param_kind, rank_trials)
from fashion_mnist_ffn.sweep_runner import TrialResult, format_value


@dataclass
class _Axis:
    """One vertical axis of the parallel-coordinates plot: values mapped onto [0, 1]."""
    label: str
    to_unit: Callable[[Any], float]
    ticks: list[tuple[float, str]]


def _numeric_axis(label: str, values: Sequence[float], log: bool, fmt: Callable[[float], str]) -> _Axis:
    from matplotlib.ticker import MaxNLocator

    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    transform = (lambda v: math.log10(v)) if log else (lambda v: v)
    low, high = (transform(min(finite)), transform(max(finite))) if finite else (0.0, 1.0)
    span = high - low

    def to_unit(v: Any) -> float:
        if v is None or not math.isfinite(float(v)):
            return math.nan
        return 0.5 if span == 0 else (transform(float(v)) - low) / span

    if span == 0:
        ticks = [(0.5, fmt(min(finite)))] if finite else []
    else:
        marks = (np.arange(math.ceil(low), math.floor(high) + 1, dtype=float) if log
                 else MaxNLocator(nbins=5).tick_values(low, high))
        marks = [m for m in marks if low - 1e-9 <= m <= high + 1e-9]
        if len(marks) < 2:
            marks = [low, high]
        ticks = [((m - low) / span, fmt(10 ** m if log else m)) for m in marks]
    return _Axis(label, to_unit, ticks)


def _param_axis(param: str, values: Sequence[Any]) -> _Axis:
    labels = levels(values)
    if labels is not None:
        spots = {k: (0.5 if len(labels) == 1 else i / (len(labels) - 1)) for i, k in enumerate(labels)}
        return _Axis(param, lambda v: spots.get(format_value(v), math.nan), [(spots[k], k) for k in labels])
    return _numeric_axis(param, values, param_kind(values) == "log", lambda v: f"{v:.3g}")


def plot_parallel_coordinates(trials: Sequence[TrialResult], params: Sequence[str], metric: str, path: Path,
                              *, goal: str = "maximize", title: str = "") -> Path:
    """One vertical axis per parameter and the metric last; one line per trial coloured by the
    metric (viridis, reversed when minimising so better is brighter), best drawn last and thicker;
    diverged trials grey and dashed, stopping before the metric axis. Categorical axes, and numeric
    ones with at most MAX_VALUES_LISTED values (a grid), place their values evenly in order and label
    them; continuous ones label their ticks (log10 scale for log-spread parameters)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FuncFormatter

    axes = [_param_axis(p, [t.params.get(p) for t in trials]) for p in params]
    axes.append(_numeric_axis(metric, [t.get(metric) for t in trials], False,
                              lambda v: format_metric(metric, v, 1)))
    ranked = rank_trials(trials, metric, goal)
    finished = [t for t in ranked if math.isfinite(t.get(metric))]
    unfinished = [t for t in ranked if not math.isfinite(t.get(metric))]
    values = [t.get(metric) for t in finished]
    norm = Normalize(min(values), max(values)) if values and min(values) < max(values) else Normalize(0, 1)
    cmap = plt.get_cmap("viridis" if goal == "maximize" else "viridis_r")  # the best is always yellow

    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(axes) + 2), 4.8))
    xs = np.arange(len(axes))
    for trial in unfinished:
        ys = [a.to_unit(trial.params.get(a.label)) for a in axes[:-1]]
        ax.plot(xs[:-1], ys, color="0.6", linestyle="--", linewidth=1, alpha=0.6, zorder=1)
    for order, trial in enumerate(reversed(finished)):  # worst first, best last (on top)
        ys = [a.to_unit(trial.params.get(a.label)) for a in axes[:-1]] + [axes[-1].to_unit(trial.get(metric))]
        is_best = order == len(finished) - 1
        ax.plot(xs, ys, color=cmap(norm(trial.get(metric))), linewidth=3.2 if is_best else 1.3,
                alpha=1.0 if is_best else 0.75, zorder=3 + order)
    for x, axis in zip(xs, axes):
        ax.plot([x, x], [0, 1], color="black", linewidth=1, zorder=2)
        for y, label in axis.ticks:
            ax.plot([x - 0.03, x], [y, y], color="black", linewidth=0.8, zorder=2)
            ax.text(x - 0.05, y, label, ha="right", va="center", fontsize=7, zorder=100,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.6, "pad": 0.5})
        ax.text(x, 1.05, axis.label, ha="center", va="bottom", fontsize=8, fontweight="bold")
    ax.set_xlim(-0.6, len(axes) - 0.6)
    ax.set_ylim(-0.05, 1.14)
    ax.set_axis_off()
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric, fraction=0.04, pad=0.02)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_metric(metric, v, 1)))
    parts = [f"{len(finished)} trials"] + ([f"{len(unfinished)} diverged (dashed)"] if unfinished else [])
    if finished:
        parts.append(f"best {finished[0].name} (thick): {format_metric(metric, finished[0].get(metric))}")
    ax.set_title(title or ", ".join(parts), fontsize=9, pad=18)
    return save_figure(fig, path)


def plot_importance(analysis: SweepAnalysis, path: Path, top: int = 15, *, title: str = "") -> Path:
    """Two bar panels, features sorted by importance (most important on top): random-forest
    importance, and correlation with the metric (green positive, red negative)."""
    features = analysis.features[:top]
    names = [f.name for f in features][::-1]  # barh draws bottom-up
    ys = np.arange(len(features))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.35 * len(features) + 1.6), sharey=True)
    if analysis.has_importance:
        left.barh(ys, [f.importance for f in features][::-1], color="tab:blue")
    else:
        left.text(0.5, 0.5, f"needs >= {MIN_TRIALS_FOR_IMPORTANCE} finished trials\n(have "
                  f"{analysis.n_finished})", ha="center", va="center", transform=left.transAxes, fontsize=8)
    left.set_yticks(ys, names, fontsize=8)
    left.set_xlabel("importance (random forest)")
    correlations = [f.correlation for f in features][::-1]
    right.barh(ys, correlations, color=["tab:green" if c >= 0 else "tab:red" for c in correlations])
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlim(-1, 1)
    right.set_xlabel(f"correlation with {analysis.metric}")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or f"parameter importance for {analysis.metric} "
                          f"({analysis.n_finished} finished trials)", fontsize=10)
    return save_figure(fig, path)


def plot_metric_by_param(trials: Sequence[TrialResult], params: Sequence[str], metric: str, path: Path,
                         *, ncols: int = 4, title: str = "") -> Path:
    """One small panel per parameter: each finished trial's metric against the parameter's value
    (categories, and numeric parameters with at most MAX_VALUES_LISTED values, as a jittered strip
    with each value's mean as a black bar; other numbers as a scatter, log x when log-spread)."""
    finished = [t for t in trials if math.isfinite(t.get(metric))]
    ncols = max(1, min(ncols, len(params)))
    nrows = max(1, math.ceil(len(params) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.8 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    jitter = np.random.default_rng(0)
    scale = 100.0 if metric.endswith(("acc", "accuracy")) else 1.0
    y = np.asarray([t.get(metric) for t in finished], dtype=float) * scale  # (n_finished,)
    for ax, param in zip(axes.flat, params):
        values = [t.params.get(param) for t in finished]
        labels = levels([t.params.get(param) for t in trials])
        if labels is not None:
            x = np.asarray([labels.index(format_value(v)) if format_value(v) in labels else np.nan
                            for v in values], dtype=float)
            ax.scatter(x + jitter.uniform(-0.15, 0.15, x.size), y, s=14, alpha=0.7)
            for i in range(len(labels)):
                if (x == i).any():
                    ax.plot([i - 0.3, i + 0.3], [y[x == i].mean()] * 2, color="black", linewidth=2)
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0, fontsize=7)
        else:
            ax.scatter([float(v) for v in values], y, s=14, alpha=0.7)
            if param_kind([t.params.get(param) for t in trials]) == "log":
                ax.set_xscale("log")
        ax.set_xlabel(param, fontsize=8)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"{metric} (%)" if scale == 100 else metric, fontsize=8)
    fig.suptitle(title or f"{metric} per parameter value ({len(finished)} finished trials)", fontsize=10)
    return save_figure(fig, path)
