"""Train one 6n+2 ResNet with one normalisation on Indian birds, Caltech-101 birds or CIFAR-10.

    python resnet_norms/train.py --dataset caltech101 --data-root ../shared/data --norm gn --groups 4
    python resnet_norms/train.py --dataset cifar10 --data-root ../shared/data --split 90:10:0 --epochs 40
    python resnet_norms/train.py --dataset birds --data-root ~/data --image-size 256 --preset seed
    python resnet_norms/train.py --norm bin --shortcut B --n 9                       # ResNet-56, option B
    torchrun --nproc_per_node=2 resnet_norms/train.py --smoke                         # DDP

Writes, besides what every run writes: accuracy / micro F1 / macro F1 on train, val and test
(summary.json), curves.png, confusion.png (test), gradcam_correct.png / gradcam_incorrect.png and the
share of Grad-CAM mass on the central region for correct vs incorrect test predictions.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.nn import functional as F

from common import distributed
from common.classify import evaluate_classifier, predict_logits
from common.cli import decay_rate, layer_count, make_parser, non_negative_float, parse_args, positive_int
from common.errors import UserError, run_cli
from common.images import AUGMENTATIONS
from common.metrics import confusion
from common.models import count_parameters
from common.plots import plot_confusion, plot_curves, plot_image_grid
from common.runtime import seed_everything
from common.progress import progress
from common.schedules import lr_lambda
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from resnet_norms.data import DATASETS, SEED_CLASSES, SPLITS, SplitTensors, load_data, parse_split
from resnet_norms.gradcam import central_fraction, grad_cam, overlay
from resnet_norms.model import SHORTCUTS, ResNetConfig, build_resnet
from resnet_norms.norms import NORMS, clip_gates, gates, parameter_groups

ASSIGNMENT = "resnet_norms"
# --preset: defaults a preset changes (flags given explicitly still win)
PRESETS = {
    "default": {},   # SGD + Nesterov momentum 0.9, lr 0.05, batch 64, weight decay 5e-4, warm-up, cosine, crop+flip
    "seed": {"lr": 1e-4, "epochs": 50, "momentum": 0.0, "weight_decay": 0.0, "warmup_epochs": 0.0,
             "schedule": "constant"},   # the course seed's setting: plain SGD, lr 1e-4, 50 epochs
}
GRADCAM_PER_CLASS = 2


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=30, batch_size=64, lr=0.05,
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    distributed.add_sync_bn_flag(parser)
    add = parser.add_argument
    add("--preset", choices=list(PRESETS), default="default",
        help="default: a recipe that trains well; seed: the course seed's plain SGD, lr 1e-4, 50 epochs, no "
             "momentum, weight decay or warm-up (explicit flags still win) (default: %(default)s)")
    add("--dataset", choices=DATASETS, default="birds", help="image set (default: %(default)s)")
    add("--classes", nargs="+", default=None, help="folder sets: only these class folders (default: all)")
    add("--image-size", type=positive_int, default=None,
        help="folder sets: images fitted to this many pixels a side, a multiple of 4 (the seed: 256; default: 64, "
             "CIFAR-10 32)")
    add("--split", default="70:15:15",
        help="train:val:test ratios for the splits the data lacks, carved from the training pool, stratified "
             "(CIFAR-10 has its test set: only train:val matter) (default: %(default)s)")
    add("--cache-dir", type=Path, default=None, help="decoded-image cache (default: <repo>/data/cache/resnet_norms)")
    add("--n", type=layer_count, default=3, help="blocks per stage: depth 6n+2 (3: ResNet-20) (default: %(default)s)")
    add("--norm", choices=list(NORMS), default="bn", help="normalisation (default: %(default)s)")
    add("--groups", type=positive_int, default=8, help="GroupNorm's groups, dividing 16 (default: %(default)s)")
    add("--shortcut", choices=SHORTCUTS, default="A",
        help="A: subsample + zero-padded channels (no parameters); B: strided 1x1 conv + norm (default: %(default)s)")
    add("--momentum", type=decay_rate, default=0.9,
        help="SGD momentum, Nesterov when > 0 (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=5e-4,
        help="weight decay (never on BIN's gates) (default: %(default)s)")
    add("--warmup-epochs", type=non_negative_float, default=2.0,
        help="linear learning-rate warm-up, in epochs (default: %(default)s)")
    add("--schedule", choices=["cosine", "constant"], default="cosine",
        help="after warm-up, per step (common.schedules) (default: %(default)s)")
    add("--augment", choices=list(AUGMENTATIONS), default="crop_flip",
        help="training-batch augmentation, on the device (default: %(default)s)")
    return parser


def parse(argv=None):
    parser = build_parser()
    preset, _ = parser.parse_known_args(argv)
    parser.set_defaults(**PRESETS[preset.preset])
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.image_size is None:
        args.image_size = 32 if args.dataset == "cifar10" else 64
    if args.dataset == "cifar10" and args.image_size != 32:
        raise UserError(f"--image-size {args.image_size}: CIFAR-10's images are 32x32; drop the flag")
    if args.smoke:
        args.epochs, args.batch_size, args.n = min(args.epochs, 2), min(args.batch_size, 32), 1
        args.image_size = min(args.image_size, 16)
    args.split_fractions = list(parse_split(args.split))   # a list: config.json round-trips it for --resume
    return args


def run_name(args) -> str:
    groups = f"g{args.groups}" if args.norm == "gn" else ""
    return (f"{args.dataset}_resnet{6 * args.n + 2}{args.shortcut}_{args.norm}{groups}_{args.preset}_"
            f"lr{args.lr:g}_e{args.epochs}_seed{args.seed}")


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    device = torch.device(info.device)
    seed_everything(args.seed)
    config = ResNetConfig(n=args.n, norm=args.norm, shortcut=args.shortcut, groups=args.groups,
                          image_size=args.image_size)  # checks the flags before the data are read
    data = load_data(args.dataset, args.data, args.data_root, image_size=args.image_size, split=args.split_fractions,
                     seed=args.seed, classes=args.classes, smoke=args.smoke, cache_dir=args.cache_dir)
    config = ResNetConfig(**{**config.to_dict(), "widths": config.widths, "num_classes": len(data.classes),
                             "in_channels": data.data.shape[0], "image_size": data.data.shape[1]})
    model = build_resnet(config).to(device)
    net = distributed.wrap_model(model, info.device, sync_batchnorm=args.sync_bn)
    data = data.to(device)
    x_train, y_train = data.split("train")
    optimizer = torch.optim.SGD(parameter_groups(model, args.weight_decay), lr=args.lr, momentum=args.momentum,
                                nesterov=args.momentum > 0)
    optimizer.register_step_post_hook(lambda *_: clip_gates(model))   # BIN's rho stays in [0, 1]
    batch = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(y_train), batch)
    total, warm = steps * args.epochs, int(round(args.warmup_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.schedule, total, warm))
    augment, generator = AUGMENTATIONS[args.augment], torch.Generator(device=device)
    run = distributed.run_dir(args, data_source=data.source, device=str(device))
    sizes = data.sizes()
    print(f"{ASSIGNMENT}: {config.describe()}, {count_parameters(model):,} parameters, {args.preset} preset "
          f"(SGD lr {args.lr:g} momentum {args.momentum:g} {args.schedule}), {sizes['train']:,}/{sizes['val']:,}/"
          f"{sizes['test']:,} train/val/test, {args.image_size}px, data: {data.source}")

    start, elapsed = resume(run, net, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        generator.manual_seed(distributed.rank_seed(args.seed * 1_000_003 + epoch))  # the same after --resume
        batches = tensor_batches((x_train, y_train), batch, seed=args.seed, epoch=epoch)
        for x, y in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
            with autocast(device):
                logits = net(augment(x, generator))                                   # (B, classes)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            meter.add(loss, len(y), acc=(logits.argmax(1) == y).sum())
        train = guard.check(meter, net, epoch)
        elapsed += time.perf_counter() - tic

        net.eval()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train)}
        with torch.no_grad():   # validation and test loss / accuracy, each rank scoring its share
            for split in ("val", "test"):
                result = evaluate_classifier(model, *data.split(split), len(data.classes), device)
                record.update({f"{split}_loss": result["test_loss"], f"{split}_acc": result["test_acc"]})
            if gates(model):
                record["rho_mean"] = torch.cat([g.flatten() for g in gates(model)]).mean().item()
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    records = finished_records(run)
    if not info.is_main:
        return {}
    return write_artefacts(run, model, data, args, records, device)


def split_metrics(model: nn.Module, data: SplitTensors, device) -> tuple[dict, dict[str, np.ndarray]]:
    """Accuracy, micro F1 and macro F1 (scikit-learn) on every split, and each split's predictions."""
    metrics, predictions = {}, {}
    for split in SPLITS:
        x, y = data.split(split)
        pred = predict_logits(model, x, device).argmax(1).cpu().numpy()
        true = y.cpu().numpy()
        predictions[split] = pred
        metrics[f"{split}_acc"] = float(accuracy_score(true, pred))
        metrics[f"{split}_micro_f1"] = float(f1_score(true, pred, average="micro", zero_division=0))
        metrics[f"{split}_macro_f1"] = float(f1_score(true, pred, average="macro", zero_division=0))
    return metrics, predictions


