"""FlexibleMLP and FlexibleCNN (ResNet family, CIFAR variant), each with its config dataclass, and the
registries train.py and the distillation code build models from.

FlexibleCNN(CNNConfig()) is ResNet-18 for 32x32 inputs (3x3 stem, no max-pool; 11,173,962 parameters
at width 64). `use_skip=False` gives the same network with no shortcut additions: the identity adds and
the 1x1 projection shortcuts (which only exist to make the addition fit) are both gone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from common.errors import UserError
from common.models import ModelConfig, rebuild_model
from kd_cifar10.transfer import TransferConfig, TransferResNet18

# norm name -> (2-D factory for conv features, 1-D factory for MLP features); each takes a channel count
NORMS: dict[str, tuple[Callable[[int], nn.Module], Callable[[int], nn.Module]]] = {
    "batch": (nn.BatchNorm2d, nn.BatchNorm1d),
    "group": (lambda c: nn.GroupNorm(min(32, c // 2) or 1, c), lambda c: nn.GroupNorm(min(32, c // 2) or 1, c)),
    "layer": (lambda c: nn.GroupNorm(1, c), nn.LayerNorm),
    "none": (lambda c: nn.Identity(), lambda c: nn.Identity()),
}


def norm2d(name: str, channels: int) -> nn.Module:
    return NORMS[name][0](channels)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """out = relu(F(x) + shortcut(x)) with skips, relu(F(x)) without; subclasses build F."""
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, norm: str, use_skip: bool):
        super().__init__()
        c_out = planes * self.expansion
        self.residual = self.make_residual(c_in, planes, c_out, stride, norm)
        self.shortcut = _shortcut(c_in, c_out, stride, norm) if use_skip else None

    @staticmethod
    def make_residual(c_in: int, planes: int, c_out: int, stride: int, norm: str) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        out = self.residual(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return torch.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34's block)."""

    @staticmethod
    def make_residual(c_in, planes, c_out, stride, norm):
        return nn.Sequential(conv3x3(c_in, planes, stride), norm2d(norm, planes), nn.ReLU(inplace=True),
                             conv3x3(planes, c_out), norm2d(norm, c_out))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50's block)."""
    expansion = 4

    @staticmethod
    def make_residual(c_in, planes, c_out, stride, norm):
        return nn.Sequential(
            nn.Conv2d(c_in, planes, 1, bias=False), norm2d(norm, planes), nn.ReLU(inplace=True),
            conv3x3(planes, planes, stride), norm2d(norm, planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, c_out, 1, bias=False), norm2d(norm, c_out))


