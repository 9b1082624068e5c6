"""kd_cifar10's data sets: CIFAR-10 and MNIST through common.images (tensors and augmentations)."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError
from common.images import ImageTensors, load_tensors

DATASETS = ("cifar10", "mnist")


def load_dataset(dataset: str, mode: str, root: Path, seed: int = 0, smoke: bool = False) -> ImageTensors:
    if dataset not in DATASETS:
        raise UserError(f"unknown --dataset {dataset}; choose one of {', '.join(DATASETS)}")
    return load_tensors(dataset, mode, root, seed=seed, smoke=smoke)
