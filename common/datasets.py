"""Data resolution for the image sets (--data auto|real|generated, --data-root).

Real sets are read from their usual on-disk layout under --data-root (what torchvision's download
leaves there), downloaded through torchvision when missing and online, and replaced by the embedded
stand-in, announced in one line, when neither is possible (auto) or asked for (generated)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common import generated
from common.data_source import resolve_data, with_source
from common.download import fetch
from common.errors import UserError
from common.formats import read_cifar_batch, read_cifar_meta, read_idx

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_FINE_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]
CIFAR100_SUPERCLASS_NAMES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]
# CIFAR-100's own coarse label of each fine label (the "coarse_labels" its files carry)
CIFAR100_FINE_TO_SUPER = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
], dtype=np.int64)


@dataclass
class ImageDataset:
    """Images as uint8 arrays: (N, H, W) grey or (N, H, W, C) colour; labels (N,) int64."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str                                  # recorded in config.json and every report table
    aux_train: dict[str, np.ndarray] = field(default_factory=dict)  # extra label sets (e.g. coarse)
    aux_test: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def is_real(self) -> bool:
        return self.source.startswith("real")

    def subset(self, n_train: int, n_test: int) -> "ImageDataset":
        """The first n examples of each split (the sets are shuffled already)."""
        return ImageDataset(self.x_train[:n_train], self.y_train[:n_train], self.x_test[:n_test],
                            self.y_test[:n_test], self.classes, self.source,
                            {k: v[:n_train] for k, v in self.aux_train.items()},
                            {k: v[:n_test] for k, v in self.aux_test.items()})


@dataclass(frozen=True)
class RealImageSet:
    """Where a real set lives under --data-root, how to read it, download it, and stand in for it."""
    name: str
    folder: str                                   # relative to --data-root
    required: tuple[str, ...]                     # files whose absence means "not there"
    read: Callable[[Path], ImageDataset]
    torchvision_class: str
    urls: tuple[str, ...]
    stand_in: Callable[[int], ImageDataset]       # seed -> generated (or bundled) data set


def _find(folder: Path, name: str) -> Path:
    """The file itself or its .gz (torchvision keeps both forms)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise UserError(f"missing file {folder / name}")


def _check_labels(labels: np.ndarray, num_classes: int, where: Path) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"label out of range in {where}: found {labels.min()}..{labels.max()}, "
                        f"expected 0..{num_classes - 1}; delete the file and fetch it again")
    return labels.astype(np.int64)


def _read_idx_set(classes: list[str], size: tuple[int, int] = (28, 28)) -> Callable[[Path], ImageDataset]:
    def read(folder: Path) -> ImageDataset:
        splits = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            image_file = _find(folder, f"{prefix}-images-idx3-ubyte")
            images = read_idx(image_file)
            if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != size or not len(images):
                raise UserError(f"{image_file}: {images.dtype} images {images.shape}, expected N >= 1 unsigned-byte "
                                f"images of {size[0]}x{size[1]}; delete the file and fetch it again")
            label_file = _find(folder, f"{prefix}-labels-idx1-ubyte")
            labels = read_idx(label_file)
            if labels.dtype.kind not in "iu" or labels.ndim != 1:
                raise UserError(f"{label_file}: {labels.dtype} labels {labels.shape}, expected one integer label "
                                f"per image; delete the file and fetch it again")
            labels = _check_labels(labels, len(classes), label_file)
            if len(images) != len(labels):
                raise UserError(f"{folder}: {prefix} images {images.shape} do not match {len(labels)} "
                                f"labels; delete the files and fetch them again")
            splits[split] = (images, labels)
        return ImageDataset(*splits["train"], *splits["test"], classes, "real")
    return read


def _read_cifar10(folder: Path) -> ImageDataset:
    batches = sorted(folder.glob("data_batch_*"))
    if not batches:
        raise UserError(f"no data_batch_* files in {folder}")
    parts = [read_cifar_batch(path) for path in batches]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    classes = read_cifar_meta(folder / "batches.meta")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = _check_labels(np.concatenate([p[1] for p in parts]), len(classes), folder)
    return ImageDataset(x_train, y_train, x_test, _check_labels(y_test, len(classes), folder), classes, "real")


def _read_cifar100(folder: Path) -> ImageDataset:
    x_train, y_train = read_cifar_batch(folder / "train", "fine_labels")
    x_test, y_test = read_cifar_batch(folder / "test", "fine_labels")
    coarse = {split: read_cifar_batch(folder / split, "coarse_labels")[1] for split in ("train", "test")}
    classes = read_cifar_meta(folder / "meta", "fine_label_names")
    return ImageDataset(x_train, _check_labels(y_train, 100, folder), x_test, _check_labels(y_test, 100, folder),
                        classes, "real", {"coarse": coarse["train"]}, {"coarse": coarse["test"]})


def _split(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int):
    order = np.random.default_rng([seed, 1]).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def _digits_stand_in(seed: int) -> ImageDataset:
    images, labels = generated.sklearn_digits_28()
    return ImageDataset(*_split(images, labels, 1 / 6, seed), generated.DIGIT_NAMES,
                        "embedded: scikit-learn digits (1,797 real 8x8 scans upscaled to 28x28)")


def _pattern_stand_in(shape, classes, n_train, n_test, coarse: np.ndarray | None = None):
    """Pattern classes; `coarse` (classes,): each class's coarse label, kept as the "coarse" aux labels."""
    def make(seed: int) -> ImageDataset:
        x_train, y_train = generated.pattern_classes(n_train, shape, len(classes), seed)
        x_test, y_test = generated.pattern_classes(n_test, shape, len(classes), seed, "test")
        aux = ({"coarse": coarse[y_train]}, {"coarse": coarse[y_test]}) if coarse is not None else ({}, {})
        return ImageDataset(x_train, y_train, x_test, y_test, classes,
                            f"generated: {len(classes)} pattern classes {shape} (seed {seed})", *aux)
    return make


