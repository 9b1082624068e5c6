"""Train one FlexibleMLP / FlexibleCNN (or fine-tune torchvision's ResNet-18) on CIFAR-10 or MNIST.

    python kd_cifar10/train.py                                        # ResNet-18 (CIFAR variant), crop+flip, cosine
    python kd_cifar10/train.py --no-skip                              # the same network without shortcuts
    python kd_cifar10/train.py --layers 3 4 6 3 --block bottleneck    # ResNet-50's layout
    python kd_cifar10/train.py --dataset mnist --model mlp --depth 20 --width 128 --no-skip --optimizer adamw --lr 1e-3
    python kd_cifar10/train.py --augment crop_flip_cutout
    python kd_cifar10/train.py --pretrained imagenet --finetune frozen   # transfer learning
    python kd_cifar10/train.py --pretrained resnet18.pth --finetune full  # a torchvision resnet18 state_dict
    torchrun --nproc_per_node=4 kd_cifar10/train.py --sync-bn         # DDP; --batch-size is the global batch
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from torch import nn

from common import distributed
from common.classify import evaluate_classifier
from common.cli import layer_count, make_parser, non_negative_float, parse_args, positive_int, typed_flags
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.images import AUGMENTATIONS, ImageTensors
from common.models import count_parameters
from common.plots import plot_curves, plot_image_grid
from common.progress import progress
from common.rundir import RunDir
from common.runtime import seed_everything
from common.schedules import lr_lambda
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from kd_cifar10.data import DATASETS, load_dataset
from kd_cifar10.gradients import GradientMonitor, plot_gradient_norms
from kd_cifar10.model import BLOCKS, MODELS, NORMS, build_model, model_config
from kd_cifar10.transfer import FINETUNE, build_transfer_model

ASSIGNMENT = "kd_cifar10"
DEFAULT_WIDTH = {"cnn": 64, "mlp": 512}   # --width when not given, per --model
SCHEDULES = ("constant", "cosine")        # common.schedules' names this script offers

OPTIMIZERS = {
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=30, batch_size=128, lr=0.05,
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    distributed.add_sync_bn_flag(parser)
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default="cifar10", help="image set (default: %(default)s)")
    add("--model", choices=list(MODELS), default="cnn", help="network family (default: %(default)s)")
    add("--layers", type=layer_count, nargs=4, default=[2, 2, 2, 2], metavar=("A", "B", "C", "D"),
        help="cnn: blocks in each of the four stages (default: 2 2 2 2 = ResNet-18)")
    add("--block", choices=list(BLOCKS), default="basic", help="cnn: residual block type (default: %(default)s)")
    add("--use-skip", dest="use_skip", action="store_true", default=True,
        help="residual (skip) connections on (the default)")
    add("--no-skip", dest="use_skip", action="store_false",
        help="the same network without skip connections (default: skips on)")
    add("--norm", choices=list(NORMS), default="batch", help="normalisation layer (default: %(default)s)")
    add("--width", type=positive_int, default=None,
        help="cnn: first-stage channels (stages w, 2w, 4w, 8w); mlp: hidden units (default: "
             + ", ".join(f"{model} {width}" for model, width in DEFAULT_WIDTH.items()) + ")")
    add("--depth", type=layer_count, default=4, help="mlp: hidden layers (default: %(default)s)")
    add("--augment", choices=list(AUGMENTATIONS), default="crop_flip",
        help="training-batch augmentation, on the device (default: %(default)s)")
    add("--schedule", choices=SCHEDULES, default="cosine",
        help="learning-rate schedule, per step (common.schedules) (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default="sgd",
        help="sgd (Nesterov momentum 0.9) or adamw (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=5e-4, help="weight decay (default: %(default)s)")
    add("--pretrained", default="none",
        help="none: train --model from scratch; imagenet: torchvision's ResNet-18 ImageNet weights (torch hub "
             "cache or download); PATH: a file with a torchvision resnet18 state_dict (default: %(default)s)")
    add("--finetune", choices=list(FINETUNE), default="full",
        help="with --pretrained: full fine-tune, or frozen backbone with a new trained head (default: %(default)s)")
    add("--input-size", type=positive_int, default=224,
        help="with --pretrained: images are upsampled to this many pixels a side (default: %(default)s)")
    add("--train-size", type=positive_int, default=None,
        help="train on the first N training images only (quick CPU runs; default: all)")
    add("--log-grad-norms", action=argparse.BooleanOptionalAction, default=True,
        help="log per-layer gradient norms each epoch (default: on)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    """The arguments a run uses: --width from --model when not given, then --smoke's tiny sizes."""
    parser = build_parser()
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    refuse_inert(args, typed_flags(parser, argv))
    if args.width is None:
        args.width = DEFAULT_WIDTH[args.model]
    if args.smoke:
        args.epochs, args.batch_size = min(args.epochs, 2), min(args.batch_size, 64)
        args.layers, args.width, args.depth = [1, 1, 1, 1], min(args.width, 8 if args.model == "cnn" else 32), 2
        args.input_size = min(args.input_size, 32)
    return args


