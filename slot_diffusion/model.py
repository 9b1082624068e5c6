"""SlotDiffusion: slot_attention's slot encoder (imported, not copied) with its Spatial Broadcast Decoder
replaced by a latent diffusion decoder: a slot-conditioned UNet (unet.py) that predicts the noise of
DDPM-noised VAE latents (ddpm.py, vae.py).

Training: images -> slots (slot attention); the frozen VAE's latents z_0 -> z_t = add_noise(z_0, eps, t),
t uniform in [0, T); loss = MSE(UNet(z_t, t, slots), eps). The slot encoder and the UNet learn together.
Masks: the slot-input attention of slot attention's last iteration (B, K, h, w), bilinearly upsampled
to the image and argmaxed over the slots. Reconstruction: latents sampled from pure noise with an
image's own slots, then decoded by the VAE.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from common.models import ModelConfig
from slot_attention.model import SlotConfig, SlotEncoder
from slot_diffusion.ddpm import SCHEDULES, Diffusion
from slot_diffusion.unet import UNet


@dataclass(frozen=True)
class SlotDiffusionConfig(ModelConfig):
    image_size: int = 64
    channels: int = 3
    slots: int = 11
    iterations: int = 3
    slot_dim: int = 64
    encoder_channels: int = 32
    encoder_stride: int = 4
    mlp_hidden: int = 128
    implicit_grad: bool = False
    latent_channels: int = 3
    latent_size: int = 16            # the VAE's latent side (image_size / 4)
    unet_widths: tuple[int, ...] = (32, 64, 64)
    unet_blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    heads: int = 4
    schedule: str = "linear"
    timesteps: int = 1000

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown beta schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        factor = 2 ** (len(self.unet_widths) - 1)
        if self.latent_size % factor:
            raise ValueError(f"the latent side {self.latent_size} must be a multiple of the UNet's downsampling "
                             f"{factor}")
        self.slot_config()   # the encoder's own checks

    def slot_config(self) -> SlotConfig:
        """slot_attention's config for the encoder (its decoder fields unused)."""
        return SlotConfig(image_size=self.image_size, channels=self.channels, slots=self.slots,
                          iterations=self.iterations, slot_dim=self.slot_dim, encoder_channels=self.encoder_channels,
                          encoder_stride=self.encoder_stride, mlp_hidden=self.mlp_hidden,
                          broadcast=self.image_size, implicit_grad=self.implicit_grad)

    def describe(self) -> str:
        c = self.slot_config()
        return (f"slot encoder {c.encoder_channels}ch -> {c.feature_size}x{c.feature_size}, {self.slots} slots x "
                f"{self.slot_dim}, {self.iterations} iterations; UNet {'/'.join(map(str, self.unet_widths))} on "
                f"{self.latent_channels}x{self.latent_size}x{self.latent_size} latents, DDPM {self.schedule} "
                f"T={self.timesteps}")


class SlotDiffusion(nn.Module):
    def __init__(self, config: SlotDiffusionConfig):
        super().__init__()
        self.config = config
        self.slot_encoder = SlotEncoder(config.slot_config())
        self.unet = UNet(config.latent_channels, config.unet_widths, config.unet_blocks, config.attention_levels,
                         config.slot_dim, config.heads)
        self.diffusion = Diffusion(config.schedule, config.timesteps)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) in [0, 1] -> slots (B, K, D), masks (B, K, 1, H, W) from the attention."""
        slots, attention = self.slot_encoder(images, generator=generator)
        return slots, attention_masks(attention, images.shape[-1])

    def loss(self, images: torch.Tensor, latents: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The eps-prediction MSE (per example (B,)) and the masks."""
        slots, masks = self.encode(images, generator)
        t = self.diffusion.sample_timesteps(len(images), latents.device, generator)
        noise = torch.randn(latents.shape, device=latents.device, generator=generator)
        eps = self.unet(self.diffusion.add_noise(latents, noise, t), t, slots)
        return ((eps - noise) ** 2).flatten(1).mean(dim=1), masks

    def forward(self, images: torch.Tensor, latents: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """With latents: {"loss": per-example eps MSE (B,), "masks"} (training goes through forward, so
        DistributedDataParallel sees it); without: what slot_attention.library reads, {"slots", "masks"}."""
        if latents is not None:
            loss, masks = self.loss(images, latents, generator)
            return {"loss": loss, "masks": masks}
        slots, masks = self.encode(images, generator)
        return {"slots": slots, "masks": masks}

    @torch.no_grad()
    def sample_latents(self, slots: torch.Tensor, *, steps: int, sampler: str = "ddpm",
                       generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        shape = (len(slots), c.latent_channels, c.latent_size, c.latent_size)
        return self.diffusion.sample(lambda z, t: self.unet(z, t, slots), shape, steps=steps, sampler=sampler,
                                     generator=generator, device=slots.device)


def attention_masks(attention: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, K, N) attention over an h x h feature map -> (B, K, 1, image_size, image_size), bilinear."""
    batch, count, n = attention.shape
    side = int(round(n ** 0.5))
    maps = attention.reshape(batch * count, 1, side, side)
    maps = F.interpolate(maps, size=image_size, mode="bilinear", align_corners=False)
    return maps.reshape(batch, count, 1, image_size, image_size)
