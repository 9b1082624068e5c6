"""Hinton et al. (2015) knowledge distillation on CIFAR-10: teacher, student baseline, distilled student.

    python kd_cifar10/distill.py                                     # full configuration (GPU-sized)
    python kd_cifar10/distill.py --data-root ../shared/data --t-width 16 --s-width 8 --epochs 15
    python kd_cifar10/distill.py --teacher runs/kd_cifar10/<run>/teacher/checkpoint.pt   # reuse a teacher
    python kd_cifar10/distill.py --data-root ../shared/data \
        --teacher-checkpoint ../shared/data/pretrained/cifar10_resnet/resnet56-4bfd9763.th  # the published ResNet-56
    python kd_cifar10/distill.py --student-seeds 0 1 2               # students (and their KD twins) per seed
    torchrun --nproc_per_node=4 kd_cifar10/distill.py ...            # the same code under DDP

One run directory holds every phase as its own run (teacher/, student_seed<S>/, distilled_seed<S>/,
each with config.json, metrics.jsonl, checkpoint.pt, summary.json), so --resume continues whichever
phase was interrupted and skips finished ones. The top level holds the comparison: config.json,
metrics.jsonl (every phase's epochs, with a "phase" field), summary.json (the table), checkpoint.pt
(the distilled student, with its model config) and the plots. Every phase trains through train_phase's
loop: cross-entropy for the teacher and the baseline; for the distilled student, --loss (kd_cifar10/losses.py's
LOSSES) against the frozen teacher's logits.

--batch-size is the GLOBAL batch: under torchrun each of N processes takes batch/N examples of the
same seeded permutation and DDP averages their gradients, so N x (B/N) is the same update as 1 x B.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from common import distributed
from common.checkpoint import load_checkpoint, save_checkpoint
from common.classify import evaluate_classifier as evaluate, predict_logits, to_memory_format
from common.cli import (decay_rate, fraction, layer_count, make_parser, non_negative_float, parse_args, positive_float,
                        positive_int, seed_int)
from common.errors import UserError, run_cli
from common.images import AUGMENTATIONS, ImageTensors
from common.models import count_parameters
from common.pretrained import read_published_resnet
from common.progress import progress
from common.reporting import markdown_table, pct
from common.rundir import RunDir
from common.runtime import seed_everything
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from kd_cifar10.data import load_dataset
from kd_cifar10.distill_plots import plot_comparison, plot_per_class
from kd_cifar10.losses import LOSSES, build_loss
from kd_cifar10.model import BLOCKS, NORMS, build_model, model_config, model_from_checkpoint
from resnet_norms.model import pretrained_resnet

ASSIGNMENT = "kd_cifar10"
SMOKE_WIDTHS = (4, 2)   # teacher, student


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__.splitlines()[0], epochs=30, batch_size=128, lr=0.05,
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    distributed.add_sync_bn_flag(parser)
    add = parser.add_argument
    add("--t-layers", type=layer_count, nargs=4, default=[2, 2, 2, 2], metavar="N",
        help="teacher's blocks per stage (default: %(default)s, ResNet-18)")
    add("--s-layers", type=layer_count, nargs=4, default=[1, 1, 1, 1], metavar="N",
        help="student's blocks per stage (default: %(default)s, ResNet-10)")
    add("--t-width", type=positive_int, default=64, help="teacher's first-stage width (default: %(default)s)")
    add("--s-width", type=positive_int, default=32, help="student's first-stage width (default: %(default)s)")
    add("--use-skip", action=argparse.BooleanOptionalAction, default=True,
        help="residual connections in teacher and student (default: %(default)s)")
    add("--block", choices=list(BLOCKS), default="basic", help="residual block (default: %(default)s)")
    add("--norm", choices=list(NORMS), default="batch", help="normalisation layers (default: %(default)s)")
    add("--loss", choices=list(LOSSES), default="hinton", help="distillation loss (default: %(default)s)")
    add("--temperature", type=positive_float, default=4.0,
        help="softmax temperature T of the KD term (default: %(default)s)")
    add("--alpha", type=fraction, default=0.9,
        help="weight of the KD term; 1 - alpha weighs cross-entropy on the labels (default: %(default)s)")
    add("--teacher", type=Path, default=None,
        help="a finished teacher's checkpoint.pt (from this script or train.py) instead of training one")
    add("--teacher-checkpoint", type=Path, default=None,
        help="a published CIFAR-10 ResNet-20/56 file ({'state_dict', 'best_prec1'}, e.g. ../shared/data/pretrained/"
             "cifar10_resnet/resnet56-4bfd9763.th) as the teacher, through resnet_norms' ResNet; this run's inputs "
             "are re-normalised to the file's statistics")
    add("--teacher-epochs", type=positive_int, default=None, help="teacher's epochs (default: --epochs)")
    add("--student-seeds", type=seed_int, nargs="+", default=None,
        help="train the student baseline and the distilled student once per seed (default: --seed)")
    add("--augment", choices=list(AUGMENTATIONS), default="crop_flip",
        help="training-batch augmentation, on the device (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay (default: %(default)s)")
    add("--momentum", type=decay_rate, default=0.9, help="SGD Nesterov momentum (default: %(default)s)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    """The arguments a run uses: the checks, --teacher-epochs and --student-seeds from --epochs and --seed when not
    given, then --smoke's tiny sizes."""
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.teacher is not None and args.teacher_checkpoint is not None:
        raise UserError("give --teacher (a checkpoint of this project) or --teacher-checkpoint (a published "
                        "ResNet file), not both")
    args.student_seeds = args.student_seeds or [args.seed]
    if len(set(args.student_seeds)) != len(args.student_seeds):
        raise UserError(f"--student-seeds repeats a seed: {args.student_seeds}")
    args.teacher_epochs = args.teacher_epochs or args.epochs
    if args.smoke:
        args.epochs, args.teacher_epochs = min(args.epochs, 2), min(args.teacher_epochs, 2)
        args.t_layers, args.s_layers, (args.t_width, args.s_width) = [1, 1, 1, 1], [1, 1, 1, 1], SMOKE_WIDTHS
    return args


