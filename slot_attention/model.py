"""Slot Attention (Locatello et al., 2020): a CNN encoder with a 2D positional encoding, iterative slot
attention, and a Spatial Broadcast Decoder that turns each slot into an RGB image and a mask logit.

The pieces stay apart so a later assignment can reuse them: `SlotEncoder` (image -> slots, the
encoder + `SlotAttention`) is what slot_diffusion imports with a different decoder;
`SpatialBroadcastDecoder` (slots -> per-slot RGB and masks) is this assignment's decoder;
`SlotAutoencoder` joins the two and `reconstruction_loss` is its MSE.

CPU economy: the encoder downsamples by `encoder_stride` (4: a 16x16 feature map at 64x64), and the
decoder broadcasts each slot on a `broadcast` x `broadcast` grid (8; the paper's CLEVR decoder also starts
at 8x8) and doubles it with nearest upsampling + 3x3 convolutions up to `decoder_size` (16), whose 4 output
channels are bilinearly upsampled to the image.

`SlotConfig`'s defaults are the recipe the README measured; train.py's flags (and slot_diffusion's encoder
flags) take their defaults from it through `add_config_flags`.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from common.checkpoint import load_checkpoint
from common.cli import int_in, non_negative_int, positive_int
from common.errors import UserError
from common.models import ModelConfig, rebuild_model


@dataclass(frozen=True)
class SlotConfig(ModelConfig):
    image_size: int = 64
    channels: int = 3
    slots: int = 11
    iterations: int = 3
    slot_dim: int = 64
    encoder_channels: int = 32
    encoder_stride: int = 4        # 1, 2 or 4: the feature map is image_size / encoder_stride square
    mlp_hidden: int = 128          # slot attention's residual MLP
    broadcast: int = 8             # the decoder's first grid; doubled until decoder_size
    decoder_channels: int = 32
    decoder_size: int = 16         # the decoder's CNN stops at this size (0: image_size), then bilinear x up
    implicit_grad: bool = False    # backpropagate through the last iteration only (Chang et al., 2022)
    colour_shortcut: bool = True   # add a linear map of each token's mean input colour to the CNN features
    slot_init: str = "learned"     # a key of SLOT_INITS: shared Gaussian draws, or K learned queries (BO-QSA)
    epsilon: float = 1e-8

    def __post_init__(self):
        for name, flag in CONFIG_FLAGS.items():   # a config from a checkpoint takes what the flags take (ranges;
            value, check = getattr(self, name), flag.get("type")   # the choices are checked below)
            try:
                fits = check is None or check(str(value)) == value
            except (argparse.ArgumentTypeError, ValueError):
                fits = False
            if not fits:
                raise ValueError(f"{name} {str(value)[:40]} is not a value --{name.replace('_', '-')} takes")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must lie between 0 and 1, got {self.epsilon}")
        steps = math.log2(self.image_size / self.broadcast)
        if self.broadcast > self.image_size or steps != int(steps):
            raise ValueError(f"image size {self.image_size} must be the broadcast grid {self.broadcast} "
                             f"times a power of two")
        if self.encoder_stride not in (1, 2, 4) or self.image_size % self.encoder_stride:
            raise ValueError(f"encoder stride must be 1, 2 or 4 and divide the image size, got {self.encoder_stride}")
        if self.slot_init not in SLOT_INITS:
            raise ValueError(f"slot init must be one of {', '.join(SLOT_INITS)}, got {self.slot_init!r}")
        if self.implicit_grad and self.slot_init == "learned":
            raise ValueError(IMPLICIT_GRAD_NEEDS_GAUSSIAN)
        out = self.output_size
        if not (self.broadcast <= out <= self.image_size) or math.log2(out / self.broadcast) % 1 \
                or self.image_size % out:
            raise ValueError(f"decoder size {out} must lie between the broadcast grid {self.broadcast} and the image "
                             f"size {self.image_size}, a power-of-two multiple of the grid")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SlotConfig":
        """A stored config; a field it lacks was written before the field existed and takes the value that
        meant then (ABSENT), not today's default."""
        if isinstance(values, Mapping):
            values = {**{k: v for k, v in ABSENT.items() if k not in values}, **values}
        return super().from_dict(values)

    @property
    def output_size(self) -> int:
        return self.decoder_size or self.image_size

    @property
    def feature_size(self) -> int:
        return self.image_size // self.encoder_stride

    @property
    def has_unused_parameters(self) -> bool:
        """Learned queries leave the Gaussian's mu / log-sigma outside the loss (SlotAttention keeps them, so
        every checkpoint has one layout): DistributedDataParallel must not wait for their gradients."""
        return self.slot_init == "learned"

    def describe(self) -> str:
        upsample = f", bilinear to {self.image_size}" if self.output_size != self.image_size else ""
        return (f"CNN encoder {self.encoder_channels}ch{' + colour shortcut' if self.colour_shortcut else ''} -> "
                f"{self.feature_size}x{self.feature_size} features, {self.slots} slots x {self.slot_dim}"
                f"{' (learned queries, BO-QSA)' if self.slot_init == 'learned' else ''}, {self.iterations} iterations, "
                f"broadcast decoder "
                f"{self.broadcast}->{self.output_size}{upsample} ({self.decoder_channels}ch)")


