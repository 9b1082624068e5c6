"""The generator's extra objectives: the class-balance term and the batch-norm statistics loss.

    objective = -mae(student(x), teacher(x)) + balance * neg_class_entropy(teacher(x)) + bn_match * bn.loss()

- neg_class_entropy (DAFL's information-entropy term): -H of the teacher's mean prediction over the batch;
  minimising it spreads the generated batch over the classes (against the teacher-class collapse).
- BatchNormMatch (DeepInversion, Yin et al. 2020; CMI and "Up to 100x faster data-free KD", Fang et al.
  2021/2022): for every BatchNorm layer of the frozen teacher, || mean(features) - running_mean ||_2 +
  || var(features) - running_var ||_2 of its input on the generated batch, summed over the layers. The
  teacher's running statistics describe its training images, so the generator is pulled towards images
  whose features look like theirs. Forward hooks on the teacher, which stays in eval mode: its buffers are
  only read.

Both are statistics of the whole generated batch. Under torchrun each process holds its rows of the batch, so
the batch mean and the per-channel moments are averaged over the processes with a differentiable all_reduce:
N processes x B/N rows give one process's value and, averaged by DDP, its gradient.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from common.distributed import is_distributed, world_size
from common.errors import UserError


class SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: every process's sum depends on every process's tensor, so a tensor's
    gradient is the sum of the processes' gradients of the sum."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over torchrun's processes, with gradients (each process's share of the batch has the
    same size); `t` itself in one process."""
    if not is_distributed():
        return t
    return SumOverRanks.apply(t) / world_size()


def neg_class_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-H(mean_b softmax(logits_b)): the negative entropy of the teacher's mean prediction over the batch
    (minimum -log K when the batch covers every class equally; DAFL's information-entropy term)."""
    p = mean_over_ranks(logits.softmax(1).mean(0))                              # (K,)
    return (p * p.clamp_min(1e-12).log()).sum()


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The model's batch-norm layers: any module with running_mean and running_var buffers (nn.BatchNorm*d,
    resnet_norms.norms.BatchNorm)."""
    return [m for m in model.modules() if isinstance(getattr(m, "running_mean", None), torch.Tensor)
            and isinstance(getattr(m, "running_var", None), torch.Tensor)]


def batch_var_mean(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel (biased) variance and mean of features (B, C, ...) over every axis but the channel's,
    over the whole batch (all processes' rows under torchrun)."""
    dims = [0, *range(2, features.dim())]
    if not is_distributed():
        return torch.var_mean(features, dim=dims, unbiased=False)                # (C,) each
    mean = mean_over_ranks(features.mean(dims))
    return mean_over_ranks((features - mean.view(1, -1, *[1] * (features.dim() - 2))).square().mean(dims)), mean


def bn_statistics_gap(features: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
    """|| mean - running_mean ||_2 + || var - running_var ||_2 over the channels of features (B, C, ...): the
    per-channel batch mean and (biased) variance over every axis but the channel's."""
    var, mean = batch_var_mean(features)                                        # (C,) each
    return torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(var - running_var)


class BatchNormMatch:
    """Forward hooks on every batch-norm layer of `model` that, while recording(), add up the gap between
    the statistics of the layer's input batch and the layer's running statistics (differentiable in the
    input; the buffers are only read). A model without batch-norm layers is a UserError."""

    def __init__(self, model: nn.Module, name: str = "the teacher"):
        self.layers = batchnorm_layers(model)
        if not self.layers:
            raise UserError(f"--bn-match needs a teacher with BatchNorm layers; {name} has none "
                            f"(use --bn-match 0, e.g. for LeNet-5)")
        self.terms: list[torch.Tensor] | None = None        # while recording
        self.collected: list[torch.Tensor] = []              # the last recording's
        self.handles = [layer.register_forward_hook(self._hook) for layer in self.layers]

    def _hook(self, module: nn.Module, inputs: tuple, output) -> None:
        if self.terms is not None:
            self.terms.append(bn_statistics_gap(inputs[0], module.running_mean, module.running_var))

    @contextlib.contextmanager
    def recording(self) -> Iterator[BatchNormMatch]:
        """Collect the gaps of the forward passes inside the block; loss() sums them."""
        self.terms = []
        try:
            yield self
        finally:
            self.collected, self.terms = self.terms, None

    def loss(self) -> torch.Tensor:
        """The sum over the layers (and the forward passes) of the last recording."""
        if not self.collected:
            raise RuntimeError("BatchNormMatch.loss() before a forward pass inside recording()")
        return torch.stack(self.collected).sum()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
