"""What wandb's sweep panels show, rebuilt offline from a sweep's trials: parameter importance and
correlation with the metric, a parallel-coordinates plot, the runs table sorted by the metric, the
metric per value of each parameter, and plain sentences of what the numbers say.

Features, as in wandb's parameter-importance panel: a numeric parameter is one feature (its log10
when its values span LOG_DECADES decades or more, named `log10(lr)`); a categorical one (strings,
bools, lists such as hidden sizes shown as "128-64", mixed types) is one 0/1 indicator per value
(`optimizer=adam`). Parameters that never change are left out. Importance is a random forest's
feature_importances_ fitted on features -> metric; correlation is Pearson's r of each feature with
the metric. Diverged trials are left out of both and listed separately.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from common.plots import plt, save_figure
from common.reporting import markdown_table, pct
from common.sweep import TrialResult, format_value

LOG_DECADES = 1.5  # a positive numeric parameter spanning this many decades is analysed as log10
MIN_TRIALS_FOR_IMPORTANCE = 3
MAX_VALUES_LISTED = 8  # a numeric parameter with at most this many values (a grid) shows discrete levels


# ------------------------------------------------------------------------------------------------
# parameters -> features
# ------------------------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def param_kind(values: Sequence[Any]) -> str:
    """'numeric', 'log' (positive numbers spanning LOG_DECADES decades or more) or 'categorical'."""
    present = [v for v in values if v is not None]
    if not present or not all(_is_number(v) for v in present):
        return "categorical"
    low, high = min(present), max(present)
    if low > 0 and math.log10(high / low) >= LOG_DECADES:
        return "log"
    return "numeric"


def categories(values: Sequence[Any]) -> list[str]:
    """The distinct values as labels, sorted naturally ("relu" < "tanh", "64" < "128-64" < "256")."""
    return sorted(set(format_value(v) for v in values), key=_natural)


def _natural(label: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def levels(values: Sequence[Any]) -> list[str] | None:
    """The labels of a discrete axis, in order: a categorical parameter's values, or a numeric one's
    when it takes at most MAX_VALUES_LISTED values (a grid), sorted by value. None when continuous."""
    if param_kind(values) == "categorical":
        return categories(values)
    distinct = sorted(set(float(v) for v in values if v is not None))
    if len(distinct) > MAX_VALUES_LISTED:
        return None
    by_number = {float(v): format_value(v) for v in values if v is not None}
    return [by_number[v] for v in distinct]


def swept_params(trials: Sequence[TrialResult]) -> list[str]:
    """Parameters that take more than one value across the trials, in the trials' key order."""
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    return [n for n in names if len(categories([t.params.get(n) for t in trials])) > 1]


@dataclass
class Feature:
    """One column of the importance panel."""
    name: str         # "epochs", "log10(lr)", "optimizer=adam"
    param: str        # the parameter it comes from
    kind: str         # "numeric", "log" or "categorical" (then name is param=value)
    importance: float = math.nan  # random-forest importance (NaN with too few finished trials)
    correlation: float = 0.0      # Pearson r with the metric over finished trials (0 if constant)


@dataclass
class SweepAnalysis:
    metric: str
    goal: str
    features: list[Feature]  # most important first
    n_finished: int
    diverged: list[str] = field(default_factory=list)  # names of trials left out (NaN metric)
    best: TrialResult | None = None

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no feature {name!r}; features: {[f.name for f in self.features]}")

    @property
    def has_importance(self) -> bool:
        return any(math.isfinite(f.importance) for f in self.features)


