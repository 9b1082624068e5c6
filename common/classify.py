"""Evaluation of image classifiers: test loss, accuracy and per-class accuracy in one host sync, correct
under torch.distributed (each rank a strided share); batched logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common import distributed
from common.training import autocast

EVAL_BATCH = 1000


def to_memory_format(x: torch.Tensor, device: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.startswith("cuda") else x


def evaluate_classifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, device) -> dict:
    """Test loss, accuracy and per-class accuracy; each rank takes a strided share of the set."""
    distributed.broadcast_buffers(model)   # every rank evaluates with rank 0's BatchNorm statistics
    x, y = distributed.shard(x), distributed.shard(y)
    sums = torch.zeros(2 + 2 * num_classes, device=device)     # loss, correct, per-class correct, per-class n
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast(device):
        for start in range(0, len(y), EVAL_BATCH):
            xb = to_memory_format(x[start:start + EVAL_BATCH].to(device, non_blocking=True), str(device))
            yb = y[start:start + EVAL_BATCH].to(device, non_blocking=True)
            logits = model(xb).float()                                      # (B, K)
            hit = (logits.argmax(1) == yb).float()                          # (B,)
            sums[0] += F.cross_entropy(logits, yb, reduction="sum")
            sums[1] += hit.sum()
            sums[2:2 + num_classes] += torch.bincount(yb, weights=hit, minlength=num_classes)
            sums[2 + num_classes:] += torch.bincount(yb, minlength=num_classes).float()
    model.train(was_training)
    sums = distributed.all_reduce_sum(sums).cpu()
    n = sums[2 + num_classes:]
    return {"test_loss": (sums[0] / n.sum()).item(), "test_acc": (sums[1] / n.sum()).item(),
            "per_class_acc": (sums[2:2 + num_classes] / n.clamp_min(1)).tolist()}


def predict_logits(model: torch.nn.Module, x: torch.Tensor, device) -> torch.Tensor:
    """The (fixed) teacher's logits for every row of x: (N, K) float32, on x's device."""
    model.eval()
    with torch.no_grad(), autocast(device):
        return torch.cat([model(x[i:i + EVAL_BATCH].to(device)).float().to(x.device)
                          for i in range(0, len(x), EVAL_BATCH)])
