"""The teacher a run distils (a file, a published ResNet, or one trained first) and the student built from it."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from common.distributed import DistInfo
from common.errors import UserError
from common.rundir import CHECKPOINT
from dfad_kd import train_teacher
from dfad_kd.data import DATASETS
from dfad_kd.model import Teacher, build, load_teacher, student_config


def resolve_teacher_path(spec: str, data_root: Path) -> Path:
    """'pretrained:resnet20' -> <data-root>/pretrained/cifar10_resnet/resnet20-*.th; a path otherwise."""
    found = re.fullmatch(r"pretrained:(resnet\d+)", spec)
    if not found:
        return Path(spec).expanduser().resolve()
    folder = data_root / "pretrained" / "cifar10_resnet"
    files = sorted(folder.glob(f"{found.group(1)}-*.th"))
    if not files:
        raise UserError(f"--teacher {spec}: no {found.group(1)}-*.th in {folder}; point --data-root at the folder "
                        f"holding pretrained/cifar10_resnet, or give the file's path")
    return files[0]


def obtain_teacher(args, info: DistInfo) -> Teacher:
    """--teacher's file, or a teacher trained first (train_teacher.py's loop, by every torchrun process) into
    <out>/teacher/."""
    if args.teacher:
        teacher = load_teacher(resolve_teacher_path(args.teacher, args.data_root))
    else:
        argv = ["--dataset", args.dataset, "--seed", str(args.seed), "--data", args.data, "--data-root",
                str(args.data_root), "--out", str(args.out / "teacher"), "--device", args.device, "--threads",
                str(args.threads), "--wandb", "off"]
        argv += ["--epochs", str(args.teacher_epochs)] if args.teacher_epochs else []
        argv += ["--smoke"] if args.smoke else []
        done = (args.out / "teacher" / "summary.json").exists() and args.resume
        argv += ["--resume"] if args.resume else ["--overwrite"]
        if not done:
            print(f"no --teacher: training one first into {args.out / 'teacher'}")
            train_teacher.train(train_teacher.parse(argv), info)
        teacher = load_teacher(args.out / "teacher" / CHECKPOINT)
    teacher.model.to(info.device)
    return teacher


def check_fits(teacher: Teacher, dataset: str, path: str) -> None:
    """The teacher takes this data set's images and classes (checked before any data are read)."""
    c, h, _ = DATASETS[dataset][3]
    config = teacher.config
    have = (getattr(config, "in_channels", c), getattr(config, "num_classes", 10), getattr(config, "image_size", h))
    if have != (c, 10, h):
        raise UserError(f"--teacher {path} takes {have[0]}-channel {have[2]}px images and {have[1]} classes; "
                        f"{dataset} has {c}-channel {h}px images and 10 classes: pick the teacher of this --dataset")


def make_student(args, teacher: Teacher, device) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    config = student_config(teacher.family, teacher.config, args.student_ratio)
    return build(teacher.family, config).to(device)
