"""Exercise 1 and the project's section 4 for the kd_cifar10 report: MLP vs CNN on MNIST and CIFAR-10,
deep plain vs deep residual (gradient norms by layer), ResNet-18 vs the same network without skips,
augmentation none / crop+flip / crop+flip+cutout, and transfer learning (frozen backbone vs full
fine-tune). kd_cifar10/report.py joins `runs` and `build` with the distillation part's.

Quick mode (generated data, tiny widths, few epochs) fine-tunes from a randomly initialised ResNet-18
the report writes itself, labelled as such; the full mode uses torchvision's ImageNet weights when they
are cached or downloadable, and says so when they were not.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common import REPO_ROOT
from common.checkpoint import save_checkpoint
from common.plots import plot_overlays
from common.reporting import RunResult, RunSpec, copy_figure, markdown_table, pct
from kd_cifar10.gradients import plot_gradient_norms
from kd_cifar10.transfer import imagenet_available

RANDOM_WEIGHTS = REPO_ROOT / "runs" / "kd_cifar10_assets" / "resnet18_random_init.pth"
AUGMENTS = {"none": "design_aug_none", "crop_flip": "design_resnet18_skip", "crop_flip_cutout": "design_aug_cutout"}
FAMILIES = ["design_mlp_mnist", "design_cnn_mnist", "design_mlp_cifar", "design_resnet18_skip"]
DEPTH_RUNS = {"shallow plain (3 layers)": "design_mlp_mnist", "deep plain": "design_deep_plain",
              "deep residual": "design_deep_residual"}
SKIP_RUNS = {"ResNet-18": "design_resnet18_skip", "ResNet-18 without skips": "design_resnet18_noskip"}
TRANSFER_RUNS = {"frozen backbone": "design_transfer_frozen", "full fine-tune": "design_transfer_full"}


def random_resnet18_weights() -> Path:
    """A torchvision resnet18 state_dict with random weights (seed 0): the quick report's stand-in
    for ImageNet weights, so the transfer code path runs offline. Not pre-trained."""
    if not RANDOM_WEIGHTS.exists():
        import torchvision   # here, not at the top: about a second to import, for this one file

        torch.manual_seed(0)
        save_checkpoint(RANDOM_WEIGHTS, torchvision.models.resnet18(weights=None).state_dict())
    return RANDOM_WEIGHTS



def runs(quick: bool) -> list[RunSpec]:
    """The configurations. Full: the CPU recipe of the README's design table (widths 8-256, 3-10 epochs, the
    4,000-image CIFAR-10 subset in about 15 minutes of one core); the GPU-sized runs (width 64, 30 epochs) are
    the README's "Limits, and a GPU" commands. Quick: the generated stand-in, about two minutes."""
    if quick:
        mlp = ("--width", "128", "--epochs", "5")
        mlp_mnist, cnn_small = mlp, ("--layers", "1", "1", "1", "1", "--width", "8", "--epochs", "3")
        resnet = ("--width", "8", "--epochs", "4", "--train-size", "1000")
        deep = ("--depth", "30", "--width", "128", "--epochs", "5")
        transfer = ("--input-size", "32", "--epochs", "2", "--train-size", "500")
    else:
        mlp_mnist, mlp = ("--width", "256", "--epochs", "3"), ("--width", "256", "--epochs", "10")
        cnn_small = ("--layers", "1", "1", "1", "1", "--width", "8", "--epochs", "3")
        resnet = ("--width", "8", "--epochs", "8")
        deep = ("--depth", "30", "--width", "128", "--epochs", "3")
        transfer = ("--epochs", "3", "--input-size", "32")
    # ImageNet weights get the course's 224-px fine-tune; without them (offline, or --quick) a randomly
    # initialised ResNet-18 stands in, which only checks the code path, at 32 px
    imagenet = not quick and imagenet_available()
    weights = "imagenet" if imagenet else str(random_resnet18_weights())
    transfer = ("--epochs", "5", "--input-size", "224") if imagenet else transfer
    mnist_mlp = ("--dataset", "mnist", "--model", "mlp", "--augment", "none")
    return [
        RunSpec("design_mlp_mnist", (*mnist_mlp, "--no-skip", "--depth", "3", *mlp_mnist)),
        RunSpec("design_cnn_mnist", ("--dataset", "mnist", "--augment", "none", *cnn_small)),
        RunSpec("design_mlp_cifar", ("--model", "mlp", "--no-skip", "--depth", "3", "--augment", "none", *mlp)),
        RunSpec("design_deep_plain", (*mnist_mlp, "--no-skip", *deep)),
        RunSpec("design_deep_residual", (*mnist_mlp, "--use-skip", *deep)),
        RunSpec("design_resnet18_skip", ("--augment", "crop_flip", *resnet)),
        RunSpec("design_resnet18_noskip", ("--augment", "crop_flip", "--no-skip", *resnet)),
        RunSpec("design_aug_none", ("--augment", "none", *resnet)),
        RunSpec("design_aug_cutout", ("--augment", "crop_flip_cutout", *resnet)),
        *[RunSpec(name, ("--pretrained", weights, "--finetune", mode, "--lr", "0.01", *transfer))
          for mode, name in (("frozen", "design_transfer_frozen"), ("full", "design_transfer_full"))],
    ]