REAL_SETS: dict[str, RealImageSet] = {
    "mnist": RealImageSet(
        "MNIST", "MNIST/raw", ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
        _read_idx_set(generated.DIGIT_NAMES), "MNIST",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        _digits_stand_in),
    "fashion_mnist": RealImageSet(
        "FashionMNIST", "FashionMNIST/raw", ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
        _read_idx_set(FASHION_NAMES), "FashionMNIST",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        _pattern_stand_in((28, 28), FASHION_NAMES, 6000, 1000)),
    "cifar10": RealImageSet(
        "CIFAR-10", "cifar-10-batches-py", ("test_batch", "batches.meta"), _read_cifar10, "CIFAR10",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        _pattern_stand_in((32, 32, 3), CIFAR10_NAMES, 5000, 1000)),
    "cifar100": RealImageSet(
        "CIFAR-100", "cifar-100-python", ("train", "test", "meta"), _read_cifar100, "CIFAR100",
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        _pattern_stand_in((32, 32, 3), CIFAR100_FINE_NAMES, 10000, 2000, coarse=CIFAR100_FINE_TO_SUPER)),
}


def _present(spec: RealImageSet, root: Path) -> bool:
    folder = root / spec.folder
    return all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in spec.required)


def _download(spec: RealImageSet, root: Path, announce: Callable[[str], None]) -> None:
    def run() -> None:
        import torchvision.datasets as tv_datasets   # heavy (about a second): only when downloading

        root.mkdir(parents=True, exist_ok=True)
        cls = getattr(tv_datasets, spec.torchvision_class)
        for train in (True, False):
            cls(str(root), train=train, download=True)

    fetch(list(spec.urls), run, lambda: announce(f"downloading {spec.name} into {root} ..."))


def image_stand_in(name: str, seed: int, smoke: bool = False,
                   make: Callable[[int], ImageDataset] | None = None) -> tuple[ImageDataset, str]:
    """(stand-in, its source) for one of REAL_SETS: `make` (default: the set's own) from the seed, and
    under --smoke its first 256 train / 128 test examples."""
    data = (make or REAL_SETS[name].stand_in)(seed)
    return with_source(data.subset(256, 128) if smoke else data)


def load_image_dataset(name: str, mode: str, root: Path, *, seed: int = 0, smoke: bool = False,
                       announce: Callable[[str], None] = print,
                       stand_in: Callable[[int], ImageDataset] | None = None) -> ImageDataset:
    """Resolve `--data` for one of REAL_SETS. Smoke runs use a tiny slice of the stand-in.
    `stand_in` replaces the set's default stand-in (an assignment's own variant of it)."""
    if name not in REAL_SETS:
        raise UserError(f"unknown data set '{name}'; choose one of {', '.join(REAL_SETS)}")
    spec, root = REAL_SETS[name], Path(root)
    folder = root / spec.folder

    def read() -> tuple[ImageDataset, str]:
        data = spec.read(folder)
        if not len(data.y_train) or not len(data.y_test):
            raise UserError(f"{folder}: the {'training' if not len(data.y_train) else 'test'} set holds no images; "
                            f"delete the files and fetch them again")
        data.source = f"real: {spec.name} ({len(data.y_train):,} train / {len(data.y_test):,} test) from {folder}"
        return with_source(data)

    data, _ = resolve_data(mode, name=spec.name, where=folder, needs=", ".join(spec.required),
                           present=lambda: _present(spec, root), read=read,
                           stand_in=lambda: image_stand_in(name, seed, smoke, stand_in),
                           download=lambda: _download(spec, root, announce), smoke=smoke, announce=announce)
    return data
