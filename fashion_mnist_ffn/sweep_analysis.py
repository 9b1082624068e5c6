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
from typing import Any, Sequence

import numpy as np

from common.reporting import markdown_table, pct
from common.formats import is_real
from fashion_mnist_ffn.sweep_runner import TrialResult, format_value

LOG_DECADES = 1.5  # a positive numeric parameter spanning this many decades is analysed as log10
MIN_TRIALS_FOR_IMPORTANCE = 3
MAX_VALUES_LISTED = 8  # a numeric parameter with at most this many values (a grid) shows discrete levels


# ------------------------------------------------------------------------------------------------
# parameters -> features
# ------------------------------------------------------------------------------------------------
def param_kind(values: Sequence[Any]) -> str:
    """'numeric', 'log' (positive numbers spanning LOG_DECADES decades or more) or 'categorical'."""
    present = [v for v in values if v is not None]
    if not present or not all(is_real(v) for v in present):
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


def rank_trials(trials: Sequence[TrialResult], metric: str, goal: str) -> list[TrialResult]:
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
    ranked = rank_trials(trials, metric, goal)[:top]
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
