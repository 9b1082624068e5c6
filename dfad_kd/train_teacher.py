"""Train a dfad_kd teacher on real data: LeNet-5 on MNIST, a 6n+2 ResNet or ResNet-34 on CIFAR-10.

    python dfad_kd/train_teacher.py --data-root ../shared/data --data real              # LeNet-5, MNIST
    python dfad_kd/train_teacher.py --dataset cifar10 --model resnet34 --epochs 200     # the seed's teacher (GPU)
    python dfad_kd/train_teacher.py --dataset cifar10 --model resnet --n 3              # ResNet-20
    torchrun --nproc_per_node=2 dfad_kd/train_teacher.py --smoke                         # DDP

The checkpoint (checkpoint.pt) stores the model's family, config and the input normalisation it was
trained with, so `dfad_kd/train.py --teacher <run>/checkpoint.pt` rebuilds it without these flags.
Writes, besides what every run writes, curves.png and summary.json's test accuracy on the full test set
and on the seed's 10% / 20% test subsets.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from common import distributed
from common.classify import evaluate_classifier, predict_logits
from common.cli import decay_rate, layer_count, make_parser, non_negative_float, parse_args, positive_int
from common.errors import UserError, run_cli
from common.images import AUGMENTATIONS
from common.models import count_parameters
from common.plots import plot_curves
from common.progress import progress
from common.runtime import seed_everything
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from dfad_kd.data import DATASETS, default_norm, load_data, seed_test_subsets
from dfad_kd.model import FAMILIES, RESNET34, LeNet5Config, build, model_config_dict
from resnet_norms.model import ResNetConfig

ASSIGNMENT = "dfad_kd"
DEFAULT_MODEL = {"mnist": "lenet5", "cifar10": "resnet"}          # --dataset -> the teacher family
DEFAULT_AUGMENT = {"mnist": "none", "cifar10": "crop_flip"}       # --dataset -> the training augmentation


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=5, batch_size=128, lr=0.05,
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    distributed.add_sync_bn_flag(parser)
    add = parser.add_argument
    add("--dataset", choices=list(DATASETS), default="mnist", help="training set (default: %(default)s)")
    add("--model", choices=list(FAMILIES), default=None,
        help="teacher family (default: from --dataset: lenet5 for mnist, resnet for cifar10)")
    add("--n", type=layer_count, default=3, help="resnet: blocks per stage, depth 6n+2 (default: %(default)s)")
    add("--width", type=positive_int, default=64, help="resnet34: first-stage width (default: %(default)s)")
    add("--augment", choices=list(AUGMENTATIONS), default=None,
        help="training-batch augmentation (default: from --dataset: none for mnist, crop_flip for cifar10)")
    add("--momentum", type=decay_rate, default=0.9, help="SGD Nesterov momentum (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay (default: %(default)s)")
    return parser


def run_name(args) -> str:
    return f"teacher_{args.dataset}_{args.model}_e{args.epochs}_seed{args.seed}"


def parse(argv=None):
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(model=DEFAULT_MODEL[known.dataset], augment=DEFAULT_AUGMENT[known.dataset])  # flags win
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
    with distributed.launch(args) as info:
        summary = train(args, info)
    if summary:
        print(f"done: teacher test acc {summary['test_acc']:.2%} (10% subset {summary['test_acc_10']:.2%}, 20% "
              f"subset {summary['test_acc_20']:.2%}) after {summary['epochs']} epochs, {summary['train_seconds']:.0f}"
              f" s; run directory {args.out}")
    return summary


def train(args, info: distributed.DistInfo) -> dict:
    """The teacher's training on every process (dfad_kd/train.py calls it too, without --teacher); rank 0 writes
    the run and returns its summary, the other ranks {}."""
    device = torch.device(info.device)
    seed_everything(args.seed)
    mean, std = default_norm(args.dataset)
    data = load_data(args.dataset, args.data, args.data_root, mean=mean, std=std, seed=args.seed, smoke=args.smoke)
    model = build(args.model, teacher_config(args, data.shape, len(data.classes))).to(device)
    net = distributed.wrap_model(model, info.device, sync_batchnorm=args.sync_bn)
    run = distributed.run_dir(args, data_source=data.source, device=str(device))
    print(f"{ASSIGNMENT} teacher: {model.config.describe()}, {count_parameters(model):,} parameters, "
          f"{len(data.y_train):,} train / {len(data.y_test):,} test, data: {data.source}")
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                nesterov=args.momentum > 0, weight_decay=args.weight_decay)
    batch = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(data.y_train), batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps * args.epochs)   # per step
    augment, generator = AUGMENTATIONS[args.augment], torch.Generator(device=device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    config = model_config_dict(model, mean, std)

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
        train_means = guard.check(meter, net, epoch)
        elapsed += time.perf_counter() - tic

        net.eval()
        with torch.no_grad():   # each rank scores its share of the test set
            result = evaluate_classifier(model, data.x_test, data.y_test, len(data.classes), device)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train_means),
                  "test_loss": result["test_loss"], "test_acc": result["test_acc"], "train_seconds": elapsed}
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config, net, optimizer, scheduler), quiet=args.smoke)
    net.eval()
    records = finished_records(run)
    if not info.is_main:
        return {}
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    plot_curves(records, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc", "test_acc"]},
                run.file("curves.png"), title=f"teacher {model.config.describe()} ({data.source.split(' (')[0]})")
    hits = (predict_logits(model, data.x_test, device).argmax(1).cpu() == data.y_test).float()
    subsets = seed_test_subsets(len(data.y_test))
    return run.finish({
        "test_acc": hits.mean().item(), **{f"test_acc_{k}": hits[idx].mean().item() for k, idx in subsets.items()},
        "model": model.config.describe(), "family": args.model, "parameters": count_parameters(model),
        "model_config": config, "dataset": args.dataset, "train_acc": records[-1]["train_acc"],
    }, records)


if __name__ == "__main__":
    run_cli(main)
