"""Transfer learning: torchvision's ResNet-18 with pre-trained weights and a new 10-way head.

The 32x32 inputs are upsampled bilinearly to `input_size` (224 by default) inside the model and the
ImageNet stem (7x7 stride-2 conv + max-pool) is kept, so the pre-trained filters see objects at about
the scale they were trained on; a smaller input_size trades accuracy for speed (on 32x32 the stem
leaves a 1x1 map after layer4). Weights come from the torch hub cache or a download
(`--pretrained imagenet`), or from a file holding a torchvision resnet18 state_dict (`--pretrained PATH`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common.checkpoint import load_checkpoint
from common.download import DownloadUnavailable, fetch, reachable
from common.errors import UserError
from common.formats import given_file
from common.models import ModelConfig


def _train_everything(model: "TransferResNet18") -> None:
    for p in model.parameters():
        p.requires_grad_(True)


def _train_head_only(model: "TransferResNet18") -> None:
    for name, p in model.net.named_parameters():
        p.requires_grad_(name.startswith("fc."))


# --finetune: which parameters train (a frozen backbone also keeps its BatchNorm statistics fixed)
FINETUNE: dict[str, Callable[["TransferResNet18"], None]] = {"full": _train_everything, "frozen": _train_head_only}


@dataclass(frozen=True)
class TransferConfig(ModelConfig):
    num_classes: int = 10
    input_size: int = 224
    finetune: str = "full"

    def __post_init__(self):
        if self.finetune not in FINETUNE:
            raise UserError(f"unknown --finetune {self.finetune}; choose one of {', '.join(FINETUNE)}")

    def describe(self) -> str:
        return f"torchvision ResNet-18 ({self.finetune} fine-tune, inputs at {self.input_size}px)"


class TransferResNet18(nn.Module):
    kind = "tv_resnet18"

    def __init__(self, config: TransferConfig):
        super().__init__()
        import torchvision   # here, not at the top: about a second to import, for the transfer runs alone

        self.config = config
        self.net = torchvision.models.resnet18(weights=None)
        self.net.fc = nn.Linear(self.net.fc.in_features, config.num_classes)
        FINETUNE[config.finetune](self)

    @property
    def frozen(self) -> bool:
        return self.config.finetune == "frozen"

    def train(self, mode: bool = True) -> "TransferResNet18":
        super().train(mode)
        if self.frozen:  # the frozen backbone's BatchNorm layers keep their pre-trained statistics
            for name, module in self.net.named_children():
                module.train(mode and name == "fc")
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        if x.shape[1] == 1:                              # grey (MNIST): the same image in R, G and B
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.config.input_size:
            x = nn.functional.interpolate(x, size=self.config.input_size, mode="bilinear", align_corners=False)
        return self.net(x)                               # (B, 3, S, S) -> (B, num_classes)

    def layer_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        n = self.net
        groups = [("stem", [*n.conv1.parameters(), *n.bn1.parameters()])]
        for s in range(1, 5):
            groups += [(f"s{s}b{b + 1}", list(blk.parameters())) for b, blk in enumerate(getattr(n, f"layer{s}"))]
        return groups + [("head", list(n.fc.parameters()))]

    def load_backbone(self, state_dict: dict, where: str) -> None:
        """Load a torchvision resnet18 state_dict, all but its classifier (fc.*)."""
        backbone = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        missing, unexpected = self.net.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise UserError(f"{where} is not a torchvision resnet18 state_dict (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}); save one with torch.save(model.state_dict(), PATH)")


def imagenet_weights() -> tuple[str, Path]:
    """The URL of torchvision's IMAGENET1K_V1 ResNet-18 weights and where the torch hub caches them."""
    from torchvision.models import ResNet18_Weights   # torchvision for the transfer runs alone (see above)

    url = ResNet18_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def imagenet_available() -> bool:
    """In the torch hub cache, or downloadable from here."""
    url, cached = imagenet_weights()
    return cached.exists() or reachable(url)


def imagenet_state_dict() -> dict:
    """torchvision's IMAGENET1K_V1 ResNet-18 weights from the torch hub cache, downloaded when online."""
    url, cached = imagenet_weights()
    if not cached.exists():
        try:
            fetch([url], lambda: torch.hub.load_state_dict_from_url(url, progress=False),
                  lambda: print(f"downloading ImageNet ResNet-18 weights into {cached.parent} ..."))
        except DownloadUnavailable as why:
            raise UserError(f"ImageNet ResNet-18 weights are not in the torch hub cache ({cached}) and cannot be "
                            f"downloaded ({why}): run once online, copy {cached.name} there, or pass "
                            f"--pretrained PATH to a torchvision resnet18 state_dict") from None
    return load_checkpoint(cached)


def file_state_dict(path: Path) -> dict:
    """A torchvision resnet18 state_dict saved with torch.save, bare or under "model"/"state_dict"."""
    state = load_checkpoint(path)
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def pretrained_source(spec: str) -> tuple[str, Callable[[], dict] | None]:
    """--pretrained none | imagenet | PATH -> (label for the report, loader of the state_dict)."""
    if spec == "none":
        return "none (random init)", None
    if spec == "imagenet":
        return "ImageNet (torchvision IMAGENET1K_V1)", imagenet_state_dict
    path = given_file(spec, "--pretrained", "use none, imagenet, or the path of a torchvision resnet18 "
                      "state_dict").resolve()
    return f"file {path.name}", lambda: file_state_dict(path)


def build_transfer_model(spec: str, finetune: str, num_classes: int, input_size: int) -> tuple[TransferResNet18, str]:
    label, load = pretrained_source(spec)
    model = TransferResNet18(TransferConfig(num_classes, input_size, finetune))
    if load is not None:
        model.load_backbone(load(), spec)
    return model, label
