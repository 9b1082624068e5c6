"""The report sections beyond the split x GD and init tables: learning-rate schedules, the CNN's pool
comparison, and the foundation experiments. Each function takes the loaded runs and the report's
figure folder and returns markdown lines; report.build() joins them.

    lines = schedules(results, report_dir, {"constant": "schedule_constant", ..., "cosine": "minibatch_90-10"})
"""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import RunResult, copy_figure, markdown_table, pct
from common.schedules import SCHEDULES
from mnist_scratch.plots import plot_lr_schedules


def _sci(value: float) -> str:
    return f"{value:.1e}"


def _provenance(result: RunResult, command: str) -> str:
    """Data source, seed, epochs and the command behind one run, as one line."""
    a = result.config["args"]
    return (f"Data: {result.config['data_source']}; seed {a['seed']}; {a['epochs']} epochs; "
            f"command: `{command}`.")


def schedules(results: dict[str, RunResult], report_dir: Path, run_of: dict[str, str]) -> list[str]:
    """One train.py run per --lr-schedule (`run_of`: schedule -> run name): a table and the lr, loss and
    accuracy per epoch; the lr panel is drawn from common.schedules.SCHEDULES itself."""
    rows = []
    for schedule, name in run_of.items():
        s, records = results[name].summary, results[name].records
        rows.append([schedule, f"{records[0]['lr']:.3g}→{records[-1]['lr']:.3g}", pct(s["train_acc"]),
                     pct(s["test_acc"]), pct(s["best_test_acc"]), s["loss_trend"]])
    first = results[next(iter(run_of.values()))]
    base, epochs = first.summary["lr"], first.summary["epochs"]
    plot_lr_schedules({"learning rate": {k: [SCHEDULES[k](e, epochs) * base for e in range(epochs)] for k in run_of},
                       "train loss": {k: results[v].curve("train_loss") for k, v in run_of.items()},
                       "test accuracy": {k: results[v].curve("test_acc") for k, v in run_of.items()}},
                      report_dir / "lr_schedules.png",
                      title=f"learning-rate schedules (mini-batch GD, base lr {base}, 90:10, ReLU)")
    return [
        "## Learning-rate schedules (mini-batch GD, 90:10, ReLU, He init)", "",
        _provenance(first, "python mnist_scratch/train.py --lr-schedule {" + ",".join(run_of) + "}") + " "
        f"Every schedule scales the base lr {base} once per epoch "
        "(common/schedules.py: step divides by 10 at 1/3 and 2/3 of training, exponential "
        "multiplies by 0.9 per epoch, polynomial is (1 − t/T)², cosine is the default).", "",
        markdown_table(["schedule", "lr (epoch 1→last)", "train acc", "test acc", "best test acc",
                        "train loss trend"], rows), "",
        f"![lr schedules]({report_dir.name}/lr_schedules.png)", "",
    ]


def cnn_pools(results: dict[str, RunResult], report_dir: Path, run_of: dict[str, str]) -> list[str]:
    """The CNN with each pool (`run_of`: pool -> run name; the first one's filters and receptive fields
    are shown)."""
    rows = []
    for pool, name in run_of.items():
        s = results[name].summary
        rows.append([pool, f"{s['parameters']:,}", pct(s["train_acc"]), pct(s["test_acc"]), pct(s["best_test_acc"]),
                     f"{s['test_macro_f1']:.4f}", f"{s['train_seconds']:.0f} s", s["loss_trend"]])
    plot_overlays({"test accuracy": {p: results[n].curve("test_acc") for p, n in run_of.items()},
                   "train loss": {p: results[n].curve("train_loss") for p, n in run_of.items()}},
                  report_dir / "cnn_pool_comparison.png", ylabel="value", title="NumPy CNN: max vs average pooling")
    featured_pool, featured_name = next(iter(run_of.items()))
    featured = results[featured_name]
    s = featured.summary
    fields = markdown_table(["layer", "receptive field (input pixels)", "jump (stride in input pixels)"],
                            [[r["layer"], f"{r['field']}×{r['field']}", r["jump"]] for r in s["receptive_fields"]])
    filters = [copy_figure(featured, f, report_dir, f"cnn_{featured_pool}pool_{f}") for f in s["filter_figures"]]
    curves = copy_figure(featured, "curves.png", report_dir, f"cnn_{featured_pool}pool_curves.png")
    a = featured.config["args"]
    return [
        "## The NumPy CNN: max pooling vs average pooling", "",
        f"{s['model']}; mini-batch {a['batch_size']}, {a['optimizer']} lr {a['lr']}, {a['lr_schedule']} schedule, "
        f"L2 {a['l2']}, {a['init']} init, 90:10. "
        + _provenance(featured, f"python mnist_scratch/train.py --model cnn --epochs {a['epochs']} "
                                "--pool {" + ",".join(run_of) + "}"), "",
        markdown_table(["pool", "parameters", "train acc", "test acc", "best test acc", "macro F1", "train time",
                        "train loss trend"], rows), "",
        f"![cnn pool comparison]({report_dir.name}/cnn_pool_comparison.png)", "",
        f"Receptive field per layer ({featured_pool} pool; r_out = r_in + (k − 1)·j_in, j_out = j_in·stride):", "",
        fields, "",
        f"Learned filters and curves of the {featured_pool}-pool run:", "",
        *[f"![{Path(f).stem}]({f})" for f in filters], "", f"![cnn curves]({curves})", "",
    ]


