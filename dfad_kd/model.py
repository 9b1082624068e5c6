"""dfad_kd's networks: the teacher/student families, the DCGAN-style generator, the MAE loss.

    family, config = "lenet5", LeNet5Config()                  # 61,706 parameters
    student = student_config("lenet5", config, ratio=0.2)      # the same family at ~20% of the parameters
    model = build(family, config)                              # model.family, model.config
    generator = Generator(GeneratorConfig(channels=1, image_size=28, mean=(0.1307,), std=(0.3081,)))

Families (FAMILIES): "lenet5" (LeNet-5 for 28x28 MNIST, defined here), "resnet" (He et al.'s 6n+2 CIFAR
ResNet: resnet_norms.model, also the pretrained CIFAR-10 ResNet-20/56), "resnet34" (the ResNet-34 layout of
kd_cifar10.model.FlexibleCNN, the seed's teacher; its students are that module's ResNet-18 layout).
A checkpoint stores {"model_config": {"family", "input_mean", "input_std", **config fields}, "model": ...}:
the family and the input normalisation the model expects travel with the weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import load_checkpoint
from common.errors import UserError
from common.formats import is_real
from common.models import ModelConfig, count_parameters, rebuild_model
from common.pretrained import is_published, published_resnet
from kd_cifar10.model import CNNConfig, FlexibleCNN
from resnet_norms.model import ResNetConfig, build_resnet, pretrained_resnet


# LeNet-5 -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LeNet5Config(ModelConfig):
    channels: tuple[int, int] = (6, 16)       # the two 5x5 convolutions
    hidden: tuple[int, int] = (120, 84)       # the two hidden fully connected layers
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if min(self.channels + self.hidden) < 1 or len(self.channels) != 2 or len(self.hidden) != 2:
            raise UserError(f"LeNet-5 needs two conv widths and two hidden sizes >= 1, got {self.channels} "
                            f"{self.hidden}")
        if self.image_size < 12:
            raise UserError(f"LeNet-5 needs images of at least 12 pixels, got {self.image_size}")

    def describe(self) -> str:
        if (self.channels, self.hidden) == ((6, 16), (120, 84)):
            return "LeNet-5"
        return f"LeNet-5 conv {self.channels[0]}/{self.channels[1]} fc {self.hidden[0]}/{self.hidden[1]}"


class LeNet5(nn.Module):
    """conv5x5 (pad 2) -> ReLU -> max-pool 2 -> conv5x5 -> ReLU -> max-pool 2 -> fc -> ReLU -> fc -> ReLU -> fc."""

    def __init__(self, config: LeNet5Config):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        h1, h2 = config.hidden
        side = (config.image_size // 2 - 4) // 2          # 28 -> 14 -> 10 -> 5
        self.features = nn.Sequential(nn.Conv2d(config.in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, h1), nn.ReLU(),
                                        nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, config.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))


# families ------------------------------------------------------------------------------------------------

def _scale(value: int, s: float) -> int:
    return max(1, int(round(value * s)))


@dataclass(frozen=True)
class Family:
    config_cls: type
    build: Callable[[ModelConfig], nn.Module]
    shrink: Callable[[ModelConfig, float], ModelConfig]   # the teacher's config with widths scaled by s
    describe: str


FAMILIES: dict[str, Family] = {
    "lenet5": Family(LeNet5Config, LeNet5, lambda c, s: dataclasses.replace(
        c, channels=tuple(_scale(v, s) for v in c.channels), hidden=tuple(_scale(v, s) for v in c.hidden)),
        "LeNet-5 (MNIST)"),
    "resnet": Family(ResNetConfig, build_resnet, lambda c, s: dataclasses.replace(
        c, widths=tuple(_scale(w, s) for w in c.widths)), "6n+2 CIFAR ResNet (resnet_norms)"),
    # the seed's ResNet-34 -> ResNet-18 students (Fang et al.'s pair), widths scaled
    "resnet34": Family(CNNConfig, FlexibleCNN, lambda c, s: dataclasses.replace(
        c, layers=(2, 2, 2, 2), width=_scale(c.width, s)), "ResNet-34 / ResNet-18 layout (kd_cifar10)"),
}
RESNET34 = CNNConfig(layers=(3, 4, 6, 3), width=64)


def _check_family(family: str) -> Family:
    if family not in FAMILIES:
        raise UserError(f"unknown model family '{family}'; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def build(family: str, config: ModelConfig) -> nn.Module:
    """The family's model for `config`, tagged with .family (and .config, which every family sets)."""
    model = _check_family(family).build(config)
    model.family = family
    return model


