"""The report for questions 1-8: the class samples, the network and its optimizers, the sweep with
wandb's panels (parallel coordinates, importance, correlation, runs table), the best runs and what
helped, the best model's test accuracy and confusion matrices, and cross-entropy vs squared error."""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, pct
from mnist_scratch.engine.optim import OPTIMIZERS
from fashion_mnist_ffn.sweep_analysis import runs_table
from fashion_mnist_ffn.sweep_runner import format_value, load_trials

LOSS_RUNS = {"cross_entropy": "best", "squared_error": "squared_error"}  # loss -> run name
TOP_RUNS = 5
FOLLOWUP = "fashion_mnist_ffn/sweeps/followup.yaml"


def runs(quick: bool) -> list[RunSpec]:
    """The original report's sweep (fewer trials on the embedded data), the follow-up grid around its best
    region (whose winner is train.py's default), that default, and the same with squared error."""
    trials = "24" if quick else "60"
    followup = ("--config", FOLLOWUP, "--count", "9") + (("--epochs", "10") if quick else ())
    return [RunSpec("sweep", ("--count", trials, "--method", "random"), script="sweep.py"),
            RunSpec("followup", followup, script="sweep.py"),
            RunSpec("best", ()),
            RunSpec("squared_error", ("--loss", "squared_error"))]


def _figure(result: RunResult, name: str, report_dir: Path, prefix: str) -> str:
    return copy_figure(result, name, report_dir, f"{prefix}_{name}")


def _sweep_section(sweep: RunResult, report_dir: Path) -> list[str]:
    s, a = sweep.summary, sweep.config["args"]
    trials = load_trials(sweep.path)
    config = s["params"]
    figures = [_figure(sweep, name, report_dir, "sweep") for name in
               ("parallel_coordinates.png", "importance.png", "metric_by_param.png")]
    ranked = sorted((t for t in trials if t.ok), key=lambda t: -t.value)[:TOP_RUNS]
    best_rows = [[i + 1, t.name, ", ".join(f"{k} {format_value(v)}" for k, v in t.params.items()),
                  pct(t.value), pct(t.get("test_acc"))] for i, t in enumerate(ranked)]
    return [
        "## 4. The sweep", "",
        f"`python fashion_mnist_ffn/sweep.py --count {a['count']} --method {a['method']}` with "
        f"`{Path(a['config']).name}` (wandb's sweep format; the same file runs on wandb with `--wandb online`): "
        f"{s['trials']} trials, {len(s['diverged'])} diverged, each trained on the same "
        f"{100 - 10}% of train and ranked by accuracy on the held-out 10% ({s['metric']}). Swept: "
        + ", ".join(f"`{p}`" for p in config) + ".", "",
        f"![parallel coordinates]({figures[0]})", "",
        f"![parameter importance and correlation]({figures[1]})", "",
        f"![{s['metric']} by parameter value]({figures[2]})", "",
        "The runs, best first (top 20; all in the sweep folder's `runs_table.md`):", "",
        runs_table(trials, config, s["metric"], top=20), "",
        "## 5-6. The best runs, and what helped", "",
        markdown_table(["rank", "trial", "configuration", "val acc", "test acc"], best_rows), "",
        "Generated from the sweep's results:", "",
        *[f"- {line}" for line in s["findings"]], "",
    ]


def _followup_section(followup: RunResult) -> list[str]:
    s, a = followup.summary, followup.config["args"]
    trials = load_trials(followup.path)
    return [
        "### The follow-up grid", "",
        f"`python fashion_mnist_ffn/sweep.py --config {FOLLOWUP} --count {a['count']}"
        + (f" --epochs {a['epochs']}" if a.get("epochs") else "") + "`: the original sweep's best region "
        "(ReLU, He init, Adam at lr 1e-3) with wider layers, more L2 choices and a longer cosine schedule; "
        f"here its winner is {s['best_trial']} "
        f"({', '.join(f'{k} {format_value(v)}' for k, v in s['best_params'].items())}). "
        "`train.py`'s default configuration is this grid's winner on real Fashion-MNIST "
        "(fashion_mnist_ffn/README.md).", "",
        runs_table(trials, s["params"], s["metric"]), "",
    ]


