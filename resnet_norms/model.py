"""He et al. (2016)'s CIFAR ResNet of 6n+2 layers, with any normalisation of norms.NORMS.

    config = ResNetConfig(n=3, norm="bn", shortcut="A")        # ResNet-20: 269,722 parameters (10 classes)
    model = build_resnet(config)                               # model.config is the frozen config
    model = pretrained_resnet(read_published_resnet(path))     # the published CIFAR-10 ResNet-20/56 weights

Layout: a 3x3 conv of 16 filters, three stages of n basic blocks (two 3x3 convs each) with 16, 32 and 64
filters and stride 2 at the start of stages 2 and 3, global average pooling, a linear classifier:
6n + 2 weighted layers. Shortcuts where the shape changes: "A" is parameter-free (subsample by 2 and pad
the new channels with zeros, He et al.'s option A), "B" a strided 1x1 conv with a norm (option B).
dfad_kd imports this module for its ResNet teachers: the API is ResNetConfig (to_dict / from_dict /
describe), build_resnet, model_from_checkpoint and pretrained_resnet (the file itself is read by common.pretrained).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from common.models import ModelConfig, rebuild_model
from common.pretrained import PublishedResNet
from resnet_norms.norms import NORMS, make_norm

SHORTCUTS = ("A", "B")


@dataclass(frozen=True)
class ResNetConfig(ModelConfig):
    n: int = 3                                  # blocks per stage: depth 6n + 2 (3: ResNet-20, 9: ResNet-56)
    norm: str = "bn"
    shortcut: str = "A"
    groups: int = 8                             # GroupNorm's groups (must divide every width)
    widths: tuple[int, int, int] = (16, 32, 64)
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32                        # input height = width; the two stride-2 stages halve it

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.n < 1:
            raise UserError(f"--n must be >= 1 (depth 6n+2), got {self.n}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm '{self.norm}'; choose one of {', '.join(NORMS)}")
        if self.shortcut not in SHORTCUTS:
            raise UserError(f"unknown shortcut '{self.shortcut}'; choose A or B")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise UserError(f"widths needs three positive stage widths, got {list(self.widths)}")
        if self.norm == "gn" and any(w % self.groups for w in self.widths):
            raise UserError(f"--groups {self.groups} does not divide the stage widths "
                            f"{'/'.join(map(str, self.widths))}; pick a common divisor (e.g. 1, 2, 4, 8)")
        if self.image_size < 4 or self.image_size % 4:
            raise UserError(f"--image-size {self.image_size} cannot be halved by the two stride-2 stages; "
                            f"use a multiple of 4 (e.g. 32, 64, 128, 256)")

    @property
    def depth(self) -> int:
        return 6 * self.n + 2

    def describe(self) -> str:
        groups = f" G={self.groups}" if self.norm == "gn" else ""
        widths = "" if self.widths == (16, 32, 64) else f" widths {'/'.join(map(str, self.widths))}"
        return f"ResNet-{self.depth} {self.norm}{groups} shortcut {self.shortcut}{widths}"



class ShortcutA(nn.Module):
    """Parameter-free: take every stride-th pixel and zero-pad the new channels on both sides."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.front, self.back = stride, (c_out - c_in) // 2, c_out - c_in - (c_out - c_in) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))


class BasicBlock(nn.Module):
    """relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, config: ResNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(config.norm, c_out, config.groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = make_norm(config.norm, c_out, config.groups)
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif config.shortcut == "A":
            self.shortcut = ShortcutA(c_in, c_out, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          make_norm(config.norm, c_out, config.groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        w1 = config.widths[0]
        self.stem_conv = nn.Conv2d(config.in_channels, w1, 3, padding=1, bias=False)
        self.stem_norm = make_norm(config.norm, w1, config.groups)
        stages, c_in = [], w1
        for index, width in enumerate(config.widths):
            blocks = []
            for j in range(config.n):
                blocks.append(BasicBlock(c_in, width, 2 if (index > 0 and j == 0) else 1, config))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, config.num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 64, H/4, W/4)
        return self.stages(torch.relu(self.stem_norm(self.stem_conv(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:      # -> (B, 64)
        return self.feature_maps(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:       # -> (B, num_classes)
        return self.head(self.features(x))

    def gradcam_layer(self) -> nn.Module:
        """The last stage (its output feeds the pooling): Grad-CAM's target layer."""
        return self.stages[-1]


def build_resnet(config: ResNetConfig | None = None, **fields) -> CifarResNet:
    """build_resnet(ResNetConfig(n=9)) or build_resnet(n=9, norm="gn")."""
    return CifarResNet(config if config is not None else ResNetConfig(**fields))


def model_from_checkpoint(state: dict, source: Path | str = "the checkpoint") -> CifarResNet:
    """The model of a checkpoint written by resnet_norms/train.py (its "model_config" and "model")."""
    return rebuild_model(state, lambda config: build_resnet(ResNetConfig.from_dict(config)), source,
                         "resnet_norms/train.py")


def pretrained_resnet(published: PublishedResNet) -> CifarResNet:
    """A published CIFAR-10 ResNet (common.pretrained.read_published_resnet) as this folder's model: norm bn,
    shortcut A, the file's depth; in eval mode. Inputs: [0, 1] images normalised with published.mean / std."""
    config = ResNetConfig(n=published.n, norm="bn", shortcut="A", in_channels=published.in_channels,
                          num_classes=published.num_classes)
    return published.load_into(build_resnet(config))