def refuse_inert(args, typed: set[str]) -> None:
    """A flag the other flags make unused is refused in one line, not ignored."""
    def refuse(flags, why):
        if typed & set(flags):
            names = " / ".join("--use-skip / --no-skip" if f == "use_skip" else "--" + f.replace("_", "-")
                               for f in flags if f in typed)
            raise UserError(f"{names}: {why}")
    if args.pretrained == "none":
        refuse(("finetune", "input_size"), "used only with --pretrained")
    else:
        refuse(("model", "layers", "block", "width", "depth", "use_skip", "norm"),
               "--pretrained trains torchvision's ResNet-18, which these do not change")
    refuse(("layers", "block") if args.model == "mlp" else ("depth",), f"not used by --model {args.model}")


def run_name(args) -> str:
    width = args.width or DEFAULT_WIDTH[args.model]    # named before parse() resolves --width
    if args.pretrained != "none":
        model = f"tv-resnet18_{Path(args.pretrained).stem}_{args.finetune}"
    elif args.model == "cnn":
        model = f"cnn{''.join(map(str, args.layers))}{args.block[0]}_w{width}"
    else:
        model = f"mlp{args.depth}x{width}"
    skip = "skip" if args.use_skip else "noskip"
    return (f"{args.dataset}_{model}_{skip}_{args.norm}_{args.augment}_{args.optimizer}_lr{args.lr:g}_"
            f"{args.schedule}_e{args.epochs}_seed{args.seed}")