def _loss_section(results: dict[str, RunResult], report_dir: Path) -> list[str]:
    rows = []
    for loss, name in LOSS_RUNS.items():
        s = results[name].summary
        rows.append([loss, pct(s["train_acc"]), pct(s["val_acc"]), pct(s["best_val_acc"]), pct(s["test_acc"]),
                     s["loss_trend"]])
    plot_overlays({"validation accuracy": {loss: results[n].curve("val_acc") for loss, n in LOSS_RUNS.items()},
                   "train accuracy": {loss: results[n].curve("train_acc") for loss, n in LOSS_RUNS.items()}},
                  report_dir / "loss_comparison.png", ylabel="accuracy", sharey=True,
                  title="cross-entropy vs squared error (same network, optimizer, lr and seed)")
    best = results["best"].summary
    return [
        "## 8. Cross-entropy vs squared error", "",
        f"The configuration of question 7 ({best['model']}, {best['optimizer']} lr {best['lr']:g}, batch "
        f"{best['batch_size']}, L2 {best['l2']:g}) trained with each loss on the softmax output:", "",
        markdown_table(["loss", "train acc", "val acc", "best val acc", "test acc", "train loss trend"], rows), "",
        f"![cross-entropy vs squared error]({report_dir.name}/loss_comparison.png)", "",
        "Squared error on a softmax has a gradient scaled by the softmax's own slope, which vanishes for "
        "confidently wrong outputs; cross-entropy's gradient (p − y) does not. Validation accuracy after "
        "epoch 1: " + ", ".join(f"{loss} {pct(results[n].records[0]['val_acc'])}" for loss, n in LOSS_RUNS.items())
        + "; after the last: "
        + ", ".join(f"{loss} {pct(results[n].summary['val_acc'])}" for loss, n in LOSS_RUNS.items())
        + f". With {results['best'].summary['n_val']:,} validation and {results['best'].summary['n_test']:,} "
        "test images, a difference of one point is about one standard error of either figure.", "",
    ]


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    """Markdown body of reports/fashion_mnist_ffn.md; figures go to report_dir."""
    best, sweep = results["best"], results["sweep"]
    b, args = best.summary, best.config["args"]
    samples = _figure(best, "samples.png", report_dir, "q1")
    confusion = _figure(best, "confusion.png", report_dir, "best")
    confusion_norm = _figure(best, "confusion_normalised.png", report_dir, "best")
    curves = _figure(best, "curves.png", report_dir, "best")
    s = sweep.summary
    sweep_best = RunResult(s["best_trial"], Path(s["best_run"]), {}, {}, [])
    sweep_confusion = copy_figure(sweep_best, "confusion_normalised.png", report_dir,
                                  "sweep_best_confusion_normalised.png")
    flags = " ".join(f"--{k.replace('_', '-')} "
                     f"{format_value(v).replace('-', ' ') if k == 'hidden' else format_value(v)}"
                     for k, v in s["best_params"].items())
    return "\n".join([
        "## 1. One image per class", "", f"![samples]({samples})", "",
        "## 2-3. The network and its optimizers", "",
        f"`train.py` builds 784 → hidden layers → 10 with a softmax output from `--num-layers` × "
        f"`--hidden-size` (or explicit `--hidden 512 256 ...`), `--activation`, `--init`, and trains it with "
        f"backpropagation on the NumPy engine at any `--batch-size`, with `--optimizer` one of "
        f"{', '.join(f'`{o}`' for o in OPTIMIZERS)} (each a small class in `mnist_scratch/engine/optim.py`, "
        f"registered in `OPTIMIZERS`; the tests check every update against torch.optim over several steps).", "",
        *_sweep_section(sweep, report_dir),
        *_followup_section(results["followup"]),
        "## 7. The best model on the test set", "",
        markdown_table(["model", "chosen by", "val acc", "test acc", "test macro F1"], [
            [f"sweep's best trial ({s['best_trial']}: `{flags}`)", "val acc among the sweep's trials",
             pct(s["best_val_acc"]), pct(s["best_test_acc"]), "—"],
            [f"tuned default: {b['model']}, {b['optimizer']} lr {b['lr']:g}, batch {b['batch_size']}, "
             f"L2 {b['l2']:g}, {args['lr_schedule']} schedule, {b['epochs']} epochs",
             "val acc in the follow-up grid on real data", pct(b["val_acc"]), pct(b["test_acc"]),
             f"{b['test_macro_f1']:.4f}"]]), "",
        f"Command: `python fashion_mnist_ffn/train.py` (defaults); seed {args['seed']}.", "",
        f"![confusion counts]({confusion})", "", f"![confusion normalised]({confusion_norm})", "",
        f"![curves]({curves})", "",
        f"The sweep's best trial, row-normalised: ![sweep best confusion]({sweep_confusion})", "",
        *_loss_section(results, report_dir),
    ])


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: the tuned default's test accuracy (question 7); the original report gives no figure."""
    best = results.get("best")
    return Headline("A NumPy feed-forward net for Fashion-MNIST: six optimizers, sweeps, CE vs squared error",
                    "test accuracy, the tuned default MLP (question 7)", "—",
                    pct(best.summary["test_acc"]) if best else "not run")
