"""DDPM arithmetic (Ho et al., 2020), written here and tested against diffusers' schedulers.

Forward process: q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I) with abar_t = prod_{s<=t} (1 - beta_s),
beta from a `linear` (1e-4 .. 0.02 over T, DDPM's) or `cosine` (Nichol & Dhariwal's alpha-bar, betas
capped at 0.999) schedule. The network predicts the noise eps; the loss is its MSE.

Reverse process on a strided subset of the T steps (`--sample-steps`, diffusers' "leading" spacing: t =
k * (T // n), k = n-1 .. 0), from t to the previous kept step p (abar_p = 1 below step 0):
- ancestral (DDPM): z0_hat = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); with alpha = abar_t / abar_p and
  beta = 1 - alpha, the posterior mean is sqrt(abar_p) beta / (1 - abar_t) z0_hat + sqrt(alpha) (1 - abar_p)
  / (1 - abar_t) z_t and its variance ("fixed small") (1 - abar_p) / (1 - abar_t) beta; a draw from it is
  z_p (no noise at t = 0). With n = T this is exactly DDPM's sampler.
- DDIM (eta = 0 deterministic): z_p = sqrt(abar_p) z0_hat + sqrt(1 - abar_p - sigma^2) eps + sigma noise,
  sigma = eta sqrt((1 - abar_p) / (1 - abar_t) (1 - abar_t / abar_p)).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddpm", "ddim")


def make_betas(schedule: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """(T,) float64 betas."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if schedule == "cosine":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999)
                             for i in range(steps)], dtype=torch.float64)
    raise ValueError(f"unknown beta schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")


def _gather(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over `like` (B, ...), in like's dtype and device."""
    t = torch.as_tensor(t, device=values.device).long().reshape(-1)
    out = values[t].to(like.device, like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


class Diffusion:
    """The schedule and every step of the forward and reverse processes (no parameters)."""

    def __init__(self, schedule: str = "linear", steps: int = 1000):
        self.schedule, self.steps = schedule, steps
        self.betas = make_betas(schedule, steps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)

    # forward process ------------------------------------------------------------------------
    def q_mean_variance(self, z0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(z_t | z_0)."""
        abar = _gather(self.alphas_cumprod, t, z0)
        return abar.sqrt() * z0, (1 - abar).expand_as(z0)

    def add_noise(self, z0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """A draw of z_t given z_0 and the standard-normal `noise`."""
        abar = _gather(self.alphas_cumprod, t, z0)
        return abar.sqrt() * z0 + (1 - abar).sqrt() * noise

    def sample_timesteps(self, batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.steps, (batch,), device=device, generator=generator)

    # reverse process ------------------------------------------------------------------------
    def timesteps(self, count: int) -> list[int]:
        """The kept steps, last first ("leading" spacing)."""
        if not 1 <= count <= self.steps:
            raise ValueError(f"sample steps must lie in 1..{self.steps}, got {count}")
        ratio = self.steps // count
        return [k * ratio for k in reversed(range(count))]

    def _abar_prev(self, prev: int) -> float:
        return float(self.alphas_cumprod[prev]) if prev >= 0 else 1.0

    def predict_z0(self, z_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        abar = float(self.alphas_cumprod[t])
        return (z_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)

    def posterior(self, z0: torch.Tensor, z_t: torch.Tensor, t: int, prev: int | None = None
                  ) -> tuple[torch.Tensor, float]:
        """Mean and variance of q(z_prev | z_t, z_0) (prev = t - 1 unless given)."""
        prev = t - 1 if prev is None else prev
        abar, abar_prev = float(self.alphas_cumprod[t]), self._abar_prev(prev)
        alpha = abar / abar_prev
        beta = 1 - alpha
        mean = (math.sqrt(abar_prev) * beta / (1 - abar)) * z0 + (math.sqrt(alpha) * (1 - abar_prev) / (1 - abar)) * z_t
        return mean, max((1 - abar_prev) / (1 - abar) * beta, 1e-20)

    def ddpm_step(self, eps: torch.Tensor, t: int, z_t: torch.Tensor, noise: torch.Tensor | None = None,
                  prev: int | None = None, clip: float | None = None) -> torch.Tensor:
        """One ancestral step t -> prev: a draw from the posterior around the predicted z_0."""
        z0 = self.predict_z0(z_t, eps, t)
        if clip is not None:
            z0 = z0.clamp(-clip, clip)
        mean, variance = self.posterior(z0, z_t, t, prev)
        if t == 0:
            return mean
        if noise is None:
            noise = torch.randn_like(z_t)
        return mean + math.sqrt(variance) * noise

    def ddim_step(self, eps: torch.Tensor, t: int, z_t: torch.Tensor, prev: int, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        abar, abar_prev = float(self.alphas_cumprod[t]), self._abar_prev(prev)
        z0 = self.predict_z0(z_t, eps, t)
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        out = math.sqrt(abar_prev) * z0 + math.sqrt(max(1 - abar_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            out = out + sigma * (torch.randn_like(z_t) if noise is None else noise)
        return out

    @torch.no_grad()
    def sample(self, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...], *,
               steps: int, sampler: str = "ddpm", generator: torch.Generator | None = None, device=None,
               eta: float = 0.0) -> torch.Tensor:
        """From pure noise z_T ~ N(0, I) down to z_0; `predict(z_t, t_batch) -> eps`."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}")
        z = torch.randn(shape, generator=generator, device=device)
        kept = self.timesteps(steps)
        for i, t in enumerate(kept):
            prev = kept[i + 1] if i + 1 < len(kept) else -1
            eps = predict(z, torch.full((shape[0],), t, device=z.device, dtype=torch.long))
            noise = torch.randn(shape, generator=generator, device=device) if (sampler == "ddpm" and t > 0) or \
                (sampler == "ddim" and eta > 0) else None
            z = self.ddpm_step(eps, t, z, noise, prev) if sampler == "ddpm" else \
                self.ddim_step(eps, t, z, prev, eta, noise)
        return z
