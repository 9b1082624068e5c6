"""A generated image set whose appearance follows a label hierarchy (classes that share an ancestor look
alike): cifar100_multitask's stand-in for CIFAR-100 when the real files are absent.

Every level of the tree contributes a smooth prototype (colour blobs plus an oriented grating); a fine
class's image is the weighted sum of its own prototype and its ancestors', the coarser levels weighing
more. Two fine classes of one superclass therefore share most of their picture and differ in a small
part, while classes in different groups share nothing. The samples are the fine prototype shifted by
a few pixels, with random contrast and pixel noise. CIFAR-100's own names and fine -> superclass map
are facts of the data set, in common.datasets beside its reader."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.datasets import CIFAR100_FINE_NAMES, CIFAR100_FINE_TO_SUPER, CIFAR100_SUPERCLASS_NAMES, \
    ImageDataset

LEVEL_WEIGHT_DECAY = 0.75  # each finer level's prototype weighs this much of its parent's
SPLIT_CODES = {"train": 0, "test": 1}


def ancestors(parents: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For parent maps [fine -> l1, l1 -> l2, ...], each fine class's label at every level:
    [fine ids, l1 of each fine, l2 of each fine, ...] (each (K,) int64)."""
    chain = [np.arange(len(parents[0]) if parents else 0, dtype=np.int64)]
    for parent in parents:
        chain.append(np.asarray(parent, dtype=np.int64)[chain[-1]])
    return chain


def _prototypes(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`count` smooth colour pictures (count, size, size, 3) with values roughly in [-1, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((count, size, size, 3))
    for k in range(count):
        colour = rng.uniform(-1, 1, 3)
        for _ in range(2):
            cy, cx = rng.uniform(0.15, 0.85, 2)
            sigma = rng.uniform(0.08, 0.2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
            out[k] += blob[..., None] * rng.uniform(-1, 1, 3)
        angle, freq = rng.uniform(0, np.pi), rng.uniform(1.5, 5)
        grating = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6.3))
        out[k] += 0.5 * grating[..., None] * colour
    return out


def hierarchical_images(per_class: int, parents: Sequence[np.ndarray], seed: int, split: str = "train",
                        size: int = 32, noise: float = 0.5, max_shift: int = 3
                        ) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of each fine class of the tree given by `parents` (see `ancestors`).
    The prototypes depend on `seed` alone, the samples on (`seed`, `split`). Returns images
    (N, size, size, 3) uint8 in a seeded random order and fine labels (N,) int64."""
    chain = ancestors(parents)
    proto_rng = np.random.default_rng([seed, 7927])
    picture = np.zeros((len(chain[0]), size, size, 3))
    for depth, labels in enumerate(reversed(chain)):  # the root-most level first, weighing most
        level = _prototypes(int(labels.max()) + 1, size, proto_rng)
        picture += LEVEL_WEIGHT_DECAY ** depth * level[labels]
    picture = (0.5 + 0.5 * picture / np.abs(picture).max()).astype(np.float32)  # (K, size, size, 3) in [0, 1]

    rng = np.random.default_rng([seed, per_class, SPLIT_CODES[split], 11])
    fine = np.repeat(np.arange(len(chain[0]), dtype=np.int64), per_class)
    rng.shuffle(fine)
    n = len(fine)
    shift = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    rows = (np.arange(size)[None, :] - shift[:, :1]) % size  # (N, size): np.roll per sample
    cols = (np.arange(size)[None, :] - shift[:, 1:]) % size
    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, 4096):  # chunks keep the float copy small
        part = slice(start, start + 4096)
        shifted = picture[fine[part][:, None, None], rows[part][:, :, None], cols[part][:, None, :]]
        contrast = rng.uniform(0.7, 1.2, size=(len(shifted), 1, 1, 1)).astype(np.float32)
        shifted = 0.5 + (shifted - 0.5) * contrast + noise * rng.standard_normal(shifted.shape, dtype=np.float32)
        images[part] = (shifted.clip(0, 1) * 255).round().astype(np.uint8)
    return images, fine


def cifar100_stand_in(seed: int, *, super_to_group: np.ndarray | None = None, per_class: int = 100,
                      test_per_class: int = 20):
    """CIFAR-100's stand-in: its real fine names and fine -> superclass map, images drawn from
    `hierarchical_images` with two levels, or three when `super_to_group` (20 -> G) is given.
    An ImageDataset whose aux labels hold "coarse" (and "group")."""
    parents = [CIFAR100_FINE_TO_SUPER] + ([np.asarray(super_to_group)] if super_to_group is not None else [])
    levels = ["coarse", "group"][:len(parents)]
    x_train, y_train = hierarchical_images(per_class, parents, seed, "train")
    x_test, y_test = hierarchical_images(test_per_class, parents, seed, "test")

    def aux(fine: np.ndarray) -> dict[str, np.ndarray]:
        return {name: labels[fine] for name, labels in zip(levels, ancestors(parents)[1:])}

    shape = f"{len(CIFAR100_FINE_NAMES)} fine classes in {len(CIFAR100_SUPERCLASS_NAMES)} superclasses" + (
        f" in {int(np.max(super_to_group)) + 1} groups" if super_to_group is not None else "")
    return ImageDataset(x_train, y_train, x_test, y_test, list(CIFAR100_FINE_NAMES),
                        f"generated: hierarchical CIFAR-100 stand-in, {shape}, 32x32x3, "
                        f"{per_class}+{test_per_class} per class (seed {seed})", aux(y_train), aux(y_test))
