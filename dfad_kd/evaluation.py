"""What an epoch measures: the training means (StepMeans: the losses, agreement and the teacher's class histogram
on the student's inputs), the evaluation on real test images (Evaluator: the full test set, the seed's 10% /
20% subsets and the student's agreement with the teacher) and the best epoch so far (Best)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from common.classify import predict_logits
from common.distributed import all_reduce_sum, world_size
from dfad_kd.data import seed_test_subsets
from dfad_kd.model import Teacher


class StepMeans:
    """An epoch's per-step means on the device (one host sync, summed over torchrun's processes, at the end),
    and the teacher's class histogram."""

    def __init__(self, classes: int, device):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.hist = torch.zeros(classes, device=device)

    def add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_agreement(self, s_logits: torch.Tensor, t_logits: torch.Tensor) -> None:
        """The student's agreement with the teacher on its inputs, and the teacher's classes there."""
        t_pred = t_logits.argmax(1)
        self.add("agree_input", (s_logits.detach().argmax(1) == t_pred).float().mean())
        self.hist += torch.bincount(t_pred, minlength=len(self.hist)).float()

    def means(self) -> dict:
        names = list(self.sums)
        totals = all_reduce_sum(torch.cat([torch.stack([self.sums[k] for k in names]), self.hist]))
        counts = torch.tensor([self.counts[k] * world_size() for k in names], dtype=torch.float32)
        out = dict(zip(names, (totals[:len(names)].cpu() / counts).tolist()))
        hist = totals[len(names):].cpu()
        if hist.sum() > 0:
            share = hist / hist.sum()
            out["class_hist"] = share.tolist()
            entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
            out["class_entropy"] = entropy / math.log(len(share))        # 1: uniform, 0: one class
        return out


class Evaluator:
    """Accuracy on the real test set and the seed's subsets, and agreement with the teacher's predictions."""

    def __init__(self, teacher: Teacher, data, device):
        self.data, self.device = data, device
        self.subsets = seed_test_subsets(len(data.y_test))
        self.t_pred = predict_logits(teacher.model, data.x_test, device).argmax(1).cpu()
        self.teacher_acc = self.scores(self.t_pred)

    def scores(self, pred: torch.Tensor) -> dict:
        hits = (pred == self.data.y_test).float()
        return {"test_acc": hits.mean().item(), **{f"test_acc_{k}": hits[i].mean().item()
                                                   for k, i in self.subsets.items()}}

    def __call__(self, student) -> dict:
        logits = predict_logits(student, self.data.x_test, self.device).cpu()
        pred = logits.argmax(1)
        return {**self.scores(pred), "test_loss": F.cross_entropy(logits, self.data.y_test).item(),
                "agree_real": (pred == self.t_pred).float().mean().item()}


class Best:
    """The epoch of the best test accuracy so far (the seed's selection, optimistic); checkpointed for --resume."""

    def __init__(self):
        self.test_acc, self.epoch = -1.0, 0

    def improved(self, record: dict) -> bool:
        if record["test_acc"] <= self.test_acc:
            return False
        self.test_acc, self.epoch = record["test_acc"], record["epoch"]
        return True

    def state_dict(self) -> dict:
        return {"test_acc": self.test_acc, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.test_acc, self.epoch = float(state["test_acc"]), int(state["epoch"])
