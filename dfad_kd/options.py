"""train.py's flags, the per-data-set presets and the run name.

    args = parse(["--dataset", "cifar10", "--teacher", "pretrained:resnet20", "--lr", "5e-4"])

PRESETS holds, per --dataset, the recipe measured in dfad_kd/README.md: those values replace the parser's
generic defaults (DFAD as published: SGD 0.1, batch 256, ngf 64, no extra generator terms), and a flag given
on the command line always wins over both.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from common.cli import make_parser, non_negative_float, parse_args, positive_float, positive_int
from common.errors import UserError
from dfad_kd.data import DATASETS
from dfad_kd.methods import METHODS
from dfad_kd.model import GENERATOR_OUTPUTS

ASSIGNMENT = "dfad_kd"
SCHEDULES = {  # (epoch, epochs) -> multiplier of the learning rates, stepped once per epoch
    "cosine": lambda epoch, total: 0.5 * (1 + math.cos(math.pi * epoch / total)),
    "step": lambda epoch, total: 0.1 ** sum(epoch >= m * total for m in (0.3, 0.6, 0.8)),   # DFAD's milestones
    "constant": lambda epoch, total: 1.0,
}
STUDENT_OPTIMIZERS = {  # (parameters, lr) -> the student's optimiser
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4),   # DFAD's
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}
# --dataset -> the defaults of its measured recipe (README): MNIST's 96.60% run; CIFAR-10's BN-matching run
PRESETS = {
    "mnist": {"batch_size": 128, "ngf": 16, "epochs": 30, "iters_per_epoch": 30, "student_optimizer": "adam",
              "lr": 1e-3, "balance": 1.0},
    "cifar10": {"batch_size": 64, "ngf": 32, "epochs": 30, "iters_per_epoch": 20, "student_optimizer": "adam",
                "lr": 1e-3, "lr_g": 5e-3, "balance": 1.0, "bn_match": 10.0, "gen_output": "pixels",
                "schedule": "cosine"},
}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("Data-free adversarial distillation (Fang et al., 2019): a student that never sees a "
                         "training image.", epochs=100, batch_size=256, lr=0.1,
                         lr_help="the student's learning rate (default: %(default)s)",
                         epochs_help="epochs of --iters-per-epoch iterations each (default: %(default)s)")
    add = parser.add_argument
    add("--dataset", choices=list(DATASETS), default="mnist",
        help="whose test set evaluates; also picks the preset defaults of PRESETS (default: %(default)s)")
    add("--teacher", default=None,
        help="teacher: a dfad_kd checkpoint.pt (train_teacher.py's), a published CIFAR-10 ResNet file, or "
             "pretrained:resnet20 / pretrained:resnet56 for <data-root>/pretrained/cifar10_resnet/resnet<D>-*.th "
             "(default: train one first into <out>/teacher)")
    add("--teacher-epochs", type=positive_int, default=None,
        help="without --teacher: the teacher's epochs (default: train_teacher.py's)")
    add("--method", choices=list(METHODS), default="dfad",
        help="dfad: generated images; noise: Gaussian-noise inputs; real: KD on real training images; labels: "
             "the student alone on real labels (default: %(default)s)")
    add("--student-ratio", type=positive_float, default=0.2,
        help="the student's parameters as a share of the teacher's (the seed: 0.1 and 0.2) (default: %(default)s)")
    add("--iters-per-epoch", type=positive_int, default=50, help="iterations per epoch (default: %(default)s)")
    add("--ks", type=positive_int, default=5, help="student steps per iteration (default: %(default)s)")
    add("--kg", type=positive_int, default=1, help="generator steps per iteration (default: %(default)s)")
    add("--lr-g", type=positive_float, default=1e-3, help="the generator's Adam learning rate (default: %(default)s)")
    add("--student-optimizer", choices=list(STUDENT_OPTIMIZERS), default="sgd",
        help="sgd: momentum 0.9, weight decay 5e-4 (DFAD's); adam: no weight decay (default: %(default)s)")
    add("--schedule", choices=list(SCHEDULES), default="cosine",
        help="both learning rates, per epoch; step: x0.1 at 30/60/80%% of the epochs (default: %(default)s)")
    add("--balance", type=non_negative_float, default=0.0,
        help="weight of a class-balance term in the generator's loss: it also maximises the entropy of the "
             "teacher's mean prediction over the batch (against mode collapse; --method dfad only; 0: DFAD as "
             "published) "
             "(default: %(default)s)")
    add("--bn-match", type=non_negative_float, default=0.0,
        help="weight of the teacher's BatchNorm statistics loss in the generator's loss: for every BatchNorm "
             "layer, ||batch mean - running mean|| + ||batch var - running var|| of its input on the generated "
             "batch (DeepInversion; Fang et al. 2022); --method dfad only; needs a teacher with BatchNorm; 0: off "
             "(default: %(default)s)")
    add("--nz", type=positive_int, default=256, help="generator latent size (default: %(default)s)")
    add("--ngf", type=positive_int, default=64, help="generator width (default: %(default)s)")
    add("--gen-output", choices=GENERATOR_OUTPUTS, default="batchnorm",
        help="pixels: tanh -> [0, 1] -> the teacher's normalisation; batchnorm: tanh -> BatchNorm without affine "
             "(DFAD's GeneratorA) (default: %(default)s)")
    _describe_presets(parser)
    return parser


def _describe_presets(parser: argparse.ArgumentParser) -> None:
    """'(default: X)' -> '(default: X; mnist: Y, cifar10: Z)' for every flag a preset sets."""
    for action in parser._actions:
        shown = {name: preset[action.dest] for name, preset in PRESETS.items() if action.dest in preset}
        if shown and action.help and "(default: %(default)s)" in action.help:
            per = ", ".join(f"--dataset {name}: {value:g}" if isinstance(value, float) else f"--dataset {name}: {value}"
                            for name, value in shown.items())
            action.help = action.help.replace("(default: %(default)s)", f"(default: %(default)s; {per})")


def run_name(args) -> str:
    teacher = Path(str(args.teacher)).stem.split("-")[0].replace(":", "-") if args.teacher else "own"
    return (f"{args.dataset}_{args.method}_t{teacher}_r{args.student_ratio:g}_e{args.epochs}x{args.iters_per_epoch}"
            f"_seed{args.seed}")


def parse(argv=None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)         # the full parser: '--data real' is not an abbreviated --dataset
    parser.set_defaults(**PRESETS.get(known.dataset, {}))   # the data set's recipe; flags on the command line win
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.iters_per_epoch = min(args.epochs, 2), min(args.iters_per_epoch, 2)
        args.batch_size, args.ngf, args.nz = min(args.batch_size, 16), min(args.ngf, 8), min(args.nz, 16)
        args.teacher_epochs = 1
    if args.student_ratio > 1:
        raise UserError(f"--student-ratio must lie in (0, 1], got {args.student_ratio}")
    return args