def coordinate_grid(size: int, device=None) -> torch.Tensor:
    """(size, size, 4): x, y, 1-x, 1-y in [0, 1] (the paper's build_grid)."""
    ramp = torch.linspace(0.0, 1.0, size, device=device)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    return torch.stack([x, y, 1 - x, 1 - y], dim=-1)


class SoftPositionEmbed(nn.Module):
    """Adds a learned linear projection of the coordinate grid to a channels-last feature map."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.project = nn.Linear(4, dim)
        self.register_buffer("grid", coordinate_grid(size), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:   # (B, H, W, D)
        return features + self.project(self.grid)


SLOT_INITS = {
    # K draws from one learned Gaussian N(mu, sigma^2) (the paper's): the slots are exchangeable
    "gaussian": "K draws from a learned Gaussian (Locatello et al., 2020)",
    # K learned query vectors, one per slot, with BO-QSA's bi-level straight-through update (Jia et al., 2023):
    # the last iteration starts from the detached slots plus (queries - queries.detach()), so the
    # queries get the gradient of that iteration as if they had been its input
    "learned": "K learned queries with the straight-through bi-level update (BO-QSA, Jia et al., 2023)",
}
# what a stored config without the field meant: both came after the first checkpoints, which had neither
ABSENT = {"colour_shortcut": False, "slot_init": "gaussian"}
# learned queries already start the last iteration from the detached slots (BO-QSA's update), so implicit_grad
# would change nothing there
IMPLICIT_GRAD_NEEDS_GAUSSIAN = ("implicit_grad acts only with slot_init 'gaussian' (learned queries already "
                                "differentiate the last iteration alone)")


class SlotAttention(nn.Module):
    """Slots compete for the inputs: softmax over slots, weighted mean over inputs, GRU update and a
    residual MLP, `iterations` times. Equivariant in the slots, invariant to the order of the inputs."""

    def __init__(self, slots: int, dim: int, iterations: int = 3, mlp_hidden: int = 128, epsilon: float = 1e-8,
                 implicit_grad: bool = False, init: str = "gaussian"):
        super().__init__()
        if init not in SLOT_INITS:
            raise ValueError(f"slot init must be one of {', '.join(SLOT_INITS)}, got {init!r}")
        self.slots, self.dim, self.iterations, self.epsilon = slots, dim, iterations, epsilon
        self.implicit_grad, self.init = implicit_grad, init
        self.scale = dim ** -0.5
        # the paper's initialisation (Xavier-uniform for both): sigma starts near 1, so the K initial
        # slots differ enough to break their symmetry early (sigma ~ 0.1 leaves them identical for long)
        self.mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, dim)))
        self.log_sigma = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, dim)))
        if init == "learned":   # a parameter only then, so the Gaussian models' checkpoints load unchanged
            self.queries = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, slots, dim)))
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, dim))

    def initial_slots(self, batch: int, generator: torch.Generator | None = None, slots: int | None = None
                      ) -> torch.Tensor:
        """(B, K, D) draws from the learned Gaussian N(mu, sigma^2); with learned queries, the queries
        (the first K of them, or the queries cycled when more are asked for: the library's baseline)."""
        if self.init == "learned":
            count = slots or self.slots
            index = torch.arange(count, device=self.queries.device) % self.slots
            return self.queries[:, index].expand(batch, -1, -1)
        noise = torch.randn(batch, slots or self.slots, self.dim, device=self.mu.device, generator=generator)
        return self.mu + self.log_sigma.exp() * noise.to(self.mu.dtype)

    def forward(self, inputs: torch.Tensor, slots: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, N, D) -> slots (B, K, D), attention (B, K, N) of the last iteration (sums to 1
        over the slots at every input)."""
        inputs = self.norm_inputs(inputs)
        k, v = self.to_k(inputs), self.to_v(inputs)
        if slots is None:
            slots = self.initial_slots(inputs.shape[0], generator)
        start = slots
        batch, count, dim = slots.shape
        attention = inputs.new_zeros(batch, count, inputs.shape[1])
        for iteration in range(self.iterations):
            if self.init == "learned" and iteration == self.iterations - 1:
                slots = slots.detach() + start - start.detach()   # BO-QSA: straight through to the queries
            elif self.implicit_grad and iteration == self.iterations - 1:
                slots = slots.detach()   # the fixed-point gradient: only the last iteration is differentiated
            previous = slots
            q = self.to_q(self.norm_slots(slots))
            attention = torch.softmax(torch.einsum("bkd,bnd->bkn", q, k) * self.scale, dim=1)
            weights = attention + self.epsilon
            weights = weights / weights.sum(dim=-1, keepdim=True)
            updates = torch.einsum("bkn,bnd->bkd", weights, v)
            slots = self.gru(updates.reshape(-1, dim), previous.reshape(-1, dim)).reshape(batch, count, dim)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attention


class Encoder(nn.Module):
    """Image (B, C, H, W) in [0, 1] -> input vectors (B, N, D): CNN, positional encoding, flatten,
    LayerNorm + MLP."""

    def __init__(self, c: SlotConfig):
        super().__init__()
        width = c.encoder_channels
        first, second = (2, 2) if c.encoder_stride == 4 else (1, c.encoder_stride)
        self.cnn = nn.Sequential(
            nn.Conv2d(c.channels, width, 5, stride=first, padding=2), nn.ReLU(),
            nn.Conv2d(width, width, 5, stride=second, padding=2), nn.ReLU(),
            nn.Conv2d(width, width, 5, padding=2), nn.ReLU(),
            nn.Conv2d(width, c.slot_dim, 5, padding=2), nn.ReLU())
        self.position = SoftPositionEmbed(c.slot_dim, c.feature_size)
        self.mlp = nn.Sequential(nn.LayerNorm(c.slot_dim), nn.Linear(c.slot_dim, c.slot_dim), nn.ReLU(),
                                 nn.Linear(c.slot_dim, c.slot_dim))
        # the colour shortcut: the input averaged over each token's stride x stride patch, projected to D and
        # added to the CNN's features, so every token carries its colour from the first step (without it the
        # slots learn brightness and position first, and blob-shaped slots split the objects; README)
        self.colour = nn.Linear(c.channels, c.slot_dim) if c.colour_shortcut else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1                                               # (B, C, H, W) in [-1, 1]
        features = self.cnn(x).permute(0, 2, 3, 1)                      # (B, h, w, D)
        if self.colour is not None:
            patches = F.adaptive_avg_pool2d(x, features.shape[1:3]).permute(0, 2, 3, 1)   # (B, h, w, C)
            features = features + self.colour(patches)
        features = self.position(features).flatten(1, 2)                # (B, N, D)
        return self.mlp(features)


class SlotEncoder(nn.Module):
    """Image -> slots: the part slot_diffusion reuses."""

    def __init__(self, config: SlotConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.slot_attention = SlotAttention(config.slots, config.slot_dim, config.iterations, config.mlp_hidden,
                                            config.epsilon, config.implicit_grad, config.slot_init)

    def forward(self, images: torch.Tensor, slots: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.slot_attention(self.encoder(images), slots, generator)


class SpatialBroadcastDecoder(nn.Module):
    """Each slot tiled over a broadcast grid with the positional encoding -> CNN (upsampling x2 per
    stage to the image size) -> RGB + one mask logit per pixel."""

    def __init__(self, c: SlotConfig):
        super().__init__()
        self.config = c
        width = c.decoder_channels
        self.position = SoftPositionEmbed(c.slot_dim, c.broadcast)
        layers: list[nn.Module] = [nn.Conv2d(c.slot_dim, width, 3, padding=1), nn.ReLU()]
        for _ in range(int(math.log2(c.output_size // c.broadcast))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(width, c.channels + 1, 3, padding=1)]
        self.cnn = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (B, K, D) -> rgb (B, K, C, H, W) in about [0, 1], mask logits (B, K, 1, H, W)."""
        batch, count, dim = slots.shape
        size = self.config.broadcast
        grid = slots.reshape(batch * count, 1, 1, dim).expand(-1, size, size, -1)
        out = self.cnn(self.position(grid).permute(0, 3, 1, 2))
        if self.config.output_size != self.config.image_size:
            out = F.interpolate(out, size=self.config.image_size, mode="bilinear", align_corners=False)
        out = out.reshape(batch, count, *out.shape[1:])
        return (out[:, :, :-1] + 1) / 2, out[:, :, -1:]


class SlotAutoencoder(nn.Module):
    def __init__(self, config: SlotConfig):
        super().__init__()
        self.config = config
        self.slot_encoder = SlotEncoder(config)
        self.decoder = SpatialBroadcastDecoder(config)

    def decode(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """Slots -> per-slot rgb, masks (softmax over the slots: they sum to 1 at every pixel) and the
        reconstruction sum_k mask_k * rgb_k."""
        rgb, logits = self.decoder(slots)
        masks = torch.softmax(logits, dim=1)
        return {"rgb": rgb, "masks": masks, "recon": (masks * rgb).sum(dim=1)}

    def forward(self, images: torch.Tensor, slots: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        slots, attention = self.slot_encoder(images, slots, generator)
        return {**self.decode(slots), "slots": slots, "attention": attention}


def load_autoencoder(path) -> tuple[SlotAutoencoder, dict]:
    """A SlotAutoencoder from a checkpoint.pt of slot_attention/train.py (a clear error for any other file),
    and the checkpoint's whole state (epoch, ...)."""
    state = load_checkpoint(path)
    return rebuild_model(state, lambda d: SlotAutoencoder(SlotConfig.from_dict(d)), path,
                         "slot_attention/train.py"), state


def reconstruction_loss(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel and channel (the paper's loss)."""
    return F.mse_loss(recon, images)


def mask_area_penalty(masks: torch.Tensor) -> torch.Tensor:
    """(B, K, 1, H, W) masks -> the sum over the slots of each slot's squared share of the image, averaged over
    the batch: 1/K when every slot holds an equal share, 1 when one slot holds the whole image.

    Convex in the shares, so it is lowered most by splitting the largest segment. With 11 slots and 2-6
    objects, that keeps the spare slots on the background (harmless to FG-ARI) instead of letting the
    background gather into one slot, which frees the spare slots to cut the objects up (README)."""
    share = masks.mean(dim=(2, 3, 4))                                   # (B, K): each slot's mean mask value
    return share.square().sum(dim=1).mean()


def predicted_segmentation(masks: torch.Tensor) -> torch.Tensor:
    """(B, K, 1, H, W) masks -> (B, H, W) slot index of the largest mask at each pixel."""
    return masks.squeeze(2).argmax(dim=1)


# The command-line flag of each SlotConfig field (--slot-dim for slot_dim); its default is the field's, so --help
# shows what a run uses. train.py takes them all; slot_diffusion's train.py takes ENCODER_FIELDS (its encoder is
# this one). image_size is a data flag (slot_attention.data.add_scene_flags); channels and epsilon have no flag.
MAX_ITERATIONS = 50   # the paper trains with 3 and tests up to 7; 1e8 grew the autograd graph until memory ran out
CONFIG_FLAGS: dict[str, dict] = {
    "slots": dict(type=positive_int, help="slots per image"),
    "iterations": dict(type=int_in(1, MAX_ITERATIONS), help=f"slot attention iterations, at most {MAX_ITERATIONS}"),
    "slot_dim": dict(type=positive_int, help="slot size"),
    "encoder_channels": dict(type=positive_int, help="encoder CNN width"),
    "encoder_stride": dict(type=int, choices=(1, 2, 4),
                           help="the encoder's downsampling: 4 gives 16x16 features (and attention maps) at 64x64"),
    "mlp_hidden": dict(type=positive_int, help="slot MLP width"),
    "slot_init": dict(choices=list(SLOT_INITS),
                      help="initial slots: gaussian (K draws from one learned Gaussian) or learned (K learned queries "
                           "with BO-QSA's straight-through bi-level update)"),
    "colour_shortcut": dict(action=argparse.BooleanOptionalAction,
                            help="add a linear map of each token's mean input colour to the encoder's CNN features "
                                 "(the slots then carry colour from the start; README)"),
    "implicit_grad": dict(action=argparse.BooleanOptionalAction,
                          help="backpropagate through the last slot-attention iteration only (Chang et al., 2022); "
                               "with --slot-init gaussian only"),
    "broadcast": dict(type=positive_int, help="the decoder's broadcast grid, doubled up to --decoder-size"),
    "decoder_channels": dict(type=positive_int, help="decoder CNN width"),
    "decoder_size": dict(type=non_negative_int,
                         help="the decoder CNN stops at this size, then bilinear upsampling to the image size; "
                              "0: the image size"),
}
ENCODER_FIELDS = ("slots", "iterations", "slot_dim", "encoder_channels", "encoder_stride", "mlp_hidden", "slot_init",
                  "colour_shortcut", "implicit_grad")
DECODER_FIELDS = ("broadcast", "decoder_channels", "decoder_size")


def add_config_flags(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    """One flag per SlotConfig field in `fields`, with the field's default."""
    defaults = SlotConfig()
    for name in fields:
        spec = dict(CONFIG_FLAGS[name])
        parser.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name),
                            help=spec.pop("help") + " (default: %(default)s)", **spec)


def config_from_args(args: argparse.Namespace, fields: Sequence[str]) -> SlotConfig:
    """The SlotConfig of parsed flags (`fields` and --image-size; the other fields their defaults); a
    combination that does not fit is one UserError naming the flags."""
    values = {name: getattr(args, name) for name in fields}
    if values.get("implicit_grad") and values.get("slot_init") == "learned":
        raise UserError("--implicit-grad acts only with --slot-init gaussian (learned queries already differentiate "
                        "the last iteration alone): add --slot-init gaussian, or leave --implicit-grad out")
    try:
        return SlotConfig(image_size=args.image_size, **values)
    except ValueError as err:
        named = [name for name in ("image_size", "encoder_stride", *DECODER_FIELDS) if name in (*fields, "image_size")]
        raise UserError(f"{err}; change " + " or ".join(f"--{name.replace('_', '-')}" for name in named)) from None
