"""The denoiser: a UNet of residual blocks over the VAE's latents, conditioned on the slots.

- Timestep: sinusoidal embedding -> MLP, injected in every block (added to the feature map inside each
  residual block, and to the tokens at the input of each transformer block).
- Down path: per level `blocks` residual blocks, then (between levels) a stride-2 3x3 convolution
  (downsampling); the middle (residual, transformer, residual) at the lowest resolution; up path:
  residual blocks over [features, skip] concatenations, then (between levels) nearest-neighbour x2 +
  a 3x3 convolution (upsampling: a different operation from the downsampling).
- Transformer blocks at the lower resolutions (levels listed in `attention_levels`, and the middle):
  self-attention over the positions, cross-attention from the positions to the slots (LayerNorm'd, no
  slot order anywhere, so permuting the slots leaves the output unchanged), and an MLP, each pre-norm
  and residual.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from slot_diffusion.vae import group_norm


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) [cos, sin] features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    out = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(out, (0, dim % 2))


class TimeResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, cout))
        self.out_layers = nn.Sequential(group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.in_layers(x) + self.time(temb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head attention from queries (B, N, D) to a context (B, M, Dc) (the queries themselves when None)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        batch, n, dim = x.shape
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)

        def split(y):
            return y.reshape(batch, -1, self.heads, dim // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(k), split(v))
        return self.out(out.transpose(1, 2).reshape(batch, n, dim))


class TransformerBlock(nn.Module):
    """Feature map -> tokens (+ time) -> self-attention, cross-attention to the slots, MLP -> feature map."""

    def __init__(self, dim: int, context_dim: int, heads: int, time_dim: int):
        super().__init__()
        self.norm_in = group_norm(dim)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.self_attention = Attention(dim, heads)
        self.cross_attention = Attention(dim, heads, context_dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, dim, height, width = x.shape
        h = self.proj_in(self.norm_in(x)).flatten(2).transpose(1, 2) + self.time(temb)[:, None]
        h = h + self.self_attention(self.norm1(h))
        h = h + self.cross_attention(self.norm2(h), self.norm_context(context))
        h = h + self.mlp(self.norm3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(batch, dim, height, width))


class UNet(nn.Module):
    def __init__(self, channels: int = 3, widths: tuple[int, ...] = (64, 128), blocks: int = 1,
                 attention_levels: tuple[int, ...] = (1,), context_dim: int = 64, heads: int = 4):
        super().__init__()
        self.widths, self.channels = tuple(widths), channels
        time_dim = 4 * widths[0]
        self.time_mlp = nn.Sequential(nn.Linear(widths[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)

        def stage(cin, cout, level):
            layers = [TimeResBlock(cin, cout, time_dim)]
            if level in attention_levels:
                layers.append(TransformerBlock(cout, context_dim, heads, time_dim))
            return nn.ModuleList(layers)

        self.down, self.downsample, skips = nn.ModuleList(), nn.ModuleList(), [widths[0]]
        width = widths[0]
        for level, w in enumerate(widths):
            for _ in range(blocks):
                self.down.append(stage(width, w, level))
                width = w
                skips.append(w)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skips.append(width)
        self.middle = nn.ModuleList([TimeResBlock(width, width, time_dim),
                                     TransformerBlock(width, context_dim, heads, time_dim),
                                     TimeResBlock(width, width, time_dim)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(blocks + 1):
                self.up.append(stage(width + skips.pop(), w, level))
                width = w
            if level > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(width, width, 3, padding=1)))
        self.out = nn.Sequential(group_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))
        self.blocks = blocks

    @property
    def factor(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """z (B, C, H, W) with H, W multiples of 2^(levels - 1); t (B,); context (B, K, context_dim) -> (B, C, H, W)."""
        if z.shape[-1] % self.factor or z.shape[-2] % self.factor:
            raise ValueError(f"latent sides {tuple(z.shape[-2:])} must be multiples of {self.factor}")
        temb = self.time_mlp(timestep_embedding(t, self.widths[0]).to(self.conv_in.weight.dtype))
        h = self.conv_in(z)
        skips = [h]
        blocks = iter(self.down)
        for level in range(len(self.widths)):
            for _ in range(self.blocks):
                for layer in next(blocks):
                    h = layer(h, temb, context)
                skips.append(h)
            if level < len(self.widths) - 1:
                h = self.downsample[level](h)
                skips.append(h)
        for layer in self.middle:
            h = layer(h, temb, context)
        blocks = iter(self.up)
        for i in range(len(self.widths)):
            for _ in range(self.blocks + 1):
                h = torch.cat([h, skips.pop()], dim=1)
                for layer in next(blocks):
                    h = layer(h, temb, context)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.out(h)