def _source(result: RunResult) -> str:
    return result.config["data_source"].split(" from ")[0]


def _row(label: str, result: RunResult) -> list:
    s = result.summary
    return [label, s["dataset"], f"{s['parameters']:,}", pct(s["train_acc"]), pct(s["test_acc"]),
            f"{s['test_loss']:.3f}", s["epochs"], f"{s['train_seconds']:.0f}", _source(result)]


HEADERS = ["run", "data set", "parameters", "train acc", "test acc", "test loss", "epochs", "train s", "data"]


def _command(result: RunResult) -> str:
    args = result.config["args"]
    return f"`{result.config['command'].split(' --data ')[0].replace(str(REPO_ROOT) + '/', '')}` (seed {args['seed']})"


def _grad_figure(results: dict[str, RunResult], runs_by_label: dict[str, str], report_dir: Path, name: str,
                 title: str) -> str:
    curves, names = {}, None
    for label, run in runs_by_label.items():
        records = results[run].records
        names = results[run].summary["grad_layers"]
        curves[f"{label}, epoch 1"] = records[0]["grad_norms"]
        curves[f"{label}, epoch {records[-1]['epoch']}"] = records[-1]["grad_norms"]
    plot_gradient_norms(curves, names, report_dir / name, title=title)
    return f"{report_dir.name}/{name}"


def _overlay(results: dict[str, RunResult], runs_by_label: dict[str, str], report_dir: Path, name: str,
             title: str) -> str:
    plot_overlays({"train loss": {label: results[r].curve("train_loss") for label, r in runs_by_label.items()},
                   "test accuracy": {label: results[r].curve("test_acc") for label, r in runs_by_label.items()}},
                  report_dir / name, ylabel="", title=title)
    return f"{report_dir.name}/{name}"


def _families(results, report_dir) -> list[str]:
    rows = [_row(results[r].summary["model"], results[r]) for r in FAMILIES]
    return ["## Exercise 1: FlexibleMLP and FlexibleCNN on MNIST and CIFAR-10", "",
            markdown_table(HEADERS, rows), "",
            "Commands: " + "; ".join(_command(results[r]) for r in FAMILIES) + ".", ""]


def _depth(results, report_dir) -> list[str]:
    rows = [_row(label, results[r]) for label, r in DEPTH_RUNS.items()]
    deep = {k: v for k, v in DEPTH_RUNS.items() if k != "shallow plain (3 layers)"}
    curves = _overlay(results, DEPTH_RUNS, report_dir, "design_depth_curves.png",
                      "deeper is worse without skips (MLP on MNIST, same width, optimizer, seed)")
    grads = _grad_figure(results, deep, report_dir, "design_depth_grad_norms.png",
                         "per-layer gradient norm: deep plain vs deep residual MLP")
    plain, residual = (results[r].records[0]["grad_norms"] for r in deep.values())
    return ["## Deep plain vs deep residual (the gradient analysis)", "",
            markdown_table(HEADERS, rows), "", f"![curves]({curves})", "", f"![gradient norms]({grads})", "",
            f"In epoch 1 the plain net's first layer gets a mean gradient norm {plain[0]:.3g} against "
            f"{plain[-2]:.3g} at its last hidden layer (ratio {plain[0] / max(plain[-2], 1e-12):.3g}); the residual "
            f"net's ratio is {residual[0] / max(residual[-2], 1e-12):.3g}. With BatchNorm, a deep plain stack's "
            "gradients grow towards the input (each normalised layer multiplies them), while identity "
            "shortcuts give every layer a direct path to the loss; the training-loss curves show what that "
            "does to optimisation. Commands: " + "; ".join(_command(results[r]) for r in DEPTH_RUNS.values()) + ".",
            ""]


