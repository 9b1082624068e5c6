"""The report: the original report's table (split x final loss, fine / super / group accuracy) with and without
the severity loss, the single-head model whose superclass and group come from its fine prediction,
and the class-weighted sampler on a long-tailed training part."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.data_source import short_source
from common.plots import plot_overlays, save_figure
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, pct
from cifar100_multitask.data import SPLITS

# the small configuration --quick trains on the generated stand-in (2-core CPU, minutes)
QUICK = ("--per-class", "60", "--depth", "2", "--width", "8", "--convs-per-stage", "1", "--epochs", "5")
LOSSES = {"none": "plain CE", "linear": "severity (1 + d)"}
IMBALANCE = "10"
QUICK_IMBALANCED_EPOCHS = ("--epochs", "10")  # its training part is ~40% of a balanced one: same cost
SAMPLER_SPLIT = "70:30"
# the original report's 90:10 figures
ORIGINAL = {"fine": 0.5565, "super": 0.5601, "group": 0.5925, "group_severity": 0.6248}


def split_run(split: str, severity: str) -> str:
    return f"split{split.replace(':', '-')}_{severity}"


def runs(quick: bool) -> list[RunSpec]:
    extra = QUICK if quick else ()
    specs = [RunSpec(split_run(split, severity), ("--split", split, "--severity", severity) + extra)
             for split in SPLITS for severity in LOSSES]
    specs.append(RunSpec("single_head", ("--heads", "fine", "--split", "90:10") + extra))
    specs += [RunSpec(f"imbalanced_{sampler}", ("--split", SAMPLER_SPLIT, "--imbalance", IMBALANCE,
                                                "--sampler", sampler) + extra
                      + (QUICK_IMBALANCED_EPOCHS if quick else ()))
              for sampler in ("uniform", "class_weighted")]
    return specs


def _accuracy_bars(results: dict[str, RunResult], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    x = np.arange(len(SPLITS))
    for ax, head in zip(axes, ("fine", "super", "group")):
        for i, (severity, label) in enumerate(LOSSES.items()):
            values = [results[split_run(s, severity)].summary[f"test_{head}_acc"] for s in SPLITS]
            bars = ax.bar(x + (i - 0.5) * 0.38, values, 0.38, label=label)
            ax.bar_label(bars, [f"{100 * v:.1f}" for v in values], fontsize=7)
        ax.set_xticks(x, list(SPLITS))
        ax.set_title(f"{head} accuracy (test part)", fontsize=9)
        ax.set_xlabel("train:test split")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def _recall_vs_count(results: dict[str, RunResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for sampler in ("uniform", "class_weighted"):
        s = results[f"imbalanced_{sampler}"].summary
        counts = np.asarray(s["train_counts"])
        recall = np.asarray([np.nan if r is None else r for r in s["fine_recall_per_class"]])
        order = np.argsort(counts)
        window = 10  # running mean over classes sorted by their training count
        smooth = np.convolve(np.nan_to_num(recall[order]), np.ones(window) / window, mode="valid")
        ax.scatter(counts, recall, s=8, alpha=0.4)
        ax.plot(counts[order][window - 1:], smooth, label=f"{sampler} (running mean of {window} classes)")
    ax.set_xlabel("training images of the fine class")
    ax.set_ylabel("recall on the test part")
    ax.set_title(f"per-class recall, training part long-tailed {IMBALANCE}:1", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _seed_section(results: dict[str, RunResult], report_dir: Path) -> list[str]:
    rows = []
    for split in SPLITS:
        for severity, label in LOSSES.items():
            s = results[split_run(split, severity)].summary
            rows.append([split, label, f"{s['train_loss']:.3f}", f"{s['test_loss']:.3f}", pct(s["test_fine_acc"]),
                         pct(s["test_super_acc"]), pct(s["test_group_acc"]), pct(s["test_consistency_all"]),
                         f"{s['fine_mistake_distance']:.2f}", pct(s["fine_mistakes_across_groups"])])
    _accuracy_bars(results, report_dir / "split_accuracy.png")
    plot_overlays({f"test loss, {split}": {LOSSES[sev]: results[split_run(split, sev)].curve("test_loss")
                                           for sev in LOSSES} for split in SPLITS},
                  report_dir / "split_test_loss.png", ylabel="test loss (sum of the three CEs)", sharey=True)
    best = results[split_run("90:10", "linear")]
    figures = {name: copy_figure(best, f"{name}.png", report_dir, f"severity_90-10_{name}.png")
               for name in ("confusion_fine", "confusion_super", "confusion_group", "curves", "samples")}
    plain_fine = copy_figure(results[split_run("90:10", "none")], "confusion_fine.png", report_dir,
                             "plain_90-10_confusion_fine.png")
    s = results[split_run("90:10", "none")].summary
    return [
        "## 1. The original report's table: split × loss", "",
        f"One backbone ({s['model']}, {s['parameters']:,} parameters), three heads, trained for {s['epochs']} "
        "epochs on the train part of the pooled images and measured on the rest. *train loss* is the last "
        "epoch's training objective (the severity runs' is larger by construction); *test loss* is the sum of "
        "the three heads' plain cross-entropies on the test part, comparable across rows. *mistake distance* is "
        "the mean tree distance of the wrong fine predictions (1 same superclass, 2 same group, 3 another "
        "group); *cross-group* is the share of wrong fine predictions that left the true group.", "",
        markdown_table(["split", "loss", "train loss", "test loss", "fine acc", "super acc", "group acc",
                        "consistency (all 3)", "mistake distance", "cross-group mistakes"], rows), "",
        f"The original report (real CIFAR-100, 90:10): fine {pct(ORIGINAL['fine'])}, super "
        f"{pct(ORIGINAL['super'])}, group {pct(ORIGINAL['group'])}, group {pct(ORIGINAL['group_severity'])} with "
        f"the severity loss. The figures above are on {short_source(s['data_source'])} — not comparable in level "
        "with the original report's.", "",
        f"![accuracy by split and loss]({report_dir.name}/split_accuracy.png)", "",
        f"![test loss curves]({report_dir.name}/split_test_loss.png)", "",
        "Curves of the 90:10 severity run (loss, per-head accuracy, hierarchy consistency):", "",
        f"![curves]({figures['curves']})", "",
        "Its confusion matrices, row-normalised; fine labels ordered and boxed by superclass, superclasses "
        "by group (red lines), so mistakes inside a superclass sit in the diagonal blocks:", "",
        f"![fine confusion, severity]({figures['confusion_fine']})", "",
        f"The same for the plain-CE 90:10 run: ![fine confusion, plain]({plain_fine})", "",
        f"![superclass confusion]({figures['confusion_super']})", "",
        f"![group confusion]({figures['confusion_group']})", "",
        f"One training image per superclass: ![samples]({figures['samples']})", "",
    ]


def _single_head_section(results: dict[str, RunResult], report_dir: Path) -> list[str]:
    named = {"3 heads, plain CE": split_run("90:10", "none"), "3 heads, severity": split_run("90:10", "linear"),
             "1 head (fine), super/group derived": "single_head"}
    rows = []
    for label, name in named.items():
        s = results[name].summary
        rows.append([label, f"{s['parameters']:,}", f"{s['test_loss']:.3f}", pct(s["test_fine_acc"]),
                     pct(s["test_super_acc"]), pct(s["test_group_acc"]), pct(s["test_consistency_all"]),
                     f"{s['train_seconds']:.0f} s"])
    plot_overlays({f"{head} accuracy": {label: results[name].curve(f"test_{head}_acc") for label, name in named.items()}
                   for head in ("fine", "super", "group")},
                  report_dir / "single_vs_multi.png", ylabel="test accuracy")
    return [
        "## 2. Is multi-task worth it? One head vs three (90:10)", "",
        "The single-head model has the same backbone and only the fine head; its superclass and group "
        "distributions are its fine distribution summed over each superclass's (group's) fine classes, "
        "and the argmax of those is its prediction (so its consistency is high but not forced to 100%: "
        "the argmax of a sum need not contain the argmax fine class).", "",
        markdown_table(["model", "parameters", "test loss (3 CEs)", "fine acc", "super acc", "group acc",
                        "consistency", "train time"], rows), "",
        f"![one head vs three]({report_dir.name}/single_vs_multi.png)", "",
    ]


def _sampler_section(results: dict[str, RunResult], report_dir: Path) -> list[str]:
    rows = []
    for sampler in ("uniform", "class_weighted"):
        s = results[f"imbalanced_{sampler}"].summary
        rows.append([sampler, f"{s['train_count_range'][1]}…{s['train_count_range'][0]}", pct(s["test_fine_acc"]),
                     pct(s["fine_macro_acc"]), pct(s["fine_minority_recall"]), pct(s["test_super_acc"]),
                     pct(s["test_group_acc"])])
    _recall_vs_count(results, report_dir / "sampler_recall.png")
    return [
        "## 3. The class-weighted sampler on a long-tailed split", "",
        f"Split {SAMPLER_SPLIT}; the training part then keeps class k's share {IMBALANCE}^(−k/99) of its "
        f"images (`--imbalance {IMBALANCE}`: an exponential long tail, fine labels in CIFAR's alphabetical "
        "order deciding which are rare); the test part stays balanced. `--sampler class_weighted` draws each "
        "epoch's indices with replacement, with probability ∝ 1 / (the class's count), seeded by "
        "(seed, epoch). *macro acc* is the mean per-class recall; *minority recall* the mean recall of the "
        "20% of classes with the fewest training images.", "",
        markdown_table(["sampler", "train images per class", "fine acc", "fine macro acc", "minority recall",
                        "super acc", "group acc"], rows), "",
        f"![recall against training count]({report_dir.name}/sampler_recall.png)", "",
    ]


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    """Markdown body of reports/cifar100_multitask.md; figures go to report_dir."""
    report_dir.mkdir(parents=True, exist_ok=True)
    return "\n".join([*_seed_section(results, report_dir), *_single_head_section(results, report_dir),
                      *_sampler_section(results, report_dir)])


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: fine accuracy of the plain-CE 90:10 run beside the original report's."""
    plain = results.get(split_run("90:10", "none"))
    return Headline("One CNN with fine / superclass / group heads on CIFAR-100, and a severity-weighted loss",
                    "test fine accuracy, 90:10, plain CE", pct(ORIGINAL["fine"]),
                    pct(plain.summary["test_fine_acc"]) if plain else "not run")
