"""resnet_norms' data: Train / Val / Test image tensors from
- `birds`: the Indian birds folder layout, `<data-root>/indian_birds/{train,valid[,test]}/<species>/*.jpg`
  (or class folders directly under it, with no split folders);
- `caltech101`: torchvision's layout, `<data-root>/caltech101/101_ObjectCategories/<class>/*.jpg`
  (BACKGROUND_Google left out; `--classes` picks classes);
- `cifar10`: CIFAR-10 through common.datasets (32x32);
- the generated stand-in: bird-like drawings (body, wing, head, beak, tail; colours per species) of the
  seed's seven species at any size, used offline and by --smoke.
A split the files do not provide is carved from the training pool, stratified and seeded, by `--split`
(70:15:15 by default); so Train, Val and Test always exist.

Images are decoded once with Pillow (`convert("RGB")`: grayscale JPEGs become three equal channels),
fitted to `--image-size` (the shorter side scaled, the centre cropped) and cached as a tensor file
(uint8 tensors, lists and strings only: read with weights_only=True) keyed by the files' names, sizes
and times, so later runs and epochs never re-decode a JPEG. An unreadable image is SKIPPED and counted:
the count and the first few names are printed and recorded in the data source; an empty class folder
is an error (exit 2), and so is a class folder none of whose images can be read.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from common import REPO_ROOT
from common.data_source import resolve_data
from common.datasets import ImageDataset, load_image_dataset
from common.errors import UserError
from common.checkpoint import temp_file
from common.images import ImageTensors, normalise, open_image, rgb8, tensors_from_arrays, to_nchw
from common.rundir import make_dir

DATASETS = ("birds", "caltech101", "cifar10")
# the seed's seven species (Grad-CAM is shown for these when the data has them)
SEED_CLASSES = ("Cattle Egret", "Coppersmith Barbet", "Indian Peacock", "Red Wattled Lapwing", "Ruddy Shelduck",
                "White Breasted Kingfisher", "White Breasted Waterhen")
BIRDS_FOLDERS = ("indian_birds", "Birds_25")              # tried in this order under --data-root
CALTECH_FOLDER = "caltech101/101_ObjectCategories"
CALTECH_EXCLUDED = ("BACKGROUND_Google",)
SPLIT_FOLDERS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_VERSION = 1
MAX_IMAGE_SIZE = 512    # --image-size: pixels a side (at 512 the stand-in's 700 images already take 4.4 GB)


@dataclass
class SplitTensors:
    """Train and test as common.images.ImageTensors (normalised by the training split's statistics),
    and the validation split normalised the same way."""
    data: ImageTensors
    x_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def source(self) -> str:
        return self.data.source

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.data
        return {"train": (d.x_train, d.y_train), "val": (self.x_val, self.y_val), "test": (d.x_test, d.y_test)}[name]

    def sizes(self) -> dict[str, int]:
        return {name: len(self.split(name)[1]) for name in SPLITS}

    def to(self, device) -> "SplitTensors":
        return SplitTensors(self.data.to(device), self.x_val.to(device), self.y_val.to(device))


def parse_split(text: str) -> tuple[float, float, float]:
    """'70:15:15' -> (0.7, 0.15, 0.15); a missing split is carved from the training pool in these ratios."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0:
        raise UserError(f"--split {text}: expected train:val:test with a positive train share, e.g. 70:15:15")
    total = sum(parts)
    return tuple(p / total for p in parts)


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Indices of each part, class by class in the given fractions (seeded); every part sorted."""
    rng = np.random.default_rng([seed, 17])
    parts: list[list[int]] = [[] for _ in fractions]
    bounds = np.cumsum(fractions)[:-1] / np.sum(fractions)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(bounds * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts)):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


# folders of images --------------------------------------------------------------------------------

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path, excluded=()) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in excluded and not p.name.startswith("."))


def _pick(folders: list[Path], classes: list[str] | None, where: Path) -> list[Path]:
    if not classes:
        return folders
    by_name = {f.name: f for f in folders}
    unknown = [c for c in classes if c not in by_name]
    if unknown:
        raise UserError(f"--classes {' '.join(unknown)} not found in {where}; it has {', '.join(by_name)}")
    return [by_name[c] for c in classes]


def scan_folder_set(root: Path, classes: list[str] | None = None, excluded=()) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: [files]}} of a folder set: split folders (train/valid/test) holding class folders,
    or class folders directly (one pool, split "train"). An empty class folder is a UserError."""
    if not root.is_dir():
        raise UserError(f"no image folder at {root}; put one folder per class there (see resnet_norms/README.md)")
    present = {split: root / name for split, names in SPLIT_FOLDERS.items() for name in names if (root / name).is_dir()}
    if "train" not in present:
        present = {"train": root}
    found: dict[str, dict[str, list[Path]]] = {}
    for split, folder in present.items():
        found[split] = {}
        for class_folder in _pick(_class_folders(folder, excluded), classes, folder):
            files = _images_in(class_folder)
            if not files:
                raise UserError(f"class folder {class_folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                f"add images or remove the folder")
            found[split][class_folder.name] = files
    if not found["train"]:
        raise UserError(f"no class folders in {present['train']}; expected <class>/<image> folders there")
    return found


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8: RGB (16-bit greys scaled to 8 bits), shorter side scaled to `size`,
    centre cropped."""

    with open_image(path) as image:
        image = rgb8(image, path)
        return np.asarray(ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def _cache_key(files: list[Path], size: int) -> str:
    digest = hashlib.sha1(f"v{CACHE_VERSION} {size}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def decode_cached(files: list[Path], size: int, cache_dir: Path,
                  announce=print) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N', size, size, 3) uint8 of the readable files, which files were readable (N,) bool, names of
    the skipped ones), decoded once and cached in `cache_dir` as a tensor file (written atomically)."""
    cache = Path(cache_dir) / f"images_{size}px_{_cache_key(files, size)}.pt"
    if cache.is_file():   # a FIFO or device under the cache's name is replaced, never read
        try:
            state = torch.load(cache, map_location="cpu", weights_only=True)
            images, keep, skipped = state["images"].numpy(), state["keep"].numpy(), list(state["skipped"])
            if keep.shape == (len(files),) and keep.dtype == bool and images.dtype == np.uint8 \
                    and images.shape == (int(keep.sum()), size, size, 3) and len(skipped) == len(files) - len(images):
                return images, keep, skipped
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
        cache.unlink(missing_ok=True)   # damaged, or its arrays do not fit its file list: rebuilt
    images, skipped = [], []
    for path in files:
        try:
            images.append(decode_image(path, size))
        except Exception as err:  # Pillow raises several types for damaged files
            skipped.append(f"{path} ({type(err).__name__})")
            images.append(None)
    keep = np.array([im is not None for im in images], dtype=bool)
    readable = [im for im in images if im is not None]
    stacked = np.stack(readable) if readable else np.zeros((0, size, size, 3), np.uint8)
    make_dir(cache.parent, "--cache-dir")
    fd, tmp = temp_file(cache)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"images": torch.from_numpy(stacked), "keep": torch.from_numpy(keep), "skipped": skipped},
                       handle)
        os.replace(tmp, cache)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write the image cache {cache} ({err.strerror or err}); free space there or pick "
                        f"another --cache-dir") from None
    announce(f"decoded {int(keep.sum()):,} images to {size}x{size} once; cached in {cache}")
    return stacked, keep, skipped


