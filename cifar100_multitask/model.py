"""The multi-task CNN and its severity-weighted loss.

Backbone: `depth` stages of `convs_per_stage` x [Conv3x3-BN-ReLU] -> MaxPool(2) -> Dropout (the seed's
3 x [Conv-BN-ReLU] -> MaxPool -> Dropout is one stage), channels `width` doubling per stage, then
flattened (as the seed's Conv -> FC network); one linear head per label level ("fine" 100, "super" 20, "group" 9).

Severity loss. Two labels of one level meet at some level of the tree; their distance d is 0 for the
same label, 1 for two fine classes of one superclass, 2 for labels in one group, 3 across groups
(for the superclass head d is 0, 2 or 3; for the group head 0 or 3). A SEVERITY scheme maps d to a
weight S[y, j] >= 1 with S[y, y] = 1 ("linear": 1 + d, "exponential": 2 ** d, "none": 1). Each head's
loss on an example is its cross-entropy multiplied by the expected severity of its predicted
distribution p = softmax(logits):

    loss_head = CE(logits, y) * sum_j p_j S[y, j]        (gradients flow through both factors)

so a confident mistake far from the truth costs up to max(S) times its cross-entropy, one inside the
superclass less, and a correct confident prediction costs its plain CE. With S all ones the factor is
exactly 1 and the loss is plain cross-entropy. The training loss is the sum of the heads' losses."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common.errors import UserError
from common.models import ModelConfig
from cifar100_multitask.hierarchy_data import ancestors

LEVELS = ("fine", "super", "group")

SEVERITY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda distance: np.ones_like(distance, dtype=np.float64),
    "linear": lambda distance: 1.0 + distance,
    "exponential": lambda distance: 2.0 ** distance,
}


def tree_distance(parents: Sequence[np.ndarray], level: int) -> np.ndarray:
    """(K, K) distances between the labels of `level` (0 = fine): the level at which two labels
    first share an ancestor, len(parents) + 1 when they never do, 0 on the diagonal."""
    chain = ancestors(parents)                       # per fine class: its label at every level
    count = int(chain[level].max()) + 1
    depth = len(chain)
    distance = np.full((count, count), depth, dtype=np.int64)
    for above in range(depth - 1, level - 1, -1):    # coarsest first; finer levels overwrite
        labels = np.zeros(count, dtype=np.int64)
        labels[chain[level]] = chain[above]           # this level's label -> its ancestor at `above`
        same = labels[:, None] == labels[None, :]
        distance[same] = above
    np.fill_diagonal(distance, 0)
    return distance


def severity_matrix(parents: Sequence[np.ndarray], level: int, scheme: str) -> np.ndarray:
    """(K, K) float64 weights S[true, predicted] for one head, from the tree (never typed by hand)."""
    return SEVERITY[scheme](tree_distance(parents, level))


def severity_cross_entropy(logits: torch.Tensor, target: torch.Tensor, severity: torch.Tensor) -> torch.Tensor:
    """Per-example CE(logits, y) * E_{j ~ softmax(logits)}[S[y, j]]: logits (B, K), target (B,),
    severity (K, K). Returns (B,)."""
    log_p = F.log_softmax(logits.float(), dim=1)                     # (B, K)
    ce = -log_p.gather(1, target[:, None]).squeeze(1)                # (B,)
    expected = (log_p.exp() * severity[target]).sum(1)               # (B,)
    return ce * expected


@dataclass(frozen=True)
class MultiTaskConfig(ModelConfig):
    heads: tuple[str, ...] = LEVELS
    classes: tuple[int, ...] = (100, 20, 9)      # per head
    depth: int = 3                               # stages
    width: int = 64                              # channels of the first stage, doubled per stage
    convs_per_stage: int = 3
    dropout: float = 0.25
    image_size: int = 32
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)    # per-channel input normalisation (training images)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def describe(self) -> str:
        channels = "-".join(str(self.width * 2 ** s) for s in range(self.depth))
        return (f"CNN {self.depth}x[{self.convs_per_stage}x(Conv-BN-ReLU)-MaxPool-Dropout {self.dropout:g}] "
                f"channels {channels}, heads {'+'.join(self.heads)}")



def conv_stage(c_in: int, c_out: int, convs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2), nn.Dropout(dropout))


class MultiTaskNet(nn.Module):
    def __init__(self, config: MultiTaskConfig):
        super().__init__()
        self.config = config
        channels = [3] + [config.width * 2 ** s for s in range(config.depth)]
        self.backbone = nn.Sequential(*[conv_stage(a, b, config.convs_per_stage, config.dropout)
                                        for a, b in zip(channels[:-1], channels[1:])])
        side = config.image_size // 2 ** config.depth
        if side < 1:
            raise UserError(f"--depth {config.depth} halves a {config.image_size}-pixel image below one pixel; "
                            f"use at most {int(math.log2(config.image_size))} stages")
        features = channels[-1] * side * side
        self.heads = nn.ModuleDict({h: nn.Linear(features, k) for h, k in zip(config.heads, config.classes)})
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) uint8 or float in [0, 1] -> {head: logits (B, K_head)}."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        features = self.backbone((x - self.mean) / self.std).flatten(1)   # (B, C * side * side)
        return {name: head(features) for name, head in self.heads.items()}


class MultiTaskLoss(nn.Module):
    """Sum over the model's heads of the severity-weighted cross-entropy (mean over the batch)."""

    def __init__(self, parents: Sequence[np.ndarray], heads: Sequence[str], scheme: str):
        super().__init__()
        self.heads = tuple(heads)
        for head in self.heads:
            matrix = torch.tensor(severity_matrix(parents, LEVELS.index(head), scheme), dtype=torch.float32)
            self.register_buffer(f"severity_{head}", matrix)

    def per_head(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {h: severity_cross_entropy(logits[h], targets[h], getattr(self, f"severity_{h}")).mean()
                for h in self.heads}

    def forward(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(self.per_head(logits, targets).values())).sum()


def level_probabilities(logits: dict[str, torch.Tensor], fine_to: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each level's predicted distribution (B, K_level): a head's own softmax where the model has that
    head, else the fine distribution summed over each coarser label's fine classes (how the single-head
    model predicts superclass and group). `fine_to[level]` is (100,) the fine -> level map."""
    fine_p = F.softmax(logits["fine"].float(), dim=1)                          # (B, 100)
    out = {}
    for level, mapping in fine_to.items():
        if level in logits:
            out[level] = F.softmax(logits[level].float(), dim=1)
        else:
            count = int(mapping.max()) + 1
            out[level] = fine_p.new_zeros(len(fine_p), count).index_add_(1, mapping, fine_p)
    return out