def _skips(results, report_dir) -> list[str]:
    rows = [_row(label, results[r]) for label, r in SKIP_RUNS.items()]
    curves = _overlay(results, SKIP_RUNS, report_dir, "design_skip_curves.png", "ResNet-18 with and without skips")
    grads = _grad_figure(results, SKIP_RUNS, report_dir, "design_skip_grad_norms.png",
                         "per-layer gradient norm: ResNet-18 with and without skips")
    return ["## ResNet-18 vs the same network without skips", "", markdown_table(HEADERS, rows), "",
            f"![curves]({curves})", "", f"![gradient norms]({grads})", "",
            "Without skips the 1x1 projection shortcuts go too (they exist only to make the addition fit), "
            "hence the slightly smaller parameter count. Commands: "
            + "; ".join(_command(results[r]) for r in SKIP_RUNS.values()) + ".", ""]


def _augmentation(results, report_dir) -> list[str]:
    rows = [_row(name, results[r]) for name, r in AUGMENTS.items()]
    curves = _overlay(results, AUGMENTS, report_dir, "design_augment_curves.png", "augmentation (same ResNet-18)")
    samples = copy_figure(results["design_aug_cutout"], "augmentations.png", report_dir, "design_augment_samples.png")
    gap = {name: results[r].summary["train_acc"] - results[r].summary["test_acc"] for name, r in AUGMENTS.items()}
    return ["## Data augmentation", "",
            "Random crop (4-pixel zero padding) and horizontal flip, and the stronger crop + flip + cutout "
            "(one 16x16 square, half the image side, set to the mean), run on the device on each batch.", "",
            markdown_table(HEADERS, rows), "", f"![curves]({curves})", "", f"![samples]({samples})", "",
            "Train-minus-test accuracy gap: " + ", ".join(f"{k} {100 * v:+.1f} points" for k, v in gap.items())
            + ". Commands: " + "; ".join(_command(results[r]) for r in AUGMENTS.values()) + ".", ""]


def _transfer(results, report_dir) -> list[str]:
    rows = []
    for label, r in TRANSFER_RUNS.items():
        s = results[r].summary
        rows.append([label, s["init"], f"{s['trainable_parameters']:,} of {s['parameters']:,}",
                     pct(s["train_acc"]), pct(s["test_acc"]), s["epochs"], f"{s['train_seconds']:.0f}",
                     results[r].config["args"]["input_size"], _source(results[r])])
    init = results["design_transfer_full"].summary["init"]
    note = ("ImageNet weights were used." if init.startswith("ImageNet") else
            f"**The 'pre-trained' weights here are a randomly initialised torchvision ResNet-18 ({init}) that the "
            "report wrote itself: ImageNet weights were not in the torch hub cache and could not be downloaded "
            "(or this is the quick report). The rows check the transfer code path, not the benefit of "
            "pre-training.** Online or with the weights cached, `python kd_cifar10/train.py --pretrained imagenet "
            "--finetune frozen` (and `full`) uses torchvision's IMAGENET1K_V1 weights.")
    curves = _overlay(results, TRANSFER_RUNS, report_dir, "design_transfer_curves.png",
                      "transfer: frozen backbone vs full fine-tune")
    return ["## Transfer learning: torchvision ResNet-18, frozen backbone vs full fine-tune", "", note, "",
            markdown_table(["run", "initial weights", "trained parameters", "train acc", "test acc", "epochs",
                            "train s", "input px", "data"], rows), "", f"![curves]({curves})", "",
            "Inputs are upsampled bilinearly to the `input px` size and the ImageNet stem (7x7/2 conv, max-pool) "
            "is kept; a frozen backbone also keeps its BatchNorm statistics. Commands: "
            + "; ".join(_command(results[r]) for r in TRANSFER_RUNS.values()) + ".", ""]


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    """Markdown for the design runs; figures go to report_dir."""
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = [_families, _depth, _skips, _augmentation, _transfer]
    return "\n".join(line for section in sections for line in section(results, report_dir))