def load_folder_set(root: Path, name: str, *, size: int, split: tuple[float, float, float], seed: int,
                    classes: list[str] | None = None, excluded=(), cache_dir: Path, announce=print) -> dict:
    """{split: (images uint8 (N, S, S, 3), labels (N,))} for train/val/test, the class names and a source line."""
    found = scan_folder_set(Path(root), classes, excluded)
    names = sorted({c for per_class in found.values() for c in per_class})
    files, labels, origin = [], [], []
    for split_name, per_class in found.items():
        for class_name, paths in per_class.items():
            files += paths
            labels += [names.index(class_name)] * len(paths)
            origin += [split_name] * len(paths)
    images, kept, skipped = decode_cached(files, size, cache_dir, announce)
    if skipped:
        announce(f"note: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}")
    start = 0
    for per_class in found.values():   # a class folder none of whose images could be read is empty too
        for paths in per_class.values():
            if not kept[start:start + len(paths)].any():
                raise UserError(f"class folder {paths[0].parent} has no readable images (all {len(paths)} failed to "
                                f"decode, e.g. {paths[0].name}); replace them or remove the folder")
            start += len(paths)
    labels, origin = np.asarray(labels)[kept], np.asarray(origin)[kept]
    parts = {s: np.flatnonzero(origin == s) for s in SPLITS if (origin == s).any()}
    missing = [s for s in SPLITS if s not in parts]
    if missing:   # carve the missing splits from the training pool, stratified, in --split's ratios
        shares = dict(zip(SPLITS, split))
        wanted = ["train", *missing]
        pieces = stratified_split(labels[parts["train"]], tuple(shares[s] for s in wanted), seed)
        pool = parts["train"]
        parts.update({s: pool[idx] for s, idx in zip(wanted, pieces)})
    for s in SPLITS:
        if len(parts[s]) == 0:
            raise UserError(f"{root}: the {s} split is empty; give --split a larger {s} share or add images")
    counts = "/".join(f"{len(parts[s]):,}" for s in SPLITS)
    how = "own splits" if not missing else f"{', '.join(missing)} carved {':'.join(f'{x:.0%}' for x in split)}"
    source = f"real: {name}, {len(names)} classes, {counts} train/val/test ({how}) from {root}"
    if skipped:
        source += f"; {len(skipped)} unreadable image(s) skipped"
    return {"splits": {s: (images[parts[s]], labels[parts[s]]) for s in SPLITS}, "classes": names,
            "source": source, "skipped": skipped}


