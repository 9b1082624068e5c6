"""--method: where the student's batch comes from and what the student minimises on it, one small class per
method (the registry METHODS, `choices=list(METHODS)`). train.py's loop writes out the steps themselves.

    method = METHODS[args.method](args, data, device, generator)
    x, y = method.batch(rng)                     # this process's rows of the global batch; y None unless labels
    loss = method.loss(student(x), teacher(x), y)

dfad: images of the generator, held fixed; noise: Gaussian noise N(0, 1) in the teacher's input space; real:
real training images (the upper bound of distillation); these three distil (the MAE to the teacher's logits).
labels: the student alone on the real labels (cross-entropy; no teacher). Every batch is drawn whole from
`rng`, seeded per epoch by the caller, the same in every process (each keeps its rows): a resumed run repeats
the uninterrupted one and N processes see one process's batch.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common.distributed import shard
from dfad_kd.model import Generator, held, mae


class Method:
    adversarial = False     # a generator is trained against the student (--kg generator steps per iteration)
    distils = True          # the student matches the teacher's logits; False: the real labels, no teacher

    def __init__(self, args: argparse.Namespace, data, device: torch.device, generator: Generator | None = None):
        self.args, self.data, self.device, self.generator = args, data, device, generator

    def batch(self, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def loss(self, s_logits: torch.Tensor, t_logits: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """DFAD's loss: the mean absolute error between the logits (B, K)."""
        return mae(s_logits, t_logits)


class Generated(Method):
    """dfad: G(z), z ~ N(0, I), with the generator held (no gradients, its BatchNorm statistics restored; the
    whole batch goes through it, so its batch statistics are one process's)."""
    adversarial = True

    def batch(self, rng):
        z = torch.randn(self.args.batch_size, self.args.nz, generator=rng).to(self.device)
        with torch.no_grad(), held(self.generator):
            return shard(self.generator(z)), None


class Noise(Method):
    """noise: Gaussian noise N(0, 1) in the teacher's input space (no generator)."""

    def batch(self, rng):
        x = torch.randn(self.args.batch_size, *self.data.shape, generator=rng)
        return shard(x).to(self.device), None


class Real(Method):
    """real: real training images, drawn with replacement."""

    def batch(self, rng):
        index = shard(torch.randint(len(self.data.y_train), (self.args.batch_size,), generator=rng))
        return self.data.x_train[index].to(self.device), self.data.y_train[index].to(self.device)


class Labels(Real):
    """labels: the same real images; the student alone learns their labels (cross-entropy)."""
    distils = False

    def loss(self, s_logits, t_logits, y):
        return F.cross_entropy(s_logits, y)


METHODS: dict[str, type[Method]] = {"dfad": Generated, "noise": Noise, "real": Real, "labels": Labels}
