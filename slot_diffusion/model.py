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
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from common.errors import UserError
from common.models import ModelConfig
from slot_attention.model import SlotConfig, SlotEncoder
from slot_diffusion.ddpm import SCHEDULES, Diffusion
from slot_diffusion.unet import UNet

# the encoder fields a config stored before the `encoder` field (2026-12-06) held at its top level; the encoder
# it meant was slot_attention's with Gaussian slots, no colour shortcut and no decoder (LEGACY_ENCODER)
LEGACY_ENCODER_FIELDS = ("image_size", "channels", "slots", "iterations", "slot_dim", "encoder_channels",
                         "encoder_stride", "mlp_hidden", "implicit_grad")
LEGACY_ENCODER = dict(image_size=64, slots=11, iterations=3, slot_dim=64, encoder_channels=32, encoder_stride=4,
                      mlp_hidden=128, implicit_grad=False, colour_shortcut=False, slot_init="gaussian", decoder_size=0)


@dataclass(frozen=True)
class SlotDiffusionConfig(ModelConfig):
    encoder: SlotConfig = SlotConfig()   # slot_attention's encoder and its defaults (its decoder fields unused)
    latent_channels: int = 3
    latent_size: int = 16            # the VAE's latent side (image_size / 4)
    unet_widths: tuple[int, ...] = (32, 64, 64)
    unet_blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    heads: int = 4
    schedule: str = "linear"
    timesteps: int = 1000

    def __post_init__(self):
        if not isinstance(self.encoder, SlotConfig):
            raise ValueError(f"encoder must be a SlotConfig, got {type(self.encoder).__name__}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown beta schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        factor = 2 ** (len(self.unet_widths) - 1)
        if self.latent_size % factor:
            raise ValueError(f"the latent side {self.latent_size} must be a multiple of the UNet's downsampling "
                             f"{factor}")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "encoder": self.encoder.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SlotDiffusionConfig":
        """A stored config: today's ({"encoder": {...}, ...}) or one written before the encoder field (the
        encoder's fields at the top level), whose encoder is rebuilt as it was then."""
        if not isinstance(values, Mapping):
            return super().from_dict(values)       # the one-line error
        values = dict(values)
        if "encoder" in values:
            encoder = values.pop("encoder")
        else:
            old = {k: values.pop(k) for k in LEGACY_ENCODER_FIELDS if k in values}
            encoder = {**LEGACY_ENCODER, **old}
            encoder["broadcast"] = encoder["image_size"]
        if not isinstance(encoder, Mapping):
            raise UserError(f"{cls.__name__}: encoder must be a mapping of SlotConfig fields, got "
                            f"{type(encoder).__name__}")
        try:
            return super().from_dict({**values, "encoder": SlotConfig.from_dict(encoder)})
        except ValueError as err:
            raise UserError(f"{cls.__name__}: {err}") from None

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    def describe(self) -> str:
        c = self.encoder
        shortcut = " + colour shortcut" if c.colour_shortcut else ""
        queries = " (learned queries, BO-QSA)" if c.slot_init == "learned" else ""
        return (f"slot encoder {c.encoder_channels}ch{shortcut} -> {c.feature_size}x{c.feature_size}, {c.slots} slots "
                f"x {c.slot_dim}{queries}, {c.iterations} iterations; UNet {'/'.join(map(str, self.unet_widths))} on "
                f"{self.latent_channels}x{self.latent_size}x{self.latent_size} latents, DDPM {self.schedule} "
                f"T={self.timesteps}")


class SlotDiffusion(nn.Module):
    def __init__(self, config: SlotDiffusionConfig):
        super().__init__()
        self.config = config
        self.slot_encoder = SlotEncoder(config.encoder)
        self.unet = UNet(config.latent_channels, config.unet_widths, config.unet_blocks, config.attention_levels,
                         config.encoder.slot_dim, config.heads)
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
