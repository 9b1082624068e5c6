"""The distillation part of the kd_cifar10 report: one distill.py run (teacher, then a student baseline
and a distilled student per seed), its comparison table beside the original report's, and its plots."""
from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

from common.reporting import RunResult, RunSpec, copy_figure, markdown_table, pct
from kd_cifar10.distill import comparison_table

# the original report's table (full CIFAR-10, 50,000 / 10,000, on a GPU)
ORIGINAL_TABLE = {"teacher": 0.8595, "student baseline": 0.8236, "student distilled": 0.8587}
# the CPU configuration of the README: small widths, 4,000 real training images, three student seeds
CPU_FLAGS = ("--t-width", "16", "--s-width", "8", "--t-layers", "2", "2", "2", "2", "--s-layers", "1", "1", "1", "1")


def runs(quick: bool) -> list[RunSpec]:
    if quick:   # the generated stand-in: tiny widths, a few epochs, two student seeds
        return [RunSpec("distill_main", ("--t-width", "8", "--s-width", "4", "--epochs", "3",
                                         "--student-seeds", "0", "1", "--batch-size", "128"), script="distill.py")]
    return [RunSpec("distill_main", CPU_FLAGS + ("--teacher-epochs", "20", "--epochs", "15",
                                                "--student-seeds", "0", "1", "2"),
                    script="distill.py")]


def _spread(values: list[float]) -> str:
    return pct(mean(values)) + (f" ± {100 * stdev(values):.2f}" if len(values) > 1 else "")


def ours(summary: dict) -> dict[str, str]:
    """This run's figures for the rows of ORIGINAL_TABLE (the students: mean ± std over seeds)."""
    return {"teacher": pct(summary["teacher"]["test_acc"]),
            "student baseline": _spread([x["test_acc"] for x in summary["students"]]),
            "student distilled": _spread([x["test_acc"] for x in summary["distilled"]])}


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    run = results["distill_main"]
    s, a = run.summary, run.config["args"]
    figures = ours(s)
    curves = copy_figure(run, "curves.png", report_dir, "distill_curves.png")
    per_class = copy_figure(run, "per_class_accuracy.png", report_dir, "distill_per_class.png")
    teacher_flags = (f"--teacher {a['teacher']}" if a.get("teacher") else
                     f"--t-layers {' '.join(map(str, a['t_layers']))} --t-width {a['t_width']} "
                     f"--teacher-epochs {a['teacher_epochs']}")
    return "\n".join([
        "## Exercise 2: Hinton distillation", "",
        f"`python kd_cifar10/distill.py {teacher_flags} --s-layers {' '.join(map(str, a['s_layers']))} "
        f"--s-width {a['s_width']} --epochs {a['epochs']} --student-seeds {' '.join(map(str, s['seeds']))}` "
        f"(loss `{s['loss']}`, T = {s['temperature']:g}, alpha = {s['alpha']:g}, augmentation `{s['augment']}`, "
        f"global batch {s['global_batch']}, {s['world_size']} process(es)); data: {s['data_source']}.", "",
        comparison_table(s), "",
        f"The distilled student beats its baseline twin (same seed, same initial weights) for "
        f"{s['distilled_wins']} of {len(s['students'])} seeds.", "",
        markdown_table(["model", "original report (full CIFAR-10, GPU)", "this run (mean ± std over seeds)"],
                       [[k, pct(v), figures[k]] for k, v in ORIGINAL_TABLE.items()]), "",
        f"![curves]({curves})", "", f"![per-class accuracy]({per_class})", "",
    ])