def parameter_count(family: str, config: ModelConfig) -> int:
    """Parameters of build(family, config), counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_parameters(_check_family(family).build(config))


def student_config(family: str, teacher: ModelConfig, ratio: float) -> ModelConfig:
    """The family's config whose parameter count is closest to `ratio` x the teacher's, found by scaling
    every width by one factor s in (0, 1] (and, for ResNet-34, taking ResNet-18's block counts)."""
    if not 0 < ratio <= 1:
        raise UserError(f"--student-ratio must lie in (0, 1], got {ratio}")
    fam, target = _check_family(family), ratio * parameter_count(family, teacher)
    lo, hi = 0.0, 1.0                   # the count grows with s: bisect to the two configs around the target
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if parameter_count(family, fam.shrink(teacher, mid)) < target else (lo, mid)
    candidates = {fam.shrink(teacher, max(lo, 1e-3)), fam.shrink(teacher, hi)}
    return min(candidates, key=lambda c: (abs(parameter_count(family, c) - target), parameter_count(family, c)))


def model_config_dict(model: nn.Module, mean, std) -> dict:
    """What a checkpoint stores to rebuild `model`: family, the input normalisation, the config's fields."""
    return {"family": model.family, "input_mean": list(mean), "input_std": list(std), **model.config.to_dict()}


def build_from_config(config: dict) -> nn.Module:
    config = dict(config)
    family = _check_family(config.pop("family", None))
    config.pop("input_mean", None)
    config.pop("input_std", None)
    model = family.build(family.config_cls.from_dict(config))
    model.family = next(k for k, v in FAMILIES.items() if v is family)
    return model


def model_from_checkpoint(state: dict, source: Path | str = "the checkpoint") -> nn.Module:
    return rebuild_model(state, build_from_config, source, "dfad_kd")


@dataclass
class Teacher:
    model: nn.Module
    family: str
    mean: tuple[float, ...]          # the input normalisation it expects (of [0, 1] pixels)
    std: tuple[float, ...]
    source: str                      # where it came from, in words

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def load_teacher(path: Path) -> Teacher:
    """A teacher file: a dfad_kd checkpoint (train_teacher.py's, or train.py's student) or one of the published
    CIFAR-10 ResNets ({'state_dict', 'best_prec1'}), frozen in eval mode. A file that is not one of them, is
    damaged, or holds another architecture is one UserError."""
    path = Path(path).expanduser().resolve()
    state = load_checkpoint(path)
    if is_published(state):
        published = published_resnet(state, path)
        model = pretrained_resnet(published)
        model.family = "resnet"
        teacher = Teacher(model, "resnet", published.mean, published.std,
                          f"pretrained CIFAR-10 ResNet-{published.depth} ({path.name}, published top-1 "
                          f"{published.best_prec1:.2f}%)")
    else:
        model = model_from_checkpoint(state, path)
        config = state["model_config"]
        mean, std = config.get("input_mean"), config.get("input_std")
        channels = getattr(model.config, "in_channels", None)
        if not _normalisation(mean, std, channels):
            raise UserError(f"{path} does not record the input normalisation its model expects (input_mean / "
                            f"input_std: a finite mean and a positive std per input channel); train the teacher "
                            f"with dfad_kd/train_teacher.py")
        teacher = Teacher(model, model.family, tuple(mean), tuple(std), f"{model.config.describe()} from {path}")
    return freeze(teacher)


def _normalisation(mean, std, channels: int | None) -> bool:
    """Whether a checkpoint's input_mean / input_std are one finite mean and one positive std per input channel."""
    def numbers(values) -> bool:
        return isinstance(values, list) and bool(values) and all(
            is_real(v) and math.isfinite(v) for v in values)
    return (numbers(mean) and numbers(std) and len(mean) == len(std) and min(std) > 0
            and (channels is None or len(mean) == channels))


def freeze(teacher: Teacher) -> Teacher:
    """Eval mode for good (its BatchNorm statistics never move) and no gradients for its parameters."""
    teacher.model.eval()
    teacher.model.train = lambda mode=True: teacher.model      # a stray .train() cannot unfreeze it
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    return teacher


# the generator -------------------------------------------------------------------------------------------

GENERATOR_OUTPUTS = ("pixels", "batchnorm")


@dataclass(frozen=True)
class GeneratorConfig(ModelConfig):
    nz: int = 256                       # latent size
    ngf: int = 64                       # width of the last conv block (the first two have 2 * ngf)
    channels: int = 1
    image_size: int = 28                # a multiple of 4: two x2 upsamplings from image_size / 4
    mean: tuple[float, ...] = (0.5,)    # the teacher's input normalisation
    std: tuple[float, ...] = (0.5,)
    output: str = "pixels"              # pixels: tanh -> [0, 1] -> (x - mean) / std; batchnorm: tanh -> BN

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.image_size % 4 or self.image_size < 4:
            raise UserError(f"the generator needs an image size divisible by 4, got {self.image_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UserError(f"the generator's mean/std need {self.channels} values each")
        if self.output not in GENERATOR_OUTPUTS:
            raise UserError(f"unknown generator output '{self.output}'; choose one of {', '.join(GENERATOR_OUTPUTS)}")

    def describe(self) -> str:
        return f"DCGAN generator nz {self.nz} ngf {self.ngf} -> {self.channels}x{self.image_size}x{self.image_size}"


class Generator(nn.Module):
    """z (B, nz) -> linear -> (2ngf, s/4, s/4) -> BN -> [x2 up, conv3x3, BN, LeakyReLU] with 2ngf then ngf
    channels -> conv3x3 to the image channels -> tanh -> the teacher's input space (DFAD's GeneratorA)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, ngf, self.init = config, config.ngf, config.image_size // 4
        self.project = nn.Linear(c.nz, 2 * ngf * self.init ** 2)
        self.blocks = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1), nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * ngf, ngf, 3, padding=1), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, c.channels, 3, padding=1), nn.Tanh())
        self.out_norm = nn.BatchNorm2d(c.channels, affine=False) if c.output == "batchnorm" else nn.Identity()
        self.register_buffer("mean", torch.tensor(c.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(c.std).view(1, -1, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:     # (B, nz) -> (B, C, H, W), normalised
        x = self.project(z).view(len(z), -1, self.init, self.init)
        x = self.blocks(x)                                  # in [-1, 1]
        if self.config.output == "batchnorm":
            return self.out_norm(x)
        return ((x + 1) / 2 - self.mean) / self.std


def mae(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The mean absolute error between the logits (B, K): DFAD's loss, minimised by the student and
    maximised by the generator."""
    return F.l1_loss(student_logits, teacher_logits)


@contextlib.contextmanager
def held(module: nn.Module) -> Iterator[nn.Module]:
    """`module` used but not trained: no gradients for its parameters and its buffers (BatchNorm running
    statistics and counters) restored afterwards, while it keeps its mode (batch statistics in train mode)."""
    buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
