"""What report.py files share: the runs they declare, the results they read back, markdown tables.
A report is rebuilt from run directories alone (config.json, summary.json, metrics.jsonl, plots)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Sequence

from common.errors import UserError
from common.rundir import read_json, read_metrics


@dataclass(frozen=True)
class RunSpec:
    """One run behind a report: a name (its folder), the flags that define it, and the script of the
    assignment that runs it (train.py unless an experiment has a small script of its own)."""
    name: str
    args: tuple[str, ...]
    script: str = "train.py"


@dataclass
class RunResult:
    name: str
    path: Path
    config: dict
    summary: dict
    records: list[dict]

    def curve(self, key: str) -> list[float]:
        return [r[key] for r in self.records]


@dataclass(frozen=True)
class Headline:
    """An assignment's row in reports/index.md, the page a grader opens first: what the course asked (one line),
    the headline metric, the original report's figure ("—" where it gives none) and ours."""
    task: str
    metric: str
    original: str
    ours: str


CONFIG_KEYS = ("args", "data_source", "command", "git_commit", "hardware")   # what every run's config.json holds


def load_result(name: str, path: Path) -> RunResult:
    """A finished run's config, summary and metrics; a damaged file is a one-line UserError."""
    path = Path(path)
    fix = f"delete {path} and run it again"
    config = read_json(path / "config.json", fix, keys=CONFIG_KEYS)
    if not (isinstance(config["args"], dict) and isinstance(config["hardware"], dict)):
        raise UserError(f"{path / 'config.json'}: its args or hardware are no object; {fix}")
    return RunResult(name, path, config, read_json(path / "summary.json", fix, keys=()), read_metrics(path))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    """'0.662 ± 0.026' (std over runs, n - 1 in the denominator; one run: no std; none: '—')."""
    return f"{mean(values):.3f}" + (f" ± {stdev(values):.3f}" if len(values) > 1 else "") if values else "—"


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def copy_figure(result: RunResult, figure: str, report_dir: Path, new_name: str) -> str:
    """Copy a run's PNG next to the report; returns the path to write in the markdown. One that is missing, or
    no regular file (a device would be copied for ever), is a one-line UserError."""
    source = Path(result.path) / figure
    if not source.is_file():
        raise UserError(f"{source} is missing or no file: the report copies it from the run {result.name}; delete "
                        f"{result.path} and reproduce again")
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, report_dir / new_name)
    return f"{report_dir.name}/{new_name}"