def _shortcut(c_in: int, c_out: int, stride: int, norm: str) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 projection (ResNet's option B)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm2d(norm, c_out))


BLOCKS: dict[str, type[ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class CNNConfig(ModelConfig):
    layers: tuple[int, ...] = (2, 2, 2, 2)   # blocks per stage; (2,2,2,2) basic = ResNet-18
    block: str = "basic"
    use_skip: bool = True
    norm: str = "batch"
    width: int = 64                          # stage widths width * (1, 2, 4, 8)
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        _check_choice("block", self.block, BLOCKS)
        _check_choice("norm", self.norm, NORMS)
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise UserError(f"--layers needs four block counts >= 1 (one per stage), got {list(self.layers)}")

    def describe(self) -> str:
        skip = "skips" if self.use_skip else "no skips"
        return f"CNN {self.block} {'-'.join(map(str, self.layers))} w{self.width} {self.norm}-norm {skip}"


class FlexibleCNN(nn.Module):
    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        block = BLOCKS[config.block]
        self.stem = nn.Sequential(conv3x3(config.in_channels, config.width), norm2d(config.norm, config.width),
                                  nn.ReLU(inplace=True))
        stages, c_in = [], config.width
        for index, count in enumerate(config.layers):
            planes = config.width * 2 ** index
            blocks = []
            for j in range(count):
                stride = 2 if (index > 0 and j == 0) else 1
                blocks.append(block(c_in, planes, stride, config.norm, config.use_skip))
                c_in = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, config.num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 8w*expansion)
        x = self.stages(self.stem(x))                        # (B, 8w*e, H/8, W/8)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C, H, W) -> (B, num_classes)
        return self.head(self.features(x))

    def layer_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """The parameters by depth, input first: stem, every block, head (for gradient analysis)."""
        groups = [("stem", list(self.stem.parameters()))]
        for s, stage in enumerate(self.stages):
            groups += [(f"s{s + 1}b{b + 1}", list(blk.parameters())) for b, blk in enumerate(stage)]
        return groups + [("head", list(self.head.parameters()))]


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    depth: int = 4                # hidden layers (or residual blocks when use_skip)
    width: int = 256
    use_skip: bool = False
    norm: str = "batch"
    in_features: int = 784
    num_classes: int = 10

    def __post_init__(self):
        _check_choice("norm", self.norm, NORMS)
        if self.depth < 1 or self.width < 1:
            raise UserError(f"--depth and --width must be >= 1, got {self.depth} and {self.width}")

    def describe(self) -> str:
        return f"MLP {self.depth}x{self.width} {self.norm}-norm {'skips' if self.use_skip else 'no skips'}"


class MLPLayer(nn.Module):
    """Pre-activation layer: norm -> ReLU -> Linear; with a skip, x + that (He et al. 2016's ordering,
    so the identity path stays clean and a deep residual stack does not blow up)."""

    def __init__(self, width: int, norm: str, use_skip: bool):
        super().__init__()
        self.body = nn.Sequential(NORMS[norm][1](width), nn.ReLU(), nn.Linear(width, width))
        self.use_skip = use_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, width) -> (B, width)
        out = self.body(x)
        return x + out if self.use_skip else out


class FlexibleMLP(nn.Module):
    """Flatten -> Linear(in, width) -> (depth - 1) pre-activation layers (residual when use_skip)
    -> norm -> ReLU -> Linear head. `depth` counts the hidden Linear layers."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        c = config
        self.stem = nn.Linear(c.in_features, c.width)
        self.layers = nn.ModuleList([MLPLayer(c.width, c.norm, c.use_skip) for _ in range(c.depth - 1)])
        self.final = nn.Sequential(NORMS[c.norm][1](c.width), nn.ReLU())
        self.head = nn.Linear(c.width, c.num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) or (B, F) -> (B, width)
        x = self.stem(torch.flatten(x, 1))
        for layer in self.layers:
            x = layer(x)
        return self.final(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # -> (B, num_classes)
        return self.head(self.features(x))

    def layer_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        return [("fc1", list(self.stem.parameters()))] + \
            [(f"fc{i + 2}", list(layer.parameters())) for i, layer in enumerate(self.layers)] + \
            [("head", [*self.final.parameters(), *self.head.parameters()])]


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, He (fan-in) for linears, zero biases: the same for skip and no-skip."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


def _check_choice(what: str, value: str, registry: dict) -> None:
    if value not in registry:
        raise UserError(f"unknown {what} '{value}'; choose one of {', '.join(registry)}")


MODELS: dict[str, tuple[type, type[nn.Module]]] = {"mlp": (MLPConfig, FlexibleMLP), "cnn": (CNNConfig, FlexibleCNN)}


def build_model(kind: str, **config) -> nn.Module:
    """build_model("cnn", layers=(1, 1, 1, 1), width=16) -> FlexibleCNN; the config is `model.config`."""
    _check_choice("model", kind, MODELS)
    config_cls, model_cls = MODELS[kind]
    return model_cls(config_cls(**config))


def model_config(model: nn.Module) -> dict:
    """What a checkpoint stores to rebuild `model`: {"kind": ..., **config fields}."""
    kind = getattr(model, "kind", None) or next(k for k, (_, cls) in MODELS.items() if isinstance(model, cls))
    return {"kind": kind, **model.config.to_dict()}


def _build_transfer(config: dict) -> nn.Module:
    return TransferResNet18(TransferConfig.from_dict(config))


# every kind a checkpoint may hold: MODELS plus the torchvision ResNet-18 used for transfer learning
CHECKPOINT_KINDS: dict[str, Callable[[dict], nn.Module]] = {
    **{kind: (lambda config, kind=kind: MODELS[kind][1](MODELS[kind][0].from_dict(config))) for kind in MODELS},
    "tv_resnet18": _build_transfer,
}


def build_from_config(config: dict) -> nn.Module:
    """A model from model_config(model)'s dict: {"kind": ..., **config fields}."""
    config = dict(config)
    kind = config.pop("kind", None)
    _check_choice("model kind in the checkpoint", kind, CHECKPOINT_KINDS)
    return CHECKPOINT_KINDS[kind](config)


def model_from_checkpoint(state: dict, source: str = "the checkpoint") -> nn.Module:
    """Rebuild the model of a checkpoint written by train.py or distill.py ("model_config" and "model")."""
    return rebuild_model(state, build_from_config, source, "kd_cifar10")
