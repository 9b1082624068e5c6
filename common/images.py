"""Image sets as normalised NCHW float tensors, and batch augmentations that run on the device.

The files are read (or downloaded, or replaced by the embedded stand-in under --data auto/generated)
by common.datasets.load_image_dataset; here they become (N, C, H, W) float32 tensors normalised with
the training split's per-channel mean and std (`load_tensors`), or any uint8 arrays do
(`tensors_from_arrays`). Augmentations take a batch already on its device and a
torch.Generator, so a run is deterministic given its seed and no DataLoader worker is needed.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from common.datasets import load_image_dataset
from common.errors import UserError
from common.formats import regular_file

MAX_IMAGE_PIXELS = 64_000_000   # a photo or render this project reads: far below Pillow's bomb limit (178 Mpx)


@contextlib.contextmanager
def open_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS):
    """Image.open(path) (lazy: nothing decoded yet) as a context; an image above `max_pixels` is a UserError
    naming the file, never Pillow's DecompressionBombError traceback or its warning."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(regular_file(path, "remove it or replace it with the image"))
        except Image.DecompressionBombError:
            image = None
    if image is None or image.size[0] * image.size[1] > max_pixels:
        size = "more than 178 Mpx" if image is None else f"{image.size[0]}x{image.size[1]} pixels"
        if image is not None:
            image.close()
        raise UserError(f"{path}: {size}, above the {max_pixels:,} pixels this loader decodes; resize the image "
                        f"or remove it")
    with image:
        yield image


def rgb8(image, path: Path | str = "the image"):
    """A Pillow image as 8-bit RGB. 16-bit (and 32-bit integer) greys are scaled to 8 bits: Pillow's
    convert("RGB") clips them, so a 16-bit scan came out pure white. A float image is a UserError naming `path`."""

    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UserError(f"{path}: {image.mode} pixel values {values.min()}..{values.max()} outside 16 bits; "
                            f"save it as an 8- or 16-bit image")
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:   # 16-bit range: 65535 -> 255
            values = (values * 255 + 32767) // 65535
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        raise UserError(f"{path}: a 32-bit float image, which has no one scale to 8 bits; save it as an 8- or 16-bit "
                        f"image")
    return image.convert("RGB")


@dataclass
class ImageTensors:
    x_train: torch.Tensor   # (N, C, H, W) float32, normalised
    y_train: torch.Tensor   # (N,) int64
    x_test: torch.Tensor    # (M, C, H, W)
    y_test: torch.Tensor    # (M,)
    classes: list[str]
    source: str
    mean: tuple[float, ...]  # per channel, of the uint8 images scaled to [0, 1]
    std: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:  # (C, H, W)
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> "ImageTensors":
        return ImageTensors(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                            self.y_test.to(device), self.classes, self.source, self.mean, self.std)

    def images(self, x: torch.Tensor) -> np.ndarray:
        """Normalised (B, C, H, W) back to displayable (B, H, W[, C]) floats in [0, 1]."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        pixels = (x.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) images in [0, 1] (std floored at 1e-6)."""
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (x - mean) / std per channel."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def tensors_from_arrays(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                        classes: list[str], source: str, name: str = "images") -> ImageTensors:
    """uint8 image arrays and int labels -> ImageTensors normalised by the training split's statistics."""
    train, test = to_nchw(x_train), to_nchw(x_test)
    if train.shape[1:] != test.shape[1:]:
        raise UserError(f"{name}: train images {tuple(train.shape[1:])} and test images "
                        f"{tuple(test.shape[1:])} differ; delete the files and fetch them again")
    mean, std = channel_stats(train)
    return ImageTensors(normalise(train, mean, std), torch.from_numpy(np.asarray(y_train)).long(),
                        normalise(test, mean, std), torch.from_numpy(np.asarray(y_test)).long(),
                        list(classes), source, mean, std)


def load_tensors(dataset: str, mode: str, root: Path, seed: int = 0, smoke: bool = False) -> ImageTensors:
    """One of common.datasets.REAL_SETS, resolved by --data, as normalised tensors."""
    raw = load_image_dataset(dataset, mode, Path(root), seed=seed, smoke=smoke)
    return tensors_from_arrays(raw.x_train, raw.y_train, raw.x_test, raw.y_test, raw.classes, raw.source, dataset)


# augmentations: (x (B, C, H, W) on its device, generator) -> (B, C, H, W) ---------------------------

PAD = 4


def _uniform_ints(low: int, high: int, size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Integers in [low, high] drawn from `generator` (on its own device), moved to `device`."""
    return torch.randint(low, high + 1, (size,), generator=generator, device=generator.device).to(device)


def shift_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Zero-pad by `pad`, then crop the original size shifted by (dy, dx) in [-pad, pad] per image;
    (0, 0) gives the input back. x (B, C, H, W); dy, dx (B,) int64."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))                          # (B, C, H+2p, W+2p)
    rows = (dy + pad).view(b, 1) + torch.arange(h, device=x.device).view(1, h)           # (B, H)
    cols = (dx + pad).view(b, 1) + torch.arange(w, device=x.device).view(1, w)           # (B, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]     # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def random_crop(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    dy = _uniform_ints(-pad, pad, x.shape[0], generator, x.device)
    dx = _uniform_ints(-pad, pad, x.shape[0], generator, x.device)
    return shift_crop(x, dy, dx, pad)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = _uniform_ints(0, 1, x.shape[0], generator, x.device).bool().view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def cutout(x: torch.Tensor, generator: torch.Generator, size: int | None = None) -> torch.Tensor:
    """Zero (the mean, after normalisation) one size x size square per image (DeVries & Taylor 2017;
    size H/2 = 16 on CIFAR), its centre anywhere in the image so it may hang over the border."""
    b, _, h, w = x.shape
    size = size or h // 2
    cy = _uniform_ints(0, h - 1, b, generator, x.device).view(b, 1, 1)
    cx = _uniform_ints(0, w - 1, b, generator, x.device).view(b, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - size // 2, cx - size // 2                                         # (B, 1, 1) each
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)        # (B, H, W)
    return x.masked_fill(inside.unsqueeze(1), 0.0)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "none": lambda x, generator: x,
    "crop_flip": lambda x, generator: random_flip(random_crop(x, generator), generator),
    "crop_flip_cutout": lambda x, generator: cutout(random_flip(random_crop(x, generator), generator), generator),
}