def run_name(args) -> str:
    skip = "skip" if args.use_skip else "noskip"
    t, s = "".join(map(str, args.t_layers)), "".join(map(str, args.s_layers))
    return (f"distill_t{t}w{args.t_width}_s{s}w{args.s_width}_{skip}_{args.loss}_T{args.temperature:g}"
            f"_a{args.alpha:g}_{args.augment}_e{args.epochs}_seed{args.seed}")


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        device = info.device
        seed_everything(args.seed)
        data = place_data(load_dataset("cifar10", args.data, args.data_root, args.seed, args.smoke), device)
        top_args = copy.copy(args)
        top_args.wandb = "off"   # each phase is its own wandb run; the top level only joins them
        top = RunDir(top_args, data_source=data.source, device=device) if info.is_main else None
        if info.is_main:
            print(f"{ASSIGNMENT} distillation: {len(data.y_train):,} train / {len(data.y_test):,} test, data: "
                  f"{data.source}; {info.world_size} process(es) on {device}; global batch {args.batch_size}")
        if args.teacher is not None or args.teacher_checkpoint is not None:
            if args.teacher is not None:
                teacher_model = load_teacher(args.teacher, data, device)
            else:
                teacher_model = load_pretrained_teacher(args.teacher_checkpoint, data, device)
            teacher = phase_summary(None, "teacher", teacher_model, [], None, data, device)
            teacher["loaded_from"] = str(args.teacher or args.teacher_checkpoint)
        else:
            teacher_model = build_cnn(args, data, args.t_layers, args.t_width, args.seed, device)
            teacher = train_phase(args, data, device, "teacher", teacher_model, args.seed, args.teacher_epochs)
        for p in teacher_model.parameters():
            p.requires_grad_(False)
        students, distilled, last_distilled = [], [], None
        for seed in args.student_seeds:
            student = build_cnn(args, data, args.s_layers, args.s_width, seed, device)
            students.append(train_phase(args, data, device, f"student_seed{seed}", student, seed, args.epochs))
            last_distilled = build_cnn(args, data, args.s_layers, args.s_width, seed, device)   # the same init
            distilled.append(train_phase(args, data, device, f"distilled_seed{seed}", last_distilled, seed, args.epochs,
                                         teacher=teacher_model))
        if top is None:
            return {}
        return write_comparison(top, args, data, teacher, students, distilled, last_distilled)


