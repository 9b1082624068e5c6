"""kd_cifar10's report: Exercise 1 and the course project's section 4 (design_report.py: MLP/CNN design,
depth with and without skips, ResNet-18 vs plain, augmentation, transfer learning) followed by
Exercise 2 (distill_report.py: teacher, student baseline, distilled student)."""
from __future__ import annotations

from pathlib import Path

from common.reporting import Headline, RunResult, RunSpec, pct
from kd_cifar10 import design_report, distill_report

PARTS = {"design_": design_report, "distill_": distill_report}  # run-name prefix -> the part's report


def runs(quick: bool) -> list[RunSpec]:
    return [spec for part in PARTS.values() for spec in part.runs(quick)]


def _part(results: dict[str, RunResult], prefix: str) -> dict[str, RunResult]:
    return {k: v for k, v in results.items() if k.startswith(prefix)}


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    return "\n\n".join(part.build(_part(results, prefix), report_dir) for prefix, part in PARTS.items())


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: Exercise 2's distilled student (mean ± std over seeds) beside the original report's."""
    run = results.get("distill_main")
    key = "student distilled"
    return Headline("CIFAR-10 classifiers by design (MLP, CNN, ResNet-18, transfer) and Hinton distillation",
                    "test accuracy, distilled student (mean ± std over seeds)",
                    pct(distill_report.ORIGINAL_TABLE[key]),
                    distill_report.ours(run.summary)[key] if run else "not run")
