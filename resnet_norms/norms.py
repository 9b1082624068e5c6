"""The five normalisations of the assignment, written here (not nn.BatchNorm2d & co.), and a registry.

Each layer takes (B, C, H, W) and returns the same shape; each is tested equal to torch's counterpart,
forward and backward, in train and eval mode (tests/test_resnet_norms.py):
- BatchNorm: statistics over (B, H, W) per channel in training, running statistics in eval
  (momentum 0.1, the running variance unbiased: nn.BatchNorm2d's rule).
- InstanceNorm: over (H, W) per image and channel, with a per-channel affine (InstanceNorm2d(affine=True)).
- LayerNorm: over (C, H, W) per image, with a per-channel affine (so the layer does not depend on the
  image size; equal to nn.LayerNorm((C, H, W)) whose affine is constant over H, W, and to GroupNorm(1, C)).
- GroupNorm: over (C/G, H, W) per image and group of channels.
- BatchInstanceNorm (Nam & Kim, 2018): gamma * (rho * x_bn + (1 - rho) * x_in) + beta, rho per channel,
  initialised to 1 (pure BN), clipped to [0, 1] after every optimiser step (`clip_gates`) and kept out of
  weight decay (`parameter_groups`).
BN (training mode), IN, LN and GN have their backward written out as autograd Functions (the formulas in
_BatchNormFunction and _GroupNormFunction); BIN and eval-mode BN use autograd through the statistics.
`python bench/resnet_norms_norms.py` prints each one's time against torch's fused kernels.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from common.errors import UserError

EPS = 1e-5


def _scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x * scale + shift with broadcasting: one pass over x (the per-channel work is done on the small tensors)."""
    return torch.addcmul(shift, x, scale)


