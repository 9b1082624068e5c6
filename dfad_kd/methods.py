"""The training methods of train.py (a registry) and the adversarial game's two steps.

    METHODS[args.method](state, rng) -> {"loss_s": ..., ["loss_g", "loss_bn",] "class_hist", ...}: one epoch

dfad: per iteration --ks student steps on generated images (generator fixed), then --kg generator steps
against the student (student and teacher fixed). noise / real: the same student steps on Gaussian noise /
real training images; labels: the student alone on the real labels. Every batch is drawn from `rng`, seeded
per epoch by the caller, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.progress import progress
from dfad_kd.losses import BatchNormMatch, neg_class_entropy
from dfad_kd.model import Generator, Teacher, held, mae


@dataclass
class State:
    """Everything one epoch touches."""
    args: argparse.Namespace
    teacher: Teacher
    student: torch.nn.Module
    generator: Generator | None
    opt_s: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer | None
    data: object                # ImageTensors
    device: torch.device
    bn_match: BatchNormMatch | None = None    # hooks on the teacher's BatchNorm layers (--bn-match > 0)


def _method_dfad(state: State, rng: torch.Generator) -> dict:
    """ks student steps on generated images, then kg generator steps against the student."""
    a, g = state.args, state.generator
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch), desc="iterations", quiet=a.smoke):
        g.train()
        for _ in range(a.ks):
            with torch.no_grad(), held(g):
                x = g(_z(a, rng, state.device))
            meter.add_student(*student_step(state, x))
        for _ in range(a.kg):
            for key, value in generator_step(state, _z(a, rng, state.device)).items():
                meter.add(key, value)
    return meter.means()


def _method_noise(state: State, rng: torch.Generator) -> dict:
    """The same student steps on Gaussian noise N(0, 1) in the teacher's input space (no generator)."""
    a, (c, h, w) = state.args, state.data.shape
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        x = torch.randn(a.batch_size, c, h, w, generator=rng).to(state.device)
        meter.add_student(*student_step(state, x))
    return meter.means()


def _method_real(state: State, rng: torch.Generator) -> dict:
    """The same student steps on real training images (the upper bound of distillation)."""
    a, x_train = state.args, state.data.x_train
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        index = torch.randint(len(x_train), (a.batch_size,), generator=rng)
        meter.add_student(*student_step(state, x_train[index].to(state.device)))
    return meter.means()


def _method_labels(state: State, rng: torch.Generator) -> dict:
    """The student alone on the real labels (cross-entropy; no teacher)."""
    a, d = state.args, state.data
    meter = Meter(len(d.classes))
    state.student.train()
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        index = torch.randint(len(d.y_train), (a.batch_size,), generator=rng)
        x, y = d.x_train[index].to(state.device), d.y_train[index].to(state.device)
        loss = F.cross_entropy(state.student(x), y)
        state.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        state.opt_s.step()
        meter.add("loss_s", loss.detach())
    return meter.means()


METHODS = {"dfad": _method_dfad, "noise": _method_noise, "real": _method_real, "labels": _method_labels}


def _z(args, rng: torch.Generator, device) -> torch.Tensor:
    return torch.randn(args.batch_size, args.nz, generator=rng).to(device)


def student_step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One student update on the batch x (B, C, H, W): minimise MAE(student(x), teacher(x)). The generator
    and the teacher are untouched. Returns the loss, the teacher's predicted classes and the agreement."""
    student = state.student
    student.train()
    with torch.no_grad():
        t_logits = state.teacher.model(x)                         # (B, K)
    s_logits = student(x)                                         # (B, K)
    loss = mae(s_logits, t_logits)
    state.opt_s.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_s.step()
    t_pred = t_logits.argmax(1)
    return loss.detach(), t_pred, (s_logits.detach().argmax(1) == t_pred).float().mean()


def generator_step(state: State, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """One generator update: maximise MAE(student(G(z)), teacher(G(z))) (minus --balance x the teacher's
    negative class entropy, minus --bn-match x the teacher's BatchNorm statistics gap). The student runs in
    train mode (batch statistics, as in DFAD) but neither its parameters nor its BatchNorm buffers change; the
    teacher is frozen. Returns {"loss_g": the MAE (the quantity the generator raises)[, "loss_bn": the gap]}."""
    state.generator.train()
    state.student.train()
    a, bn = state.args, state.bn_match
    with held(state.student):
        x = state.generator(z)
        with bn.recording() if bn is not None else contextlib.nullcontext():
            t_logits = state.teacher.model(x)                                 # (B, K)
        loss = mae(state.student(x), t_logits)
        objective = -loss + a.balance * neg_class_entropy(t_logits)
        out = {"loss_g": loss.detach()}
        if bn is not None:
            loss_bn = bn.loss()
            objective = objective + a.bn_match * loss_bn
            out["loss_bn"] = loss_bn.detach()
        state.opt_g.zero_grad(set_to_none=True)
        objective.backward()
        state.opt_g.step()
    return out


class Meter:
    """Epoch means on the device (one host sync at the end), and the teacher's class histogram."""

    def __init__(self, classes: int):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.hist = torch.zeros(classes)

    def add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0) + value.float()
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_student(self, loss: torch.Tensor, t_pred: torch.Tensor, agree: torch.Tensor) -> None:
        self.add("loss_s", loss)
        self.add("agree_input", agree)
        self.hist += torch.bincount(t_pred, minlength=len(self.hist)).cpu().float()

    def means(self) -> dict:
        out = {k: (v / self.counts[k]).item() for k, v in self.sums.items()}
        if self.hist.sum() > 0:
            share = self.hist / self.hist.sum()
            out["class_hist"] = share.tolist()
            entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
            out["class_entropy"] = entropy / math.log(len(share))        # 1: uniform, 0: one class
        return out