def make_model(args, data: ImageTensors) -> tuple[nn.Module, str]:
    """The network the flags describe, and where its initial weights came from."""
    if args.pretrained != "none":
        return build_transfer_model(args.pretrained, args.finetune, len(data.classes), args.input_size)
    channels, height, _ = data.shape
    shared = dict(use_skip=args.use_skip, norm=args.norm, width=args.width, num_classes=len(data.classes))
    if args.model == "cnn":
        config = dict(layers=tuple(args.layers), block=args.block, in_channels=channels, image_size=height)
    else:
        config = dict(depth=args.depth, in_features=channels * height * data.shape[2])
    return build_model(args.model, **shared, **config), "none (random init)"


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    device = torch.device(info.device)
    seed_everything(args.seed)
    data = load_dataset(args.dataset, args.data, args.data_root, seed=args.seed, smoke=args.smoke)
    if args.train_size is not None:
        data.x_train, data.y_train = data.x_train[:args.train_size], data.y_train[:args.train_size]
    model, init = make_model(args, data)
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if cuda else torch.preserve_format)
    net = distributed.wrap_model(model, info.device, sync_batchnorm=args.sync_bn)
    data = data.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[args.optimizer](trainable, args.lr, args.weight_decay)
    batch = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(data.y_train), batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.schedule, steps * args.epochs))
    monitor = GradientMonitor(model.layer_groups()) if args.log_grad_norms else None
    augment, generator = AUGMENTATIONS[args.augment], torch.Generator(device=device)
    run = distributed.run_dir(args, data_source=data.source, device=str(device))
    describe = model.config.describe()
    print(f"{ASSIGNMENT}: {describe}, {count_parameters(model):,} parameters "
          f"({count_parameters(model, trainable_only=True):,} trained), init {init}, {args.optimizer} lr {args.lr:g} "
          f"{args.schedule}, augment {args.augment}, {len(data.y_train):,} train / {len(data.y_test):,} test, "
          f"data: {data.source}")

    start, elapsed = resume(run, net, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        generator.manual_seed(distributed.rank_seed(args.seed * 1_000_003 + epoch))  # the same after --resume
        batches = tensor_batches((data.x_train, data.y_train), batch, seed=args.seed, epoch=epoch)
        for x, y in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
            if monitor is not None:
                monitor.next_step()                                            # closes the last step's norms
            x = augment(x, generator)                                          # (B, C, H, W), on the device
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = net(x)                                                # (B, classes)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = torch.full((), float(len(y)), device=y.device)                # no host-to-device copy per step
            meter.add(loss, n, acc=(logits.argmax(1) == y).sum())
        means = guard.check(meter, net, epoch)                                 # one host sync per epoch
        elapsed += time.perf_counter() - tic

        net.eval()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", means)}
        with torch.no_grad():
            result = evaluate_classifier(model, data.x_test, data.y_test, len(data.classes), device)
        record.update(test_loss=result["test_loss"], test_acc=result["test_acc"])
        if monitor is not None:
            record["grad_norms"] = monitor.epoch_means()
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, model_config(model), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    records = finished_records(run)
    return distributed.on_rank0(write_artefacts, run, model, data, args, records, init, generator)


def write_artefacts(run: RunDir, model, data: ImageTensors, args, records: list[dict], init: str,
                    generator: torch.Generator) -> dict:
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    describe = model.config.describe()
    title = f"{describe}, augment {args.augment} ({short_source(data.source)})"
    plot_curves(records, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc", "test_acc"]},
                run.file("curves.png"), title=title)
    names = [name for name, _ in model.layer_groups()]
    if "grad_norms" in records[0]:
        shown = sorted({0, len(records) // 2, len(records) - 1})
        plot_gradient_norms({f"epoch {records[i]['epoch']}": records[i]["grad_norms"] for i in shown}, names,
                            run.file("gradient_norms.png"), title=f"per-layer gradient norm: {describe}")
    originals = data.x_train[:8]
    generator.manual_seed(args.seed)
    augmented = AUGMENTATIONS[args.augment](originals, generator)
    pictures = data.images(torch.cat([originals, augmented]))
    labels = [data.classes[k] for k in data.y_train[:8].tolist()]
    plot_image_grid(pictures, labels + [f"{args.augment}" for _ in labels], run.file("augmentations.png"),
                    ncols=8, title=f"training images (top) and their '{args.augment}' versions (bottom)")
    last = records[-1]
    summary = run.finish({
        "test_acc": last["test_acc"], "test_loss": last["test_loss"], "train_acc": last["train_acc"],
        "train_loss": last["train_loss"], "best_test_acc": max(r["test_acc"] for r in records),
        "parameters": count_parameters(model), "trainable_parameters": count_parameters(model, trainable_only=True),
        "model": describe, "model_config": model_config(model), "init": init, "augment": args.augment,
        "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule, "batch_size": args.batch_size,
        "weight_decay": args.weight_decay, "dataset": args.dataset, "grad_layers": names,
        "n_train": len(data.y_train), "n_test": len(data.y_test),
    }, records)
    print(f"done: test {summary['test_acc']:.2%} (train {summary['train_acc']:.2%}) after {summary['epochs']} "
          f"epochs, {summary['train_seconds']:.0f} s; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
