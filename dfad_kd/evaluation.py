"""Every epoch's evaluation on real test images: the full test set, the seed's 10% / 20% subsets and the
student's agreement with the teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.classify import predict_logits
from dfad_kd.data import seed_test_subsets
from dfad_kd.model import Teacher


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