def train_phase(args, data: ImageTensors, device: str, name: str, model: torch.nn.Module, seed: int, epochs: int,
                teacher: torch.nn.Module | None = None) -> dict:
    """Train `model` in the run directory <out>/<name>: cross-entropy on the labels, or with `teacher` the
    distillation loss (--loss) against its logits. Returns the phase's summary; a finished phase is loaded
    from its checkpoint, not retrained."""
    run = phase_run(args, data, device, name, seed, epochs)
    seed_everything(seed)
    net = distributed.wrap_model(model, device, sync_batchnorm=args.sync_bn)
    batch = distributed.per_rank_batch(args.batch_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                                weight_decay=args.weight_decay)
    steps = batch_count(len(data.y_train), batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    criterion = build_loss(args.loss, args.temperature, args.alpha) if teacher is not None else None
    augment = AUGMENTATIONS[args.augment]
    tensors = (data.x_train, data.y_train)
    if teacher is not None and args.augment == "none":   # a fixed teacher on fixed images: its logits once
        tensors += (predict_logits(teacher, data.x_train, device),)                 # (N, K)
    if teacher is not None:
        teacher.eval()

    start, elapsed = resume(run, net, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, epochs):
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        generator = torch.Generator(device=device)   # augmentation draws stay on the device; the same after --resume
        generator.manual_seed((seed * 1_000 + epoch) * 1_000 + distributed.rank())
        batches = tensor_batches(tensors, batch, seed=seed, epoch=epoch)
        for x, y, *cached in progress(batches, desc=f"{name} epoch {epoch + 1}/{epochs}", total=steps,
                                      quiet=args.smoke):
            x, y, *cached = (t.to(device, non_blocking=True) for t in (x, y, *cached))  # no-op when on the device
            x = to_memory_format(augment(x, generator), device)                        # (B, C, H, W)
            with autocast(device):
                logits = net(x)                                                         # (B, K)
                if teacher is None:
                    loss, parts = F.cross_entropy(logits.float(), y), {}
                else:
                    with torch.no_grad():
                        teacher_logits = cached[0] if cached else teacher(x)           # (B, K)
                    loss, parts = criterion(logits, teacher_logits, y)                  # parts: kd, ce (means)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = torch.full((), len(y), device=y.device)                                # no host-to-device copy
            meter.add(loss, n, acc=(logits.argmax(1) == y).sum(), **{k: v * n for k, v in parts.items()})
        means = guard.check(meter, net, epoch)                                          # one host sync per epoch
        elapsed += time.perf_counter() - tic

        net.eval()
        with torch.no_grad():
            result = evaluate(model, data.x_test, data.y_test, len(data.classes), device)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", means),
                  "test_loss": result["test_loss"], "test_acc": result["test_acc"], "train_seconds": elapsed}
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, model_config(model), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    return phase_summary(run, name, model, finished_records(run), seed, data, device)


def phase_run(args, data: ImageTensors, device: str, name: str, seed: int, epochs: int):
    """The phase's own run directory <out>/<name> (rank 0's RunDir, a FollowerRun elsewhere)."""
    sub = copy.copy(args)
    sub.out, sub.seed, sub.epochs = args.out / name, seed, epochs
    return distributed.run_dir(sub, data_source=data.source, device=device)


def build_cnn(args, data: ImageTensors, layers, width: int, seed: int, device: str) -> torch.nn.Module:
    """A teacher or student FlexibleCNN: the same initial weights for the same seed, on every rank."""
    torch.manual_seed(seed)
    model = build_model("cnn", layers=tuple(layers), width=width, block=args.block, norm=args.norm,
                        use_skip=args.use_skip, in_channels=data.shape[0], num_classes=len(data.classes),
                        image_size=data.shape[1])
    return to_device(model, device)


def phase_summary(run, name: str, model: torch.nn.Module, records: list[dict], seed: int | None,
                  data: ImageTensors, device: str) -> dict:
    """The phase's row of the comparison (its final test scores), written as its summary.json when it has a
    run directory; "records" carries its metrics to the top level."""
    final = evaluate(model, data.x_test, data.y_test, len(data.classes), device)
    described = model.config.describe() if hasattr(model, "config") else type(model).__name__
    summary = {"phase": name, "model": described, "parameters": count_parameters(model),
               "seed": seed, "epochs": records[-1]["epoch"] if records else 0,
               "train_seconds": records[-1]["train_seconds"] if records else 0.0,
               "train_acc": records[-1]["train_acc"] if records else None, **final}
    if isinstance(run, RunDir):
        summary = run.finish(summary)
    summary["records"] = records
    return summary


def to_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.startswith("cuda") else model


def load_teacher(path: Path, data: ImageTensors, device: str) -> torch.nn.Module:
    state = load_checkpoint(path.expanduser().resolve())
    model = model_from_checkpoint(state, str(path))
    config = model.config
    if getattr(config, "in_channels", data.shape[0]) != data.shape[0] or config.num_classes != len(data.classes):
        raise UserError(f"--teacher {path} takes {getattr(config, 'in_channels', '?')}-channel images and "
                        f"{config.num_classes} classes; the data have {data.shape[0]} and {len(data.classes)}")
    return to_device(model, device)