def gradcam_classes(classes: list[str]) -> list[int]:
    """The seed's seven species when the data has them (names compared without case, '_' or '-'),
    otherwise every class."""
    def key(name):
        return name.lower().replace("_", " ").replace("-", " ").strip()
    wanted = {key(c) for c in SEED_CLASSES}
    chosen = [i for i, c in enumerate(classes) if key(c) in wanted]
    return chosen or list(range(len(classes)))


def gradcam_study(model, data: SplitTensors, run, device, title: str) -> dict:
    """Grad-CAM on the whole test split: the central share for correct vs incorrect predictions, and two
    grids of overlays (up to GRADCAM_PER_CLASS images of each shown class)."""
    x, y = data.split("test")
    cams, preds = [], []
    for start in range(0, len(y), 256):
        cam, logits = grad_cam(model, model.gradcam_layer(), x[start:start + 256])
        cams.append(cam.cpu())
        preds.append(logits.argmax(1).cpu())
    cams, preds, true = torch.cat(cams), torch.cat(preds), y.cpu()
    correct = (preds == true).numpy()
    share = central_fraction(cams)
    shown = gradcam_classes(data.classes)
    pictures = data.data.images(x.cpu())
    result = {"gradcam_classes": [data.classes[k] for k in shown]}
    result["gradcam_n_empty"] = int(np.isnan(share).sum())     # all-zero maps: no central share
    for name, mask in (("correct", correct), ("incorrect", ~correct)):
        defined = share[mask & ~np.isnan(share)]
        result[f"gradcam_central_{name}"] = float(defined.mean()) if defined.size else None
        result[f"gradcam_n_{name}"] = int(mask.sum())
        picks = [i for k in shown for i in np.flatnonzero(mask & (true.numpy() == k))[:GRADCAM_PER_CLASS]]
        images = overlay(pictures[picks], cams[picks].numpy()) if picks else np.zeros((0, 8, 8, 3))
        labels = [f"{_short(data.classes[true[i]])}\n-> {_short(data.classes[preds[i]])}" for i in picks]
        plot_image_grid(images, labels, run.file(f"gradcam_{name}.png"), ncols=max(2, 2 * GRADCAM_PER_CLASS),
                        title=f"Grad-CAM, {name} test predictions\ncentral share "
                              f"{_fmt(result[f'gradcam_central_{name}'])} (uniform 0.25)\n{title}")
    return result


