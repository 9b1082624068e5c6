"""Scenes with ground-truth instance masks: CLEVRTex as released, and two generated stand-ins.

CLEVRTex (under --data-root as `clevrtex_full/` or `clevrtex/`, the layout of the released archive):
numbered sub-folders (0/, 1/, ...) each holding `CLEVRTEX_full_NNNNNN.png` (the RGB(A) render),
`CLEVRTEX_full_NNNNNN_flat.png` (the instance mask: pixel value = object index, 0 = background) and
`CLEVRTEX_full_NNNNNN.json` (the scene's metadata, whose `objects` list bounds the mask's labels).
Images are centre-cropped to a square of 0.8 x the short side (192 of 240, the crop CLEVRTex's
evaluation uses) and resized to --image-size (masks with nearest-neighbour).

Generated stand-ins (deterministic from the seed, made in seconds):
- `flat` (Multi-dSprites-like): 2-6 flat-coloured shapes of four kinds (square, ellipse, triangle,
  heart), random size, rotation and colour, occluding each other, on a random grey background (the
  colored_on_grayscale variant of Multi-dSprites that the Slot Attention paper used);
- `textured` (CLEVRTex-like): 3-10 smaller objects of the same kinds filled with textures (stripes,
  checks, dots; two colours each) and a light shading gradient, on a textured background.
Both give (N, 3, H, W) uint8 images and (N, H, W) uint8 instance masks (0 = background, k = k-th
object, in painting order; later objects occlude earlier ones).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from common.cli import positive_int
from common.data_source import resolve_data
from common.errors import UserError
from common.formats import read_text
from common.images import open_image, rgb8
from slot_attention.model import SlotConfig

KINDS = ("flat", "textured")
SHAPES = ("square", "ellipse", "triangle", "heart")
OBJECTS = {"flat": (2, 6), "textured": (3, 10)}      # objects per scene, inclusive
SCALES = {"flat": (0.10, 0.22), "textured": (0.07, 0.14)}  # half-size as a fraction of the image
CLEVRTEX_FOLDERS = ("clevrtex_full", "clevrtex")
CLEVRTEX_NAME = re.compile(r"^CLEVRTEX_full_(\d{6})\.png$")
CHUNK = 512


@dataclass
class SceneData:
    train_images: torch.Tensor   # (N, 3, H, W) uint8
    train_masks: torch.Tensor    # (N, H, W) uint8, 0 = background
    val_images: torch.Tensor
    val_masks: torch.Tensor
    source: str

    def to(self, device) -> "SceneData":
        return SceneData(self.train_images.to(device), self.train_masks.to(device), self.val_images.to(device),
                         self.val_masks.to(device), self.source)

    @property
    def max_objects(self) -> int:
        return int(max(self.train_masks.max(), self.val_masks.max()))


# ---------------------------------------------------------------------------------------------
# generated scenes
def _inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether local coordinates (u, v) (object frame, half-size 1) fall inside each object's shape."""
    square = (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    ellipse = u * u + v * v * 2.04 <= 1.0
    triangle = (v <= 0.6) & (v >= -1.0 + 1.6 * np.abs(u) / 0.95) & (np.abs(u) <= 0.95)
    x, y = u * 1.15, -v * 1.15 + 0.25
    x2, r = x * x, x * x + y * y - 1
    heart = r * r * r <= x2 * y * y * y
    return np.select([shape == 0, shape == 1, shape == 2], [square, ellipse, triangle], heart)


def _texture(rng: np.random.Generator, n: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """(n, H, W) in [0, 1]: stripes, checks or dots at a random angle and frequency."""
    kind = rng.integers(0, 3, n)[:, None, None]
    angle = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    freq = rng.uniform(6, 14, n).astype(np.float32)[:, None, None]
    a = np.cos(angle) * xx + np.sin(angle) * yy
    b = -np.sin(angle) * xx + np.cos(angle) * yy
    sa, sb = np.sin(2 * np.pi * freq * a), np.sin(2 * np.pi * freq * b)
    return np.select([kind == 0, kind == 1], [sa > 0, (sa > 0) ^ (sb > 0)], sa * sb > 0.5).astype(np.float32)


def _colours(rng: np.random.Generator, n: int, away_from: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) colours in [0, 1]; at least 0.35 (Euclidean) from `away_from` where given."""
    colours = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    if away_from is not None:
        for _ in range(20):
            close = np.linalg.norm(colours - away_from, axis=1) < 0.35
            if not close.any():
                break
            colours[close] = rng.uniform(0, 1, (int(close.sum()), 3)).astype(np.float32)
    return colours


def generate_scenes(n: int, size: int, kind: str, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """n scenes of the stand-in `kind`: images (n, 3, size, size) uint8, masks (n, size, size) uint8."""
    if kind not in KINDS:
        raise UserError(f"unknown stand-in '{kind}'; choose one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind), {"train": 0, "val": 1}.get(split, 2)])
    images = np.empty((n, 3, size, size), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    ramp = ((np.arange(size) + 0.5) / size).astype(np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    low, high = OBJECTS[kind]
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        count = rng.integers(low, high + 1, m)
        if kind == "flat":   # Multi-dSprites' colored_on_grayscale (the variant the Slot Attention paper used)
            background = np.repeat(rng.uniform(0, 1, (m, 1)).astype(np.float32), 3, axis=1)
        else:
            background = _colours(rng, m)
        canvas = np.broadcast_to(background[:, :, None, None], (m, 3, size, size)).copy()
        if kind == "textured":
            second = _colours(rng, m)
            pattern = _texture(rng, m, xx, yy)[:, None] * 0.35
            canvas = canvas * (1 - pattern) + second[:, :, None, None] * pattern
        label = np.zeros((m, size, size), np.uint8)
        for j in range(high):
            present = count > j
            cx, cy = rng.uniform(0.15, 0.85, (2, m)).astype(np.float32)
            scale = rng.uniform(*SCALES[kind], m).astype(np.float32)
            angle = rng.uniform(0, 2 * np.pi, m).astype(np.float32)
            shape = rng.integers(0, len(SHAPES), m)
            colour = _colours(rng, m, background)
            dx = (xx[None] - cx[:, None, None]) / scale[:, None, None]
            dy = (yy[None] - cy[:, None, None]) / scale[:, None, None]
            cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
            u, v = cos * dx + sin * dy, -sin * dx + cos * dy
            inside = _inside(shape[:, None, None], u, v) & present[:, None, None]
            fill = np.broadcast_to(colour[:, :, None, None], (m, 3, size, size))
            if kind == "textured":
                second = _colours(rng, m, colour)
                pattern = _texture(rng, m, u / 8, v / 8)[:, None]
                shade = (1.0 - 0.25 * (u + v + 2) / 4)[:, None]
                fill = (fill * (1 - pattern * 0.6) + second[:, :, None, None] * pattern * 0.6) * shade
            np.copyto(canvas, fill, where=inside[:, None])
            label[inside] = j + 1
        images[start:start + m] = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)
        masks[start:start + m] = label
    return images, masks


# ---------------------------------------------------------------------------------------------
# CLEVRTex as released
def clevrtex_folder(root: Path) -> Path | None:
    for name in CLEVRTEX_FOLDERS:
        if (Path(root) / name).is_dir():
            return Path(root) / name
    return None


def clevrtex_index(folder: Path) -> list[tuple[int, Path]]:
    """(scene number, image path) of every CLEVRTEX_full_NNNNNN.png in the numbered sub-folders, sorted."""
    found = []
    for sub in folder.iterdir():
        if sub.is_dir() and sub.name.isdigit():
            for path in sub.iterdir():
                match = CLEVRTEX_NAME.match(path.name)
                if match:
                    found.append((int(match.group(1)), path))
    return sorted(found)


def _centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    side = int(round(0.8 * min(width, height)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def read_clevrtex_scene(image_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: image (3, size, size) uint8 and instance mask (size, size) uint8."""

    stem = image_path.with_suffix("")
    mask_path, meta_path = Path(f"{stem}_flat.png"), Path(f"{stem}.json")
    for needed in (mask_path, meta_path):
        if not needed.exists():
            raise UserError(f"{needed} is missing (every CLEVRTex image needs its _flat.png mask and .json); "
                            f"restore it or delete the scene")
    try:
        meta = json.loads(read_text(meta_path, "delete the scene or fetch it again"))
        with open_image(image_path) as img, open_image(mask_path) as msk:
            box = _centre_square(*img.size)
            rgb = rgb8(img, image_path).crop(box).resize((size, size), Image.BILINEAR)   # 16-bit renders scaled
            if msk.size != img.size:
                raise UserError(f"{mask_path}: size {msk.size} differs from its image's {img.size}")
            labels = _mask_labels(msk)
            labels = Image.fromarray(labels).crop(box).resize((size, size), Image.NEAREST)
            image, mask = np.asarray(rgb, np.uint8).transpose(2, 0, 1), np.asarray(labels, np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise UserError(f"{image_path.parent}: unreadable scene {stem.name} ({err}); delete it or fetch it "
                        f"again") from None
    except ValueError as err:
        raise UserError(f"{meta_path}: not valid JSON ({err}); delete the scene or fetch it again") from None
    objects = meta.get("objects", []) if isinstance(meta, dict) else []
    if not isinstance(objects, list):
        raise UserError(f"{meta_path}: 'objects' is {_kind(objects)}, not a list of the scene's objects; delete the "
                        f"scene or fetch it again")
    objects = len(objects)
    if objects and mask.max() > objects:
        raise UserError(f"{mask_path}: label {int(mask.max())} out of range (the scene has {objects} objects); "
                        f"the mask does not belong to this scene")
    return image, mask


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _mask_labels(mask) -> np.ndarray:
    """Palette / grey masks hold the object index; a colour mask's distinct colours are numbered
    (black = background 0)."""
    if mask.mode in ("P", "L", "I", "I;16"):
        values = np.asarray(mask)
    else:
        rgb = np.asarray(mask.convert("RGB")).astype(np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        unique, values = np.unique(codes, return_inverse=True)
        values = values.reshape(codes.shape) + (0 if unique[0] == 0 else 1)
    if values.max() > 255:
        raise ValueError(f"mask label {values.max()} above 255")
    return values.astype(np.uint8)


def read_clevrtex(folder: Path, size: int, subsample: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `subsample` scenes (by number) of the set: images (N, 3, size, size), masks (N, size, size)."""
    index = clevrtex_index(folder)
    if not index:
        raise UserError(f"{folder} holds no CLEVRTEX_full_NNNNNN.png in numbered sub-folders; unpack the "
                        f"CLEVRTex archive there")
    index = index[:subsample] if subsample else index
    scenes = [read_clevrtex_scene(path, size) for _, path in index]
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def _split(images: np.ndarray, masks: np.ndarray, val_fraction: float, seed: int):
    order = np.random.default_rng([seed, 7]).permutation(len(images))
    n_val = max(1, int(round(len(images) * val_fraction)))
    if n_val >= len(images):
        raise UserError(f"{len(images)} scenes are too few for a train/val split; read more (--subsample)")
    val, train = order[:n_val], order[n_val:]
    return images[train], masks[train], images[val], masks[val]


def load_scenes(mode: str, root: Path, *, kind: str, image_size: int, n_train: int, n_val: int,
                subsample: int | None, seed: int, smoke: bool = False,
                announce: Callable[[str], None] = print) -> SceneData:
    """Resolve --data (common.data_source): CLEVRTex under --data-root, else (auto) or always
    (generated, --smoke) the stand-in `kind`. CLEVRTex has no automatic download (tens of GB)."""
    root = Path(root)

    def read():
        folder = clevrtex_folder(root)
        images, masks = read_clevrtex(folder, image_size, subsample)
        parts = _split(images, masks, n_val / (n_train + n_val), seed)
        return parts, f"real: CLEVRTex ({len(parts[0]):,} train / {len(parts[2]):,} val) from {folder}"

    def stand_in():
        train, val = (min(n_train, 32), min(n_val, 16)) if smoke else (n_train, n_val)
        parts = (*generate_scenes(train, image_size, kind, seed, "train"),
                 *generate_scenes(val, image_size, kind, seed, "val"))
        low, high = OBJECTS[kind]
        return parts, (f"generated: {kind} scenes, {low}-{high} objects, {image_size}x{image_size} "
                       f"({train:,} train / {val:,} val, seed {seed})")

    parts, source = resolve_data(
        mode, name="CLEVRTex", where=root / CLEVRTEX_FOLDERS[0], needs="<n>/CLEVRTEX_full_NNNNNN.png with its "
        "_flat.png and .json", present=lambda: clevrtex_folder(root) is not None, read=read, stand_in=stand_in,
        hint="unpack the archive there or use --data generated", smoke=smoke, announce=announce)
    return SceneData(*(torch.from_numpy(np.ascontiguousarray(p)) for p in parts), source)


def add_scene_flags(parser, *, n_val: int = 500) -> None:
    """The scene flags (slot_diffusion's train_vae.py and train.py take the same ones, with --n-val 200)."""
    add = parser.add_argument
    add("--stand-in", choices=KINDS, default="flat",
        help="the generated scenes used without CLEVRTex: flat (Multi-dSprites-like) or textured "
             "(CLEVRTex-like) (default: %(default)s)")
    add("--image-size", type=positive_int, default=SlotConfig.image_size,
        help="square image side (default: %(default)s)")
    add("--subsample", type=positive_int, default=None, help="CLEVRTex: read only the first N scenes (default: all)")
    add("--n-train", type=positive_int, default=3000, help="generated training scenes (default: %(default)s)")
    add("--n-val", type=positive_int, default=n_val,
        help="generated val scenes; with CLEVRTex the val share is n-val / (n-train + n-val) (default: %(default)s)")


def scenes_from_flags(args, **options) -> SceneData:
    """load_scenes with a run's flags (add_scene_flags' and the shared --data, --data-root, --seed, --smoke)."""
    return load_scenes(args.data, args.data_root, kind=args.stand_in, image_size=args.image_size, n_train=args.n_train,
                       n_val=args.n_val, subsample=args.subsample, seed=args.seed, smoke=args.smoke, **options)
