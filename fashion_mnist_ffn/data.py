"""Fashion-MNIST for the FFN: the common loader (torchvision's layout under --data-root, downloaded
when online, the embedded stand-in when not) or keras.datasets.fashion_mnist, the seed's loader
(`--loader keras`, KERAS_BACKEND=torch). 10% of train is held out for validation."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from common.datasets import FASHION_NAMES, ImageDataset, image_stand_in, load_image_dataset
from common.data_source import resolve_data
from common.download import fetch
from common.errors import UserError

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz")


@dataclass
class FashionSplits:
    x_train: np.ndarray       # (N_train, 784) float32, standardised with the train split's statistics
    y_train: np.ndarray       # (N_train,) int64
    x_val: np.ndarray         # (N_val, 784): the held-out part of the official train set
    y_val: np.ndarray
    x_test: np.ndarray        # (N_test, 784): the official test set
    y_test: np.ndarray
    train_images: np.ndarray  # (N_train, 28, 28) uint8, for figures
    test_images: np.ndarray   # (N_test, 28, 28) uint8
    classes: list[str]
    source: str


def keras_cache_dir() -> Path:
    """Where keras keeps (and looks for) fashion-mnist: $KERAS_HOME/datasets/fashion-mnist."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    return home / "datasets" / "fashion-mnist"


def _load_keras(mode: str, root: Path, seed: int, smoke: bool) -> ImageDataset:
    """keras.datasets.fashion_mnist.load_data(): reads its cache, downloading into it when online."""
    cache = keras_cache_dir()

    def download() -> None:
        fetch([KERAS_URL], _keras_load_data, lambda: print(f"keras: downloading Fashion-MNIST into {cache} ..."))

    data, _ = resolve_data(
        mode, name="Fashion-MNIST", where=f"keras's cache {cache}", needs=", ".join(KERAS_FILES),
        present=lambda: all((cache / name).exists() for name in KERAS_FILES), download=download,
        read=lambda: _read_keras(cache), stand_in=lambda: image_stand_in("fashion_mnist", seed, smoke), smoke=smoke,
        hint="put the files there, or use --loader common --data-root <folder with FashionMNIST/raw>")
    return data


def _read_keras(cache: Path) -> tuple[ImageDataset, str]:
    (x_train, y_train), (x_test, y_test) = _keras_load_data()
    if x_train.ndim != 3 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UserError(f"keras's Fashion-MNIST files in {cache} do not fit together "
                        f"({x_train.shape} images, {y_train.shape} labels); delete them and fetch them again")
    if max(y_train.max(initial=0), y_test.max(initial=0)) >= len(FASHION_NAMES):
        raise UserError(f"label out of range in {cache}; delete the files and fetch them again")
    source = (f"real: Fashion-MNIST via keras.datasets ({len(y_train):,} train / {len(y_test):,} test) "
              f"from {cache}")
    return ImageDataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), FASHION_NAMES,
                        source), source


def _keras_load_data():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from keras.datasets import fashion_mnist   # keras is heavy (seconds): only for its download

    try:
        return fashion_mnist.load_data()
    except (OSError, EOFError, ValueError) as err:
        raise UserError(f"keras could not read Fashion-MNIST from {keras_cache_dir()} ({err}); "
                        f"delete the files and fetch them again") from None


def _load_common(mode: str, root: Path, seed: int, smoke: bool) -> ImageDataset:
    return load_image_dataset("fashion_mnist", mode, root, seed=seed, smoke=smoke)


LOADERS: dict[str, Callable[[str, Path, int, bool], ImageDataset]] = {"common": _load_common, "keras": _load_keras}


def hold_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train_idx, val_idx) with round(fraction * n) examples held out (at least one)."""
    order = np.random.default_rng([seed, 6]).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return order[n_val:], order[:n_val]


def load_fashion(*, loader: str, mode: str, root: Path, seed: int, smoke: bool,
                 val_fraction: float = 0.1) -> FashionSplits:
    data = LOADERS[loader](mode, Path(root), seed, smoke)
    train_idx, val_idx = hold_out(len(data.y_train), val_fraction, seed)
    flat_train = data.x_train.reshape(len(data.x_train), -1).astype(np.float32) / 255.0  # (N, 784) in [0, 1]
    flat_test = data.x_test.reshape(len(data.x_test), -1).astype(np.float32) / 255.0
    mean, std = flat_train[train_idx].mean(), flat_train[train_idx].std()

    def standardise(x: np.ndarray) -> np.ndarray:
        return (x - mean) / std

    return FashionSplits(standardise(flat_train[train_idx]), data.y_train[train_idx],
                         standardise(flat_train[val_idx]), data.y_train[val_idx],
                         standardise(flat_test), data.y_test, data.x_train[train_idx], data.x_test,
                         list(data.classes), data.source)


def one_per_class(images: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """The first image of each class (question 1's grid): (K, 28, 28) and the classes found."""
    found = [k for k in range(num_classes) if np.any(labels == k)]
    return np.stack([images[np.flatnonzero(labels == k)[0]] for k in found]), found