# the generated stand-in -----------------------------------------------------------------------------

def generated_birds(size: int, seed: int, per_class: int = 100, classes=SEED_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Bird-like drawings: a body ellipse, a wing, a head, a beak and a tail, each species its own colours
    and proportions (jittered per image), placed near the centre (up to 12% off) on a random gradient
    background with noise. Returns images (N, size, size, 3) uint8 and labels (N,). Deterministic in seed."""
    species = np.random.default_rng([seed, 4242])
    palette = species.uniform(0, 1, size=(len(classes), 5, 3))            # body, wing, head, beak, tail
    shape = species.uniform(0.8, 1.25, size=(len(classes), 3))            # body aspect, head size, beak length
    rng = np.random.default_rng([seed, 99, size])
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size                       # (S, S) in (0, 1)
    n = per_class * len(classes)
    labels = np.arange(n) % len(classes)
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3))
    for i, k in enumerate(labels):
        top, bottom = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        canvas = top * (1 - yy[..., None]) + bottom * yy[..., None]       # (S, S, 3) background gradient
        cy, cx = 0.5 + rng.uniform(-0.12, 0.12, 2)
        scale, facing = rng.uniform(0.75, 1.05), rng.choice([-1.0, 1.0])
        colours = np.clip(palette[k] + rng.normal(0, 0.08, (5, 3)), 0, 1)
        aspect, head, beak = shape[k] * rng.uniform(0.92, 1.08, 3)
        dx = facing * (xx - cx)

        # (centre dy, centre dx along the facing direction, radius y, radius x) of each part, before `scale`
        ellipses = [(0.04, -0.2, 0.05, 0.12),                                # tail
                    (0.02, 0.0, 0.14, 0.2 * aspect),                         # body
                    (0.0, -0.03, 0.08, 0.12 * aspect),                       # wing
                    (-0.14, 0.17 * aspect, 0.07 * head, 0.07 * head),        # head
                    (-0.14, 0.17 * aspect + 0.07 * head + 0.04 * beak, 0.018, 0.05 * beak)]  # beak
        parts = [((yy - cy - oy * scale) / (ry * scale)) ** 2 + ((dx - ox * scale) / (rx * scale)) ** 2 <= 1
                 for oy, ox, ry, rx in ellipses]
        for mask, colour in zip(parts, colours[[4, 0, 1, 2, 3]]):
            canvas[mask] = colour
        images[i] = canvas
    images += rng.normal(0, 0.06, images.shape)
    return (images.clip(0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def _generated_set(size: int, seed: int, split, smoke: bool) -> dict:
    per_class = 12 if smoke else 100
    images, labels = generated_birds(size, seed, per_class)
    parts = stratified_split(labels, split, seed)
    return {"splits": {s: (images[idx], labels[idx]) for s, idx in zip(SPLITS, parts)}, "classes": list(SEED_CLASSES),
            "source": f"generated: bird-like drawings, {len(SEED_CLASSES)} species x {per_class}, {size}px "
                      f"(seed {seed})", "skipped": []}


# resolution of --dataset / --data -------------------------------------------------------------------

def _cifar10(mode: str, root: Path, split, seed: int, smoke: bool) -> dict:
    raw: ImageDataset = load_image_dataset("cifar10", mode, root, seed=seed, smoke=smoke)
    train, val = stratified_split(raw.y_train, (split[0], split[1]), seed)
    return {"splits": {"train": (raw.x_train[train], raw.y_train[train]), "val": (raw.x_train[val], raw.y_train[val]),
                       "test": (raw.x_test, raw.y_test)}, "classes": list(raw.classes),
            "source": f"{raw.source}; val: {len(val):,} carved from train", "skipped": []}


def _folder_root(dataset: str, root: Path) -> Path:
    if dataset == "caltech101":
        return root / CALTECH_FOLDER
    return next((root / f for f in BIRDS_FOLDERS if (root / f).is_dir()), root / BIRDS_FOLDERS[0])


def load_data(dataset: str, mode: str, root: Path, *, image_size: int, split=(0.7, 0.15, 0.15), seed: int = 0,
              classes: list[str] | None = None, smoke: bool = False, cache_dir: Path | None = None,
              announce=print) -> SplitTensors:
    """Resolve --dataset / --data into normalised Train / Val / Test tensors."""
    if dataset not in DATASETS:
        raise UserError(f"unknown --dataset {dataset}; choose one of {', '.join(DATASETS)}")
    if image_size > MAX_IMAGE_SIZE:   # a whole set of such images would not fit in memory (40000 px: MemoryError)
        raise UserError(f"--image-size {image_size} is above {MAX_IMAGE_SIZE}, the largest this loader decodes a set "
                        f"at (the seed uses 256); pick a smaller --image-size")
    root = Path(root)
    if dataset == "cifar10":
        raw = _cifar10(mode, root, split, seed, smoke)
    else:
        folder = _folder_root(dataset, root)

        def read() -> tuple[dict, str]:
            found = load_folder_set(folder, dataset, size=image_size, split=split, seed=seed, classes=classes,
                                    excluded=CALTECH_EXCLUDED if dataset == "caltech101" else (),
                                    cache_dir=cache_dir or REPO_ROOT / "data" / "cache" / "resnet_norms",
                                    announce=announce)
            return found, found["source"]

        def stand_in() -> tuple[dict, str]:
            made = _generated_set(image_size, seed, split, smoke)
            return made, made["source"]

        raw, _ = resolve_data(mode, name=dataset, where=folder, needs="one folder of images per class",
                              present=folder.is_dir, read=read, stand_in=stand_in, smoke=smoke, announce=announce,
                              hint="put one folder per class there (see resnet_norms/README.md) or point "
                                   "--data-root at them")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (raw["splits"][s] for s in SPLITS)
    data = tensors_from_arrays(x_tr, y_tr, x_te, y_te, raw["classes"], raw["source"], dataset)
    x_val = normalise(to_nchw(x_va), data.mean, data.std)
    return SplitTensors(data, x_val, torch.from_numpy(np.asarray(y_va)).long())

