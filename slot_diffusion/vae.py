"""The course's VAE interface: `vae.encode(images) -> z` of shape [B, 3, H/4, W/4] (128-px images give
[B, 3, 32, 32]) and `vae.decode(z) -> images`, provided by a small KL-regularised autoencoder that
train_vae.py trains on the same images (the Latent Diffusion "KL-f4" design, CPU-sized).

- Encoder: a 3x3 stem at full resolution, then per width a stride-2 convolution (downsampling) and a
  residual block; GroupNorm + SiLU + a 3x3 convolution to the mean and log-variance of a diagonal
  Gaussian posterior with `latent_channels` channels.
- Decoder: the mirror, upsampling by nearest-neighbour x2 + a 3x3 convolution.
- Loss: pixel MSE + `kl_weight` x KL(q(z|x) || N(0, I)) (both per element means).
- `encode` returns the posterior mean times `scale`, a buffer set after training to 1 / std of the
  training latents, so the diffusion model sees latents of about unit variance (LDM's scale factor);
  `decode` divides it out. Images are in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from common.checkpoint import load_checkpoint
from common.models import ModelConfig, rebuild_model


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


@dataclass(frozen=True)
class VAEConfig(ModelConfig):
    channels: int = 3
    latent_channels: int = 3
    stem: int = 16                      # full-resolution width
    widths: tuple[int, ...] = (32, 64)  # one per x2 downsampling: len 2 -> 4x downsampling

    @property
    def factor(self) -> int:
        return 2 ** len(self.widths)

    def describe(self) -> str:
        return (f"KL-VAE {self.channels}->{self.latent_channels} channels, {self.factor}x downsampling, widths "
                f"{self.stem}/{'/'.join(map(str, self.widths))}")


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus a (1x1 when the width changes) skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = [nn.Conv2d(c.channels, c.stem, 3, padding=1)]
        width = c.stem
        for w in c.widths:
            layers += [nn.Conv2d(width, w, 3, stride=2, padding=1), ResBlock(w, w)]
            width = w
        layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, 2 * c.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*layers)
        layers = [nn.Conv2d(c.latent_channels, width, 3, padding=1), ResBlock(width, width)]
        for w in (*reversed(c.widths[:-1]), c.stem):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, w, 3, padding=1)]
            layers += [ResBlock(w, w)] if w != c.stem else []
            width = w
        layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, c.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*layers)
        self.register_buffer("scale", torch.ones(()))

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) in [0, 1] -> mean, log-variance (B, latent, H/f, W/f), unscaled."""
        factor = self.config.factor
        if images.shape[-1] % factor or images.shape[-2] % factor:
            raise ValueError(f"image sides {tuple(images.shape[-2:])} must be multiples of {factor}")
        mean, logvar = self.encoder(images * 2 - 1).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None,
               sample: bool = False) -> torch.Tensor:
        """The posterior mean (or a draw from it) times `scale`: (B, latent, H/f, W/f)."""
        mean, logvar = self.posterior(images)
        if sample:
            mean = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images, about [0, 1] (not clamped)."""
        return (self.decoder(z / self.scale) + 1) / 2

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, logvar = self.posterior(images)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        return {"recon": (self.decoder(z) + 1) / 2, "mean": mean, "logvar": logvar}


def vae_loss(out: dict[str, torch.Tensor], images: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
    mse = F.mse_loss(out["recon"], images)
    kl = 0.5 * (out["mean"] ** 2 + out["logvar"].exp() - 1 - out["logvar"]).mean()
    return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}


def psnr(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(B,) peak signal-to-noise ratio in dB of images in [0, 1] (recon clamped to [0, 1])."""
    mse = ((recon.clamp(0, 1) - images) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


@torch.no_grad()
def evaluate_vae(model: VAE, images: torch.Tensor, batch_size: int = 64) -> dict:
    """Val MSE and PSNR of uint8 images (N, C, H, W), the posterior mean decoded."""
    model.eval()
    mse, db = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float() / 255
        recon = model.decode(model.encode(x))
        mse.append(((recon.clamp(0, 1) - x) ** 2).flatten(1).mean(1))
        db.append(psnr(recon, x))
    return {"loss": float(torch.cat(mse).mean()), "psnr": float(torch.cat(db).mean())}


def load_vae(path, device="cpu") -> VAE:
    """A frozen VAE from any checkpoint.pt of train_vae.py (one UserError when the file does not fit)."""
    model = rebuild_model(load_checkpoint(path), lambda d: VAE(VAEConfig.from_dict(d)), path,
                          "slot_diffusion/train_vae.py")
    return model.to(device).eval().requires_grad_(False)
