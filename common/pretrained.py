"""The published CIFAR-10 ResNets: one reader for every folder that uses them (resnet_norms, kd_cifar10, dfad_kd).

He et al. (2016)'s 6n+2-layer CIFAR ResNets with option-A shortcuts and BatchNorm, saved as
torch.save({'state_dict', 'best_prec1'}) with keys `module.conv1.weight`, `module.layer2.0.bn1.weight`,
`module.linear.bias` (akamaster/pytorch_resnet_cifar10's layout; ResNet-20 and ResNet-56 in
../shared/data/pretrained/cifar10_resnet). Their inputs are [0, 1] pixels normalised with PRETRAINED_MEAN/STD.

    published = read_published_resnet(path)        # checked; keys renamed to resnet_norms.model.CifarResNet's
    model = resnet_norms.model.pretrained_resnet(published)    # published.load_into(the folder's own model)

A missing, corrupt or other-architecture file is one UserError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from common.checkpoint import check_finite, torch_load
from common.errors import UserError

# the published ResNets' input normalisation (inputs in [0, 1] first)
PRETRAINED_MEAN = (0.485, 0.456, 0.406)
PRETRAINED_STD = (0.229, 0.224, 0.225)

_RENAMES = [(r"^conv1\.", "stem_conv."), (r"^bn1\.", "stem_norm."), (r"^linear\.", "head.")]


def map_pretrained_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the published checkpoint's keys (`module.layer2.0.bn1.weight`) to our CIFAR ResNet's
    (`stages.1.0.norm1.weight`). Unknown keys are kept as they are, so load_into names them."""
    mapped = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        block = re.match(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.*)$", key)
        if block:
            stage, index, kind, which, rest = block.groups()
            key = f"stages.{int(stage) - 1}.{index}.{'conv' if kind == 'conv' else 'norm'}{which}.{rest}"
        else:
            for pattern, new in _RENAMES:
                key = re.sub(pattern, new, key)
        mapped[key] = value
    return mapped


@dataclass(frozen=True)
class PublishedResNet:
    """One published file: its weights under our key names and what our model needs to take them."""
    state_dict: dict[str, torch.Tensor]
    n: int                                  # blocks per stage: depth 6n + 2
    in_channels: int
    num_classes: int
    best_prec1: float                       # the top-1 accuracy (%) the file records; NaN when absent
    path: Path
    mean: tuple[float, ...] = PRETRAINED_MEAN
    std: tuple[float, ...] = PRETRAINED_STD

    @property
    def depth(self) -> int:
        return 6 * self.n + 2

    def load_into(self, model: nn.Module) -> nn.Module:
        """`model` (an option-A BatchNorm CIFAR ResNet of this depth) holding these weights, in eval mode. Keys
        missing, unexpected or of the wrong shape are one UserError."""
        expected, mapped = model.state_dict(), dict(self.state_dict)
        for key, value in expected.items():   # the published files carry no num_batches_tracked
            if key.endswith("num_batches_tracked") and key not in mapped:
                mapped[key] = torch.zeros_like(value)
        missing = sorted(set(expected) - set(mapped))
        extra = sorted(set(mapped) - set(expected))
        wrong = sorted(k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape)
        if missing or extra or wrong:
            what = "; ".join(f"{label} {keys[:3]}{' ...' if len(keys) > 3 else ''}" for label, keys in
                             (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if keys)
            described = model.config.describe() if hasattr(model, "config") else type(model).__name__
            raise UserError(f"{self.path} does not fit {described} (option-A CIFAR ResNet): {what}")
        model.load_state_dict(mapped)
        return model.eval()


def is_published(payload) -> bool:
    """A loaded file in the published layout ({'state_dict': ...}), not one of this project's checkpoints."""
    return isinstance(payload, dict) and "state_dict" in payload and "model_config" not in payload


def read_published_resnet(path: Path | str) -> PublishedResNet:
    """Read and check one published file (torch.load with weights_only=True)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"no pretrained checkpoint at {path}; see ../shared/data/README.md for where it lives")
    payload = torch_load(path, fix="fetch the file again")   # one line, never torch's advice to load unsafely
    return published_resnet(payload, path)


def published_resnet(payload, path: Path | str) -> PublishedResNet:
    """Check a published file already loaded (`payload`, read from `path`) and rename its keys."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state_dict of tensors; expected torch.save({{'state_dict': ...}})")
    check_finite(state, path, "fetch the file again")   # NaN weights: a damaged file (exit 2), not divergence
    mapped = map_pretrained_keys(state)
    blocks = {int(m.group(1)) for k in mapped if (m := re.match(r"^stages\.0\.(\d+)\.", k))}
    conv = mapped.get("stem_conv.weight")
    if not blocks or conv is None or conv.ndim != 4:
        raise UserError(f"{path} is not a CIFAR ResNet checkpoint (no conv1 / layer1 keys); "
                        f"expected the 6n+2 ResNet of ../shared/data/pretrained/cifar10_resnet")
    head = mapped.get("head.weight")
    return PublishedResNet(mapped, n=max(blocks) + 1, in_channels=conv.shape[1],
                           num_classes=head.shape[0] if head is not None else 10,
                           best_prec1=float(payload.get("best_prec1", float("nan"))), path=Path(path))