def _var_mean(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(biased variance, mean) over `dims`, in two passes: mean((x - mean)^2). As exact as torch.var_mean and,
    with its backward, several times faster on the CPU (torch 2.x's var_mean reduces slowly over (0, 2, 3))."""
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().mean(dims, keepdim=keepdim)
    return var, (mean if keepdim else mean.squeeze(dims))


def _moments(x: torch.Tensor, dims: tuple[int, ...], eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1 / sqrt(var + eps)) over `dims`, kept as broadcastable dims; the variance biased."""
    var, mean = _var_mean(x, dims)
    return mean, torch.rsqrt(var + eps)


class _GroupNormFunction(torch.autograd.Function):
    """y = weight * x_hat + bias per channel, x_hat standardised per image over groups of channels and
    (H, W): G = C is InstanceNorm, G = 1 LayerNorm over (C, H, W), else GroupNorm. With g = dL/dy, the
    backward is db = sum g, dw = sum g x_hat (over B, H, W) and, per image and group of M values,
    dx = inv_std (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)) where g_hat = g * weight."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float):
        b, c, h, w = x.shape
        grouped = x.reshape(b, groups, -1)                                             # (B, G, M)
        centred = grouped - grouped.mean(-1, keepdim=True)
        inv_std = torch.rsqrt(centred.square().mean(-1, keepdim=True) + eps)           # (B, G, 1)
        x_hat = (centred * inv_std).view(b, c, h, w)
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.groups = groups
        return torch.addcmul(bias.view(1, -1, 1, 1), x_hat, weight.view(1, -1, 1, 1))

    @staticmethod
    def backward(ctx, grad):
        x_hat, inv_std, weight = ctx.saved_tensors
        b, c, h, w = grad.shape
        count = b * h * w
        d_bias = grad.mean(dim=(0, 2, 3)) * count
        d_weight = (grad * x_hat).mean(dim=(0, 2, 3)) * count
        g_hat = (grad * weight.view(1, -1, 1, 1)).reshape(b, ctx.groups, -1)          # (B, G, M)
        x_hat = x_hat.reshape(b, ctx.groups, -1)
        d_x = g_hat - g_hat.mean(-1, keepdim=True) - x_hat * (g_hat * x_hat).mean(-1, keepdim=True)
        return (d_x * inv_std).view(b, c, h, w), d_weight, d_bias, None, None


def _normalise(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """weight * (x - mean) / sqrt(var + eps) + bias, the statistics per image over `groups` groups of
    channels and (H, W), the affine per channel."""
    return _GroupNormFunction.apply(x, weight, bias, groups, EPS)


class _Affine(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return f"{self.channels}"


class BatchNorm(_Affine):
    """Per-channel statistics over (B, H, W); running mean/var for eval."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = EPS):
        super().__init__(channels)
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, 1 / sqrt(var + eps)), each (C,): the batch's in training (updating the
        running statistics; differentiable, BIN uses them so), the running ones in eval."""
        if not self.training:
            return self.running_mean, torch.rsqrt(self.running_var + self.eps)
        var, mean = _var_mean(x, (0, 2, 3), keepdim=False)                           # (C,) each
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach().to(self.running_mean.dtype))
            unbiased = var.detach() * count / max(count - 1, 1)
            self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
            self.num_batches_tracked.add_(1)
        return mean, torch.rsqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:   # the batch statistics: forward and backward written out (_BatchNormFunction)
            with torch.no_grad():
                mean, inv_std = self.statistics(x)
            return _BatchNormFunction.apply(x, self.weight, self.bias, mean, inv_std)
        mean, inv_std = self.statistics(x)
        scale = self.weight * inv_std                       # the affine folded in: one multiply-add
        return _scale_shift(x, scale.view(1, -1, 1, 1), (self.bias - mean * scale).view(1, -1, 1, 1))


class _BatchNormFunction(torch.autograd.Function):
    """y = w (x - mean) inv_std + b with the batch's per-channel mean and inv_std (computed by the caller).
    Backward, with N = B*H*W, g = dL/dy and x_hat = (x - mean) inv_std:
        db = sum g,  dw = sum g x_hat,  dx = w inv_std (g - db / N - x_hat dw / N),
    the last written as g * scale + x * a + c with per-channel a, c: two passes over the big tensors."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, inv_std):
        scale = weight * inv_std                                                       # (C,)
        ctx.save_for_backward(x, weight, mean, inv_std)
        return _scale_shift(x, scale.view(1, -1, 1, 1), (bias - mean * scale).view(1, -1, 1, 1))

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, inv_std = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        sum_g = grad.mean(dim=(0, 2, 3)) * count                    # (C,); mean: a faster CPU reduction than sum
        sum_gx = (grad * x).mean(dim=(0, 2, 3)) * count                                # (C,)
        d_weight = (sum_gx - mean * sum_g) * inv_std                                   # sum g x_hat
        scale = weight * inv_std
        a = -scale * inv_std * d_weight / count
        c = -scale * sum_g / count - a * mean
        d_x = torch.addcmul(c.view(1, -1, 1, 1), grad, scale.view(1, -1, 1, 1)).addcmul_(x, a.view(1, -1, 1, 1))
        return d_x, d_weight, sum_g, None, None


class InstanceNorm(_Affine):
    """Per image and channel over (H, W); the same in train and eval (no running statistics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalise(x, x.shape[1], self.weight, self.bias)


class LayerNorm(_Affine):
    """Per image over (C, H, W), per-channel affine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalise(x, 1, self.weight, self.bias)


class GroupNorm(_Affine):
    """Per image over each group of C/G channels and (H, W)."""

    def __init__(self, channels: int, groups: int):
        super().__init__(channels)
        if groups < 1 or channels % groups:
            raise UserError(f"--groups {groups} does not divide {channels} channels; pick a divisor of every "
                            f"stage width (e.g. 1, 2, 4, 8 or 16 for 16/32/64)")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalise(x, self.groups, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.channels}, groups={self.groups}"


class BatchInstanceNorm(BatchNorm):
    """rho * BN(x) + (1 - rho) * IN(x), one learnable gate rho per channel in [0, 1], one shared affine."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = EPS):
        super().__init__(channels, momentum, eps)
        self.rho = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # gamma * (rho * (x - mu_b) s_b + (1 - rho) * (x - mu_i) s_i) + beta = x * scale + shift, where
        # scale = gamma * (rho s_b + (1 - rho) s_i) and shift = beta - gamma * (rho mu_b s_b + (1 - rho) mu_i s_i)
        rho, gamma = self.rho.view(1, -1, 1, 1), self.weight.view(1, -1, 1, 1)
        mean_b, inv_b = (t.view(1, -1, 1, 1) for t in self.statistics(x))
        mean_i, inv_i = _moments(x, (2, 3), self.eps)                               # (B, C, 1, 1) each
        scale = gamma * (rho * inv_b + (1 - rho) * inv_i)
        shift = self.bias.view(1, -1, 1, 1) - gamma * (rho * mean_b * inv_b + (1 - rho) * mean_i * inv_i)
        return _scale_shift(x, scale, shift)


class NoNorm(nn.Identity):
    def __init__(self, channels: int):
        super().__init__()


# name -> factory(channels, groups) -> module
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "bn": lambda c, groups: BatchNorm(c),
    "in": lambda c, groups: InstanceNorm(c),
    "bin": lambda c, groups: BatchInstanceNorm(c),
    "ln": lambda c, groups: LayerNorm(c),
    "gn": lambda c, groups: GroupNorm(c, groups),
    "none": lambda c, groups: NoNorm(c),
}

# name -> torch's built-in counterpart (for the tests and the bench); BIN has none
TORCH_COUNTERPARTS: dict[str, Callable[[int, int, tuple[int, int]], nn.Module]] = {
    "bn": lambda c, groups, hw: nn.BatchNorm2d(c),
    "in": lambda c, groups, hw: nn.InstanceNorm2d(c, affine=True),
    "ln": lambda c, groups, hw: nn.LayerNorm((c, *hw)),
    "gn": lambda c, groups, hw: nn.GroupNorm(groups, c),
    "none": lambda c, groups, hw: nn.Identity(),
}


def make_norm(name: str, channels: int, groups: int = 8) -> nn.Module:
    if name not in NORMS:
        raise UserError(f"unknown norm '{name}'; choose one of {', '.join(NORMS)}")
    return NORMS[name](channels, groups)


def gates(model: nn.Module) -> list[nn.Parameter]:
    """Every BIN gate rho in `model`."""
    return [m.rho for m in model.modules() if isinstance(m, BatchInstanceNorm)]


@torch.no_grad()
def clip_gates(model: nn.Module) -> None:
    """Clip every BIN gate to [0, 1] (call after each optimiser step)."""
    for rho in gates(model):
        rho.clamp_(0.0, 1.0)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser groups: everything with `weight_decay` except the BIN gates (no decay)."""
    gate_ids = {id(p) for p in gates(model)}
    decayed = [p for p in model.parameters() if p.requires_grad and id(p) not in gate_ids]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if gate_ids:
        groups.append({"params": gates(model), "weight_decay": 0.0})
    return groups