def _short(name: str, width: int = 15) -> str:
    """'White Breasted Kingfisher' -> 'W.B. Kingfisher' when longer than `width`."""
    words = name.replace("_", " ").split()
    if len(name) <= width or len(words) < 2:
        return name[:width]
    return ("".join(f"{w[0]}." for w in words[:-1]) + " " + words[-1])[:width]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_artefacts(run, model, data: SplitTensors, args, records: list[dict], device) -> dict:
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    config = model.config
    title = f"{config.describe()}, {args.preset} preset ({data.source.split(' (')[0].split(',')[0]})"
    plot_curves(records, {"loss": ["train_loss", "val_loss", "test_loss"], "accuracy": ["train_acc", "val_acc",
                "test_acc"]}, run.file("curves.png"), title=title)
    metrics, predictions = split_metrics(model, data, device)
    y_test = data.split("test")[1].cpu().numpy()
    matrix = confusion(y_test, predictions["test"], len(data.classes))
    plot_confusion(matrix, data.classes, run.file("confusion.png"), title=f"test confusion: {config.describe()}")
    study = gradcam_study(model, data, run, device, config.describe())
    last = records[-1]
    summary = run.finish({
        **metrics, "epochs": last["epoch"], "train_seconds": last["train_seconds"],
        "seconds_per_epoch": last["train_seconds"] / max(last["epoch"], 1), "train_loss": last["train_loss"],
        "best_val_acc": max(r["val_acc"] for r in records), "confusion_test": matrix.tolist(),
        "parameters": count_parameters(model), "model": config.describe(), "model_config": config.to_dict(),
        "norm": args.norm, "preset": args.preset, "dataset": args.dataset, "classes": data.classes,
        "sizes": data.sizes(), "image_size": args.image_size, "lr": args.lr, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "schedule": args.schedule, "batch_size": args.batch_size,
        "augment": args.augment, **study,
    })
    print(f"done: test acc {summary['test_acc']:.2%} (micro F1 {summary['test_micro_f1']:.3f}, macro F1 "
          f"{summary['test_macro_f1']:.3f}; val {summary['val_acc']:.2%}, train {summary['train_acc']:.2%}) after "
          f"{summary['epochs']} epochs, {summary['train_seconds']:.0f} s; Grad-CAM central share correct "
          f"{_fmt(study['gradcam_central_correct'])} / incorrect {_fmt(study['gradcam_central_incorrect'])}; "
          f"run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