def _feature_columns(trials: Sequence[TrialResult], params: Sequence[str], all_trials: Sequence[TrialResult]
                     ) -> tuple[list[Feature], np.ndarray]:
    """Features and their values (n_trials, n_features) for `trials`; kinds and categories are taken
    from `all_trials` so diverged trials do not change how a parameter is read."""
    features, columns = [], []
    for param in params:
        kind = param_kind([t.params.get(param) for t in all_trials])
        values = [t.params.get(param) for t in trials]
        if kind == "categorical":
            for label in categories([t.params.get(param) for t in all_trials]):
                features.append(Feature(f"{param}={label}", param, kind))
                columns.append([float(format_value(v) == label) for v in values])
        else:
            x = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
            features.append(Feature(f"log10({param})" if kind == "log" else param, param, kind))
            columns.append(np.log10(x) if kind == "log" else x)
    matrix = np.asarray(columns, dtype=float).T.reshape(len(trials), len(features))
    return features, matrix


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r, 0 when either side is constant (or fewer than 2 points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def analyse(trials: Sequence[TrialResult], metric: str, goal: str = "maximize") -> SweepAnalysis:
    """Importance and correlation of every swept parameter's features with `metric`."""
    finished = [t for t in trials if math.isfinite(t.get(metric))]
    diverged = [t.name for t in trials if not math.isfinite(t.get(metric))]
    features, x = _feature_columns(finished, swept_params(trials), trials)  # (n_finished, n_features)
    y = np.asarray([t.get(metric) for t in finished], dtype=float)  # (n_finished,)
    for j, feature in enumerate(features):
        feature.correlation = pearson(x[:, j], y)
    if len(finished) >= MIN_TRIALS_FOR_IMPORTANCE and features:
        from sklearn.ensemble import RandomForestRegressor  # slow to import; only needed here

        forest = RandomForestRegressor(n_estimators=100, random_state=0)
        forest.fit(np.nan_to_num(x, nan=0.0), y)
        for feature, importance in zip(features, forest.feature_importances_):
            feature.importance = float(importance)
    features.sort(key=lambda f: (-(f.importance if math.isfinite(f.importance) else -1.0),
                                 -abs(f.correlation)))
    return SweepAnalysis(metric, goal, features, len(finished), diverged, _best_by(finished, metric, goal))


def _best_by(trials: Sequence[TrialResult], metric: str, goal: str) -> TrialResult | None:
    if not trials:
        return None
    pick = max if goal == "maximize" else min
    return pick(trials, key=lambda t: t.get(metric))


def _ranked(trials: Sequence[TrialResult], metric: str, goal: str) -> list[TrialResult]:
    """Best first; trials without a finite metric (diverged) last, in index order."""
    sign = -1.0 if goal == "maximize" else 1.0
    finished = sorted((t for t in trials if math.isfinite(t.get(metric))),
                      key=lambda t: (sign * t.get(metric), t.index))
    return finished + [t for t in trials if not math.isfinite(t.get(metric))]


def format_metric(metric: str, value: float, digits: int = 2) -> str:
    """Accuracies (names ending in acc/accuracy) as percentages, anything else to 4 digits."""
    if not math.isfinite(value):
        return "n/a"
    if metric.endswith(("acc", "accuracy")):
        return pct(value) if digits == 2 else f"{100 * value:.{digits}f}%"
    return f"{value:.4g}"


# ------------------------------------------------------------------------------------------------
# the runs table and the findings
# ------------------------------------------------------------------------------------------------
def runs_table(trials: Sequence[TrialResult], params: Sequence[str], metric: str, top: int | None = None,
               *, goal: str = "maximize") -> str:
    """Markdown: rank, name, each parameter, the metric, seconds; best first, diverged last."""
    ranked = _ranked(trials, metric, goal)[:top]
    rows = []
    for rank, trial in enumerate(ranked, 1):
        value = trial.get(metric)
        shown = format_metric(metric, value) if math.isfinite(value) else (
            "diverged" if trial.status == "diverged" else "n/a")
        rows.append([rank, trial.name, *(format_value(trial.params.get(p)) for p in params), shown,
                     f"{trial.seconds:.1f}"])
    return markdown_table(["rank", "name", *params, metric, "seconds"], rows)


def _strength(r: float) -> str:
    size = abs(r)
    words = "negligible" if size < 0.1 else "weak" if size < 0.3 else "moderate" if size < 0.5 else "strong"
    return words if size < 0.1 else f"{words} {'positive' if r > 0 else 'negative'}"


def _means_by_value(trials: Sequence[TrialResult], param: str, metric: str) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for trial in trials:
        groups.setdefault(format_value(trial.params.get(param)), []).append(trial.get(metric))
    return groups


def _as_number(label: str) -> float:
    try:
        return float(label)
    except ValueError:  # a trial without this parameter ("None") goes last
        return math.inf


def describe_findings(analysis: SweepAnalysis, trials: Sequence[TrialResult], metric: str | None = None
                      ) -> list[str]:
    """A few sentences that state what the numbers show: counts, the best trial, the mean metric per
    value of each categorical parameter (best first), each numeric parameter's correlation, and the
    features the random forest found most important."""
    metric = metric or analysis.metric
    maximize = analysis.goal == "maximize"
    finished = [t for t in trials if math.isfinite(t.get(metric))]
    lines = [f"{len(trials)} trials: {len(finished)} finished, {len(analysis.diverged)} diverged"
             + (f" ({', '.join(analysis.diverged)})." if analysis.diverged else ".")]
    if analysis.best is not None:
        best = analysis.best
        lines.append(f"Best {metric}: {format_metric(metric, best.get(metric), 1)} by {best.name} ("
                     + ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items()) + ").")
    for param in swept_params(trials):
        kind = param_kind([t.params.get(param) for t in trials])
        groups = _means_by_value(finished, param, metric)
        means = {label: (float(np.mean(v)), len(v)) for label, v in groups.items()}
        if kind == "categorical":
            order = sorted(means, key=lambda k: means[k][0], reverse=maximize)
            joined = (" > " if maximize else " < ").join(
                f"{k} {format_metric(metric, means[k][0], 1)} (n={means[k][1]})" for k in order)
            lines.append(f"{param} (mean {metric} per value): {joined}.")
            continue
        feature = next((f for f in analysis.features if f.param == param), None)
        if feature is None:  # the analysis was made from other trials
            continue
        text = f"{feature.name}: correlation with {metric} {feature.correlation:+.2f} " \
               f"({_strength(feature.correlation)})"
        if len(means) <= MAX_VALUES_LISTED and means:
            by_value = sorted(means, key=_as_number)
            text += "; mean per value " + ", ".join(
                f"{k}: {format_metric(metric, means[k][0], 1)} (n={means[k][1]})" for k in by_value)
        lines.append(text + ".")
    ranked = [f for f in analysis.features if math.isfinite(f.importance)][:3]
    if ranked:
        lines.append("Most important features (random-forest importance): "
                     + ", ".join(f"{f.name} {f.importance:.2f}" for f in ranked) + ".")
    elif analysis.features:
        lines.append(f"Importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials "
                     f"(have {analysis.n_finished}); correlations only.")
    return lines


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------
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
    ranked = _ranked(trials, metric, goal)
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
