"""dfad_kd's data: real MNIST / CIFAR-10 (or their embedded stand-ins) as tensors normalised the way the
teacher expects, and the seed's fixed 10% and 20% test subsets. Real images are only ever used to train a
teacher (train_teacher.py), for the real-data baselines, and to evaluate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.datasets import load_image_dataset
from common.errors import UserError
from common.images import ImageTensors, normalise, to_nchw
from common.pretrained import PRETRAINED_MEAN, PRETRAINED_STD

# data set -> (common.datasets name, the input normalisation a teacher trained here uses, image shape C, H, W)
DATASETS = {
    "mnist": ("mnist", (0.1307,), (0.3081,), (1, 28, 28)),
    "cifar10": ("cifar10", PRETRAINED_MEAN, PRETRAINED_STD, (3, 32, 32)),   # the pretrained ResNets' statistics
}
SUBSET_SEED = 2019          # one fixed draw of the test subsets for every run (Fang et al. 2019)
SUBSETS = {"10": 0.10, "20": 0.20}


def check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise UserError(f"unknown --dataset {name}; choose one of {', '.join(DATASETS)}")


def default_norm(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    check_dataset(name)
    return DATASETS[name][1], DATASETS[name][2]


def load_data(name: str, mode: str, root: Path, *, mean, std, seed: int = 0, smoke: bool = False) -> ImageTensors:
    """The set resolved by --data, as (N, C, H, W) float tensors normalised with (mean, std) per channel."""
    check_dataset(name)
    raw = load_image_dataset(DATASETS[name][0], mode, Path(root), seed=seed, smoke=smoke)
    x_train, x_test = to_nchw(raw.x_train), to_nchw(raw.x_test)
    if x_train.shape[1] != len(mean):
        raise UserError(f"{name} has {x_train.shape[1]}-channel images but the normalisation has {len(mean)} "
                        f"channels")
    return ImageTensors(normalise(x_train, mean, std), torch.from_numpy(raw.y_train).long(),
                        normalise(x_test, mean, std), torch.from_numpy(raw.y_test).long(),
                        list(raw.classes), raw.source, tuple(mean), tuple(std))


def seed_test_subsets(count: int) -> dict[str, torch.Tensor]:
    """The seed's 10% and 20% test subsets: the first 10% / 20% of one fixed permutation of the test set
    (the 10% subset lies inside the 20% one). Index tensors, by subset name."""
    order = torch.from_numpy(np.random.default_rng(SUBSET_SEED).permutation(count))
    return {name: order[:max(1, int(round(share * count)))] for name, share in SUBSETS.items()}