def foundations(results: dict[str, RunResult], report_dir: Path) -> list[str]:
    """The four small scripts: activations.py, xor.py, approximation.py, gradient_flow.py."""
    return ["## Foundations", "", *_activations(results["activations"], report_dir),
            *_xor(results["xor"], report_dir), *_approximation(results["approximation"], report_dir),
            *_gradient_flow(results["gradient_flow"], report_dir)]


def _activations(result: RunResult, report_dir: Path) -> list[str]:
    s = result.summary
    rows = [[name, f"{r['max_derivative']:.3g}", f"{r['derivative_at_plus_range']:.2g}",
             _sci(r["max_derivative_error"]), _sci(r["max_backward_error"])] for name, r in s["activations"].items()]
    figure = copy_figure(result, "activations.png", report_dir, "activations.png")
    return [
        "### Activations and their derivatives", "",
        f"Every entry of `ACTIVATIONS` on [−{s['range']:g}, {s['range']:g}] ({s['points']} points); the analytic "
        f"derivative and `backward(1)` against centred differences (h = {s['step']:g}, float64, the kink at 0 "
        f"excluded). `python mnist_scratch/activations.py`; no data, nothing trained.", "",
        markdown_table(["activation", "max f'", f"f'({s['range']:g})", "max error of f' vs centred diff.",
                        "max error of backward(1)"], rows), "",
        f"![activations]({figure})", "",
    ]


def _xor(result: RunResult, report_dir: Path) -> list[str]:
    s, a = result.summary, result.config["args"]
    figure = copy_figure(result, "xor.png", report_dir, "xor.png")
    probs = ", ".join(f"{point} {p:.3f}" for point, p in s["p_class1"].items())
    solved = f"solved from epoch {s['epochs_to_solve']}" if s["solved"] else "**not solved**"
    return [
        "### XOR with one hidden layer", "",
        f"2→{a['hidden']}→2 {a['activation']} network, {a['init']} init, full-batch {a['optimizer']} lr {a['lr']}, "
        f"{s['parameters']} parameters. " + _provenance(result, "python mnist_scratch/xor.py"), "",
        f"Accuracy on the 4 points: **{pct(s['points_acc'])}** ({solved}); final loss {s['final_loss']:.4f}; "
        f"P(class 1): {probs}.", "",
        f"![xor decision boundary]({figure})", "",
    ]


def _approximation(result: RunResult, report_dir: Path) -> list[str]:
    s, a = result.summary, result.config["args"]
    rows = [[r["width"], r["parameters"], _sci(r["train_mse"]), _sci(r["grid_mse"])] for r in s["rows"]]
    fits = copy_figure(result, "fits.png", report_dir, "approximation_fits.png")
    error = copy_figure(result, "error_vs_width.png", report_dir, "approximation_error_vs_width.png")
    return [
        f"### Universal approximation of {s['target']} by one hidden layer", "",
        f"1→H→1 {a['activation']} networks, {a['init']} init, MSE loss, full-batch {a['optimizer']} lr {a['lr']} "
        f"({a['lr_schedule']}); the grid MSE is measured on {s['grid_points']} evenly spaced points between the "
        f"training samples. " + _provenance(result, "python mnist_scratch/approximation.py"), "",
        markdown_table(["hidden units", "parameters", "train MSE", "grid MSE"], rows), "",
        f"![fits]({fits})", "", f"![error vs width]({error})", "",
    ]


def _gradient_flow(result: RunResult, report_dir: Path) -> list[str]:
    s, a = result.summary, result.config["args"]
    rows = [[name, r["init"], _sci(r["grad_norms_init"][0]), _sci(r["grad_norms_init"][-1]),
             _sci(r["ratio_first_last_init"]), _sci(r["ratio_first_last_trained"]),
             f"{r['first_train_loss']:.3f}→{r['last_train_loss']:.3f}", pct(r["test_acc"])]
            for name, r in s["activations"].items()]
    figure = copy_figure(result, "gradient_flow.png", report_dir, "gradient_flow.png")
    sizes = s["sizes"]
    return [
        "### Gradient flow: per-layer gradient norms vs depth", "",
        f"{sizes[0]}→{a['width']}×{a['depth']}→{sizes[-1]} MLP per activation; ||dL/dW|| of each Dense layer "
        f"averaged over the same {s['probe_batches']} mini-batches of {s['batch_size']} at init and after training "
        f"({a['optimizer']} lr {a['lr']}, the same data order for each). "
        + _provenance(result, "python mnist_scratch/gradient_flow.py"), "",
        markdown_table(["activation", "init", "‖dW₁‖ at init", "‖dW_out‖ at init", "first/last at init",
                        "first/last trained", "train loss (first→last window)", "test acc"], rows), "",
        f"![gradient flow]({figure})", "",
    ]