class Renormalised(torch.nn.Module):
    """`model`, trained on [0, 1] pixels normalised with (to_mean, to_std), fed this run's inputs normalised with
    (from_mean, from_std): x -> x * from_std / to_std + (from_mean - to_mean) / to_std, per channel."""

    def __init__(self, model: torch.nn.Module, from_mean, from_std, to_mean, to_std):
        super().__init__()
        self.model, self.config = model, model.config
        f_m, f_s, t_m, t_s = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                              for v in (from_mean, from_std, to_mean, to_std))
        self.register_buffer("scale", f_s / t_s)
        self.register_buffer("shift", (f_m - t_m) / t_s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # (B, C, H, W) -> (B, K)
        return self.model(x * self.scale + self.shift)


def load_pretrained_teacher(path: Path, data: ImageTensors, device: str) -> torch.nn.Module:
    """A published CIFAR-10 ResNet (common.pretrained: a corrupt or other-architecture file is one line) in
    resnet_norms' ResNet, fed this run's inputs re-normalised to the file's statistics."""
    published = read_published_resnet(path)
    if published.in_channels != data.shape[0] or published.num_classes != len(data.classes):
        raise UserError(f"--teacher-checkpoint {path} takes {published.in_channels}-channel images and "
                        f"{published.num_classes} classes; the data have {data.shape[0]} and {len(data.classes)}")
    model = pretrained_resnet(published)
    return to_device(Renormalised(model, data.mean, data.std, published.mean, published.std), device)


def place_data(data: ImageTensors, device: str) -> ImageTensors:
    """Keep the whole set on the accelerator (channels_last) when it fits in a quarter of its free memory."""
    if device.startswith("cuda"):
        size = sum(t.element_size() * t.nelement() for t in (data.x_train, data.x_test))
        if size < torch.cuda.mem_get_info(torch.device(device))[0] / 4:
            data = data.to(device)
            data.x_train, data.x_test = (to_memory_format(x, device) for x in (data.x_train, data.x_test))
            return data
        print(f"note: the data set ({size / 2**30:.1f} GiB) stays in host memory; batches are copied per step")
    return data


def write_comparison(top: RunDir, args, data: ImageTensors, teacher: dict, students: list[dict],
                     distilled: list[dict], model: torch.nn.Module) -> dict:
    phases = [teacher, *students, *distilled]
    with open(top.metrics_file, "w") as handle:   # rebuilt from the phases' own metrics on every run
        for phase in phases:
            handle.writelines(json.dumps({"phase": phase["phase"], **r}) + "\n" for r in phase["records"])
    save_checkpoint(top.checkpoint_path, {"model_config": model_config(model), "model": model.state_dict(),
                                          "phase": distilled[-1]["phase"]})
    plot_comparison(teacher, students, distilled, top.file("curves.png"))
    plot_per_class(teacher, students, distilled, data.classes, top.file("per_class_accuracy.png"))

    def strip(phase: dict) -> dict:
        return {k: v for k, v in phase.items() if k != "records"}

    def mean(rows: list, key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    summary = top.finish({
        "teacher": strip(teacher), "students": [strip(s) for s in students],
        "distilled": [strip(s) for s in distilled], "classes": data.classes,
        "student_mean_acc": mean(students, "test_acc"), "distilled_mean_acc": mean(distilled, "test_acc"),
        "distilled_wins": sum(d["test_acc"] > s["test_acc"] for s, d in zip(students, distilled)),
        "seeds": args.student_seeds, "loss": args.loss, "temperature": args.temperature, "alpha": args.alpha,
        "augment": args.augment, "world_size": distributed.world_size(), "global_batch": args.batch_size,
    })
    print(comparison_table(summary))
    print(f"run directory {top.path}")
    return summary


def comparison_table(summary: dict) -> str:
    """The seed's table: test accuracy, test loss, parameters for teacher, student, distilled student."""
    def row(label: str, s: dict) -> list:
        return [label, s["model"], f"{s['parameters']:,}", pct(s["test_acc"]), f"{s['test_loss']:.4f}",
                s["seed"] if s["seed"] is not None else "loaded", s["epochs"]]
    rows = [row("teacher", summary["teacher"])]
    for student, kd in zip(summary["students"], summary["distilled"]):
        rows += [row("student baseline", student), row("student distilled", kd)]
    return markdown_table(["model", "network", "parameters", "test acc", "test loss", "seed", "epochs"], rows)


if __name__ == "__main__":
    run_cli(main)
