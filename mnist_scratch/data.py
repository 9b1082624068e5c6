"""MNIST pooled (60,000 + 10,000 = 70,000 images) and re-split 70:30, 80:20 or 90:10, as the seed
assignment does; offline, scikit-learn's bundled real digits in MNIST's 28x28 layout."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.datasets import load_image_dataset

SPLITS = {"70:30": 0.7, "80:20": 0.8, "90:10": 0.9}


@dataclass
class MnistSplit:
    x_train: np.ndarray       # (N_train, 784) float32, standardised with the train split's statistics
    y_train: np.ndarray       # (N_train,) int64
    x_test: np.ndarray        # (N_test, 784) float32
    y_test: np.ndarray        # (N_test,) int64
    test_images: np.ndarray   # (N_test, 28, 28) uint8, for figures
    classes: list[str]
    source: str


def split_pooled(images: np.ndarray, labels: np.ndarray, train_fraction: float, seed: int):
    """Shuffle the pooled set with `seed` and cut it at `train_fraction`: (train_idx, test_idx)."""
    order = np.random.default_rng([seed, 2]).permutation(len(labels))
    cut = int(round(train_fraction * len(labels)))
    return order[:cut], order[cut:]


def load_mnist_split(split: str, *, mode: str, root: Path, seed: int, smoke: bool) -> MnistSplit:
    data = load_image_dataset("mnist", mode, root, seed=seed, smoke=smoke)
    images = np.concatenate([data.x_train, data.x_test])   # (N, 28, 28) uint8
    labels = np.concatenate([data.y_train, data.y_test])   # (N,)
    train_idx, test_idx = split_pooled(images, labels, SPLITS[split], seed)
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, 784) in [0, 1]
    mean, std = flat[train_idx].mean(), flat[train_idx].std()
    flat = (flat - mean) / std
    return MnistSplit(flat[train_idx], labels[train_idx], flat[test_idx], labels[test_idx],
                      images[test_idx], data.classes, data.source)
