"""Train a dfad_kd teacher on real data: LeNet-5 on MNIST, a 6n+2 ResNet or ResNet-34 on CIFAR-10.

    python dfad_kd/train_teacher.py --data-root ../shared/data --data real              # LeNet-5, MNIST
    python dfad_kd/train_teacher.py --dataset cifar10 --model resnet34 --epochs 200     # the seed's teacher (GPU)
    python dfad_kd/train_teacher.py --dataset cifar10 --model resnet --n 3              # ResNet-20

The checkpoint (checkpoint.pt) stores the model's family, config and the input normalisation it was
trained with, so `dfad_kd/train.py --teacher <run>/checkpoint.pt` rebuilds it without these flags.
Writes, besides what every run writes, curves.png and summary.json's test accuracy on the full test set
and on the seed's 10% / 20% test subsets.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from common.classify import evaluate_classifier, predict_logits
from common.cli import make_parser, non_negative_float, parse_args, positive_int
from common.errors import UserError, run_cli
from common.images import AUGMENTATIONS
from common.models import count_parameters
from common.plots import plot_curves
from common.rundir import RunDir
from common.runtime import choose_device, seed_everything
from common.torch_fit import FitSettings, batch_count, fit, tensor_batches
from dfad_kd.data import DATASETS, default_norm, load_data, seed_test_subsets
from dfad_kd.model import FAMILIES, RESNET34, LeNet5Config, build, model_config_dict
from resnet_norms.model import ResNetConfig

ASSIGNMENT = "dfad_kd"
DEFAULT_MODEL = {"mnist": "lenet5", "cifar10": "resnet"}
DEFAULT_AUGMENT = {"mnist": "none", "cifar10": "crop_flip"}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=5, batch_size=128, lr=0.05)
    add = parser.add_argument
    add("--dataset", choices=list(DATASETS), default="mnist", help="training set (default: %(default)s)")
    add("--model", choices=list(FAMILIES), default=None,
        help="teacher family (default: lenet5 for MNIST, resnet for CIFAR-10)")
    add("--n", type=positive_int, default=3, help="resnet: blocks per stage, depth 6n+2 (default: %(default)s)")
    add("--width", type=positive_int, default=64, help="resnet34: first-stage width (default: %(default)s)")
    add("--augment", choices=list(AUGMENTATIONS), default=None,
        help="training-batch augmentation (default: none for MNIST, crop_flip for CIFAR-10)")
    add("--momentum", type=non_negative_float, default=0.9, help="SGD Nesterov momentum (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay (default: %(default)s)")
    return parser


def run_name(args) -> str:
    return f"teacher_{args.dataset}_{args.model}_e{args.epochs}_seed{args.seed}"


def parse(argv=None):
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(model=DEFAULT_MODEL.get(known.dataset, "lenet5"),
                        augment=DEFAULT_AUGMENT.get(known.dataset, "none"))
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.batch_size = min(args.epochs, 2), min(args.batch_size, 64)
    return args


def teacher_config(args, shape: tuple[int, int, int], num_classes: int):
    channels, size = shape[0], shape[1]
    if args.model == "lenet5":
        return LeNet5Config(in_channels=channels, num_classes=num_classes, image_size=size)
    if args.model == "resnet":
        widths = (4, 8, 16) if args.smoke else (16, 32, 64)
        return ResNetConfig(n=1 if args.smoke else args.n, widths=widths, in_channels=channels,
                            num_classes=num_classes, image_size=size)
    layers = (1, 1, 1, 1) if args.smoke else RESNET34.layers
    return dataclasses.replace(RESNET34, layers=layers, width=4 if args.smoke else args.width,
                               in_channels=channels, num_classes=num_classes, image_size=size)


def main(argv=None) -> dict:
    args = parse(argv)
    device = choose_device(args.device)
    seed_everything(args.seed)
    mean, std = default_norm(args.dataset)
    data = load_data(args.dataset, args.data, args.data_root, mean=mean, std=std, seed=args.seed, smoke=args.smoke)
    model = build(args.model, teacher_config(args, data.shape, len(data.classes))).to(device)
    run = RunDir(args, data_source=data.source, device=device)
    print(f"{ASSIGNMENT} teacher: {model.config.describe()}, {count_parameters(model):,} parameters, "
          f"{len(data.y_train):,} train / {len(data.y_test):,} test, data: {data.source}")
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                nesterov=args.momentum > 0, weight_decay=args.weight_decay)
    steps = batch_count(len(data.y_train), args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps * args.epochs)
    augment, x_train, y_train = AUGMENTATIONS[args.augment], data.x_train.to(device), data.y_train.to(device)
    subsets = seed_test_subsets(len(data.y_test))

    def batches(epoch: int):
        generator = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + epoch)
        for x, y in tensor_batches((x_train, y_train), args.batch_size, seed=args.seed, epoch=epoch):
            yield augment(x, generator), y

    def step(batch):
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        n = torch.full((), float(len(y)), device=y.device)
        return loss, {"loss": loss.detach() * n, "acc": (logits.argmax(1) == y).sum().float(), "n": n}

    def evaluate(epoch: int) -> dict:
        result = evaluate_classifier(model, data.x_test, data.y_test, len(data.classes), device)
        return {"test_loss": result["test_loss"], "test_acc": result["test_acc"]}

    config = model_config_dict(model, mean, std)
    records = fit(model, optimizer, run, batches, step, evaluate,
                  FitSettings(epochs=args.epochs, quiet=args.smoke, steps_per_epoch=steps), config,
                  scheduler=scheduler, step_scheduler_per_batch=True, device=device)
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    plot_curves(records, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc", "test_acc"]},
                run.file("curves.png"), title=f"teacher {model.config.describe()} ({data.source.split(' (')[0]})")
    pred = predict_logits(model, data.x_test, device).argmax(1).cpu()
    hits = (pred == data.y_test).float()
    summary = run.finish({
        "test_acc": hits.mean().item(), **{f"test_acc_{k}": hits[idx].mean().item() for k, idx in subsets.items()},
        "model": model.config.describe(), "family": args.model, "parameters": count_parameters(model),
        "model_config": config, "dataset": args.dataset, "train_acc": records[-1]["train_acc"],
    }, records)
    print(f"done: teacher test acc {summary['test_acc']:.2%} (10% subset {summary['test_acc_10']:.2%}, 20% subset "
          f"{summary['test_acc_20']:.2%}) after {summary['epochs']} epochs, {summary['train_seconds']:.0f} s; "
          f"checkpoint {run.path / 'checkpoint.pt'}")
    return summary


if __name__ == "__main__":
    run_cli(main)
