"""The original report's table (split x GD type: train acc, test acc, loss trend), the init-scheme
comparison (random / Xavier / He with ReLU), the learning-rate schedules, the CNN's max- vs
average-pool runs, and the foundation experiments (activations, XOR, approximation, gradient flow),
each with its plots. The sections beyond the first two live in report_sections.py."""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, pct
from mnist_scratch.engine.training import SCHEDULE_NAMES
from mnist_scratch import report_sections
from mnist_scratch.model import POOLS

SPLITS = ("70:30", "80:20", "90:10")
GD_TYPES = ("batch", "sgd", "minibatch")
INIT_SCHEMES = ("random", "xavier", "he")
DEFAULT_RUN = "minibatch_90-10"  # the train.py defaults; also the He row of the init comparison
DEFAULT_SCHEDULE = "cosine"       # the default run's schedule
CNN_EPOCHS = "5"                  # ~60 s per epoch on the 63,000 real training images (2-core CPU)
FOUNDATION_SCRIPTS = ("activations", "xor", "approximation", "gradient_flow")  # <name>.py, default flags
ORIGINAL_TEST_ACC = 0.947         # the original report's MLP (mini-batch) test accuracy (README)


def _name(gd: str, split: str) -> str:
    return f"{gd}_{split.replace(':', '-')}"


def schedule_run(schedule: str) -> str:
    return DEFAULT_RUN if schedule == DEFAULT_SCHEDULE else f"schedule_{schedule}"


def cnn_run(pool: str) -> str:
    return f"cnn_{pool}pool"


def runs(quick: bool) -> list[RunSpec]:
    """Nine split x GD runs, two more inits (He is the default run), one run per other lr schedule
    (cosine is the default run), the CNN with each pool, and the four foundation scripts. `quick`
    changes the data (reproduce.py passes the embedded set), not the schedule: the same epochs either way."""
    specs = [RunSpec(_name(gd, split), ("--gd", gd, "--split", split)) for split in SPLITS for gd in GD_TYPES]
    specs += [RunSpec(f"init_{init}", ("--init", init)) for init in INIT_SCHEMES if init != "he"]
    specs += [RunSpec(schedule_run(s), ("--lr-schedule", s)) for s in SCHEDULE_NAMES if s != DEFAULT_SCHEDULE]
    specs += [RunSpec(cnn_run(pool), ("--model", "cnn", "--epochs", CNN_EPOCHS, "--pool", pool)) for pool in POOLS]
    specs += [RunSpec(name, (), script=f"{name}.py") for name in FOUNDATION_SCRIPTS]
    return specs


def _init_run(results: dict[str, RunResult], init: str) -> RunResult:
    return results[DEFAULT_RUN if init == "he" else f"init_{init}"]


def _architecture(summary: dict) -> str:
    c = summary["model_config"]
    return "→".join(map(str, [c["inputs"], *c["hidden"], c["classes"]])) + f" {c['activation']}"


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    """Markdown body of reports/mnist_scratch.md; figures go to report_dir."""
    rows = []
    for split in SPLITS:
        for gd in GD_TYPES:
            s = results[_name(gd, split)].summary
            rows.append([split, gd, s["batch_size"], s["lr"], pct(s["train_acc"]), pct(s["test_acc"]),
                         s["loss_trend"]])
    split_table = markdown_table(["split", "GD type", "batch", "lr", "train acc", "test acc",
                                  "train loss trend (first→last, shape)"], rows)
    plot_overlays({f"split {split}": {gd: results[_name(gd, split)].curve("test_acc") for gd in GD_TYPES}
                   for split in SPLITS}, report_dir / "gd_test_accuracy.png", ylabel="test accuracy",
                  title="test accuracy per epoch by gradient-descent type", sharey=True)
    plot_overlays({f"split {split}": {gd: results[_name(gd, split)].curve("train_loss") for gd in GD_TYPES}
                   for split in SPLITS}, report_dir / "gd_train_loss.png", ylabel="train loss",
                  title="train loss (with L2) per epoch by gradient-descent type", sharey=True)

    init_rows = []
    for init in INIT_SCHEMES:
        s = _init_run(results, init).summary
        init_rows.append([init, "relu", pct(s["train_acc"]), pct(s["test_acc"]), s["loss_trend"]])
    init_table = markdown_table(["init", "activation", "train acc", "test acc", "train loss trend"], init_rows)
    plot_overlays({"train loss": {i: _init_run(results, i).curve("train_loss") for i in INIT_SCHEMES},
                   "test accuracy": {i: _init_run(results, i).curve("test_acc") for i in INIT_SCHEMES}},
                  report_dir / "init_comparison.png", ylabel="value",
                  title="initialisation schemes (mini-batch GD, 90:10, ReLU)")

    default = results[DEFAULT_RUN]
    curves = copy_figure(default, "curves.png", report_dir, "default_curves.png")
    matrix = copy_figure(default, "confusion.png", report_dir, "default_confusion.png")
    matrix_norm = copy_figure(default, "confusion_normalised.png", report_dir, "default_confusion_normalised.png")
    d, a = default.summary, default.config["args"]
    return "\n".join([
        "## Split × gradient-descent type", "",
        f"{_architecture(d)} MLP, He init, {a['optimizer']} (momentum {a['momentum']}), L2 {a['l2']}, "
        f"{a['lr_schedule']} lr schedule, {d['epochs']} epochs, seed {a['seed']}; each GD type uses its own "
        "batch size and learning rate.", "",
        split_table, "",
        f"![test accuracy by GD type]({report_dir.name}/gd_test_accuracy.png)", "",
        f"![train loss by GD type]({report_dir.name}/gd_train_loss.png)", "",
        "## Initialisation schemes (ReLU, mini-batch GD, 90:10)", "",
        init_table, "",
        f"![init comparison]({report_dir.name}/init_comparison.png)", "",
        f"## The default run ({DEFAULT_RUN}): test accuracy {pct(d['test_acc'])}, "
        f"macro F1 {d['test_macro_f1']:.4f}", "",
        f"![curves]({curves})", "", f"![confusion]({matrix})", "", f"![confusion normalised]({matrix_norm})", "",
        *report_sections.schedules(results, report_dir, {s: schedule_run(s) for s in SCHEDULE_NAMES}),
        *report_sections.cnn_pools(results, report_dir, {pool: cnn_run(pool) for pool in POOLS}),
        *report_sections.foundations(results, report_dir),
    ])


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: the default MLP's test accuracy beside the original report's."""
    default = results.get(DEFAULT_RUN)
    return Headline("A NumPy MLP and CNN for MNIST from scratch: GD types, splits, inits, schedules",
                    "test accuracy, MLP mini-batch (90:10, defaults)", pct(ORIGINAL_TEST_ACC),
                    pct(default.summary["test_acc"]) if default else "not run")
