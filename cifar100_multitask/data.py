"""CIFAR-100 with a three-level label hierarchy: 100 fine classes -> CIFAR-100's 20 superclasses -> 9
groups (the map below, written once), pooled (train + test = 60,000 images) and split 70:30 / 80:20
/ 90:10. Real files are read by common.datasets (cifar-100-python under --data-root); offline, the
generated stand-in of hierarchy_data.py draws images whose look follows the same three levels.
Also: the long-tailed subsampling of the training part (--imbalance) and the class-weighted sampler."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from common.datasets import CIFAR100_FINE_NAMES, CIFAR100_FINE_TO_SUPER, CIFAR100_SUPERCLASS_NAMES, ImageDataset, \
    load_image_dataset
from common.errors import UserError
from cifar100_multitask.hierarchy_data import ancestors, cifar100_stand_in

# The 20 superclasses in 9 groups: the one place this map is written.
GROUPS: dict[str, tuple[str, ...]] = {
    "aquatic_animals": ("aquatic_mammals", "fish"),
    "invertebrates": ("insects", "non-insect_invertebrates"),
    "large_animals": ("large_carnivores", "large_omnivores_and_herbivores"),
    "small_animals": ("medium_mammals", "small_mammals", "reptiles"),
    "people": ("people",),
    "plants": ("flowers", "fruit_and_vegetables", "trees"),
    "household_objects": ("food_containers", "household_electrical_devices", "household_furniture"),
    "outdoor_scenes": ("large_man-made_outdoor_things", "large_natural_outdoor_scenes"),
    "vehicles": ("vehicles_1", "vehicles_2"),
}
SPLITS = {"70:30": 0.7, "80:20": 0.8, "90:10": 0.9}  # train share of the pooled images
HEADS = ("fine", "super", "group")                     # the levels, finest first


@dataclass(frozen=True)
class Hierarchy:
    """Names per level and the parent maps fine -> super -> group."""
    fine_names: tuple[str, ...]
    super_names: tuple[str, ...]
    group_names: tuple[str, ...]
    fine_to_super: np.ndarray   # (100,) int64
    super_to_group: np.ndarray  # (20,) int64

    @property
    def parents(self) -> list[np.ndarray]:
        return [self.fine_to_super, self.super_to_group]

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(HEADS, (len(self.fine_names), len(self.super_names), len(self.group_names))))

    @property
    def names(self) -> dict[str, tuple[str, ...]]:
        return dict(zip(HEADS, (self.fine_names, self.super_names, self.group_names)))

    def fine_to(self, head: str) -> np.ndarray:
        """Each fine class's label at `head`'s level: (100,) int64."""
        return ancestors(self.parents)[HEADS.index(head)]

    def labels(self, fine: np.ndarray) -> dict[str, np.ndarray]:
        """Fine labels (N,) -> {"fine", "super", "group"}: (N,) each."""
        return {head: self.fine_to(head)[fine] for head in HEADS}


def build_hierarchy(groups: dict[str, tuple[str, ...]] = GROUPS) -> Hierarchy:
    """The hierarchy from CIFAR-100's own fine -> superclass map and `groups`; every superclass must be
    in exactly one group (a UserError names the ones that are not)."""
    owner: dict[str, list[str]] = {name: [] for name in CIFAR100_SUPERCLASS_NAMES}
    for group, members in groups.items():
        for member in members:
            if member not in owner:
                raise UserError(f"group {group} names an unknown superclass {member}")
            owner[member].append(group)
    wrong = {name: found for name, found in owner.items() if len(found) != 1}
    if wrong:
        raise UserError("every superclass must be in exactly one group; not so for "
                        + ", ".join(f"{k} (in {len(v)})" for k, v in wrong.items()))
    group_names = tuple(groups)
    super_to_group = np.array([group_names.index(owner[name][0]) for name in CIFAR100_SUPERCLASS_NAMES])
    return Hierarchy(tuple(CIFAR100_FINE_NAMES), tuple(CIFAR100_SUPERCLASS_NAMES), group_names,
                     CIFAR100_FINE_TO_SUPER.copy(), super_to_group)


HIERARCHY = build_hierarchy()


@dataclass
class Pooled:
    images: np.ndarray  # (N, 32, 32, 3) uint8, train + test of the source pooled
    fine: np.ndarray    # (N,) int64
    source: str


def load_pooled(mode: str, root: Path, *, seed: int, smoke: bool, per_class: int) -> Pooled:
    """Real CIFAR-100 when present (--data auto/real), else the three-level stand-in with `per_class`
    images per fine class in all (five sixths of them in its train part, like CIFAR-100's 500 + 100)."""
    test_per_class = max(1, per_class // 6)
    stand_in = partial(cifar100_stand_in, super_to_group=HIERARCHY.super_to_group,
                       per_class=per_class - test_per_class, test_per_class=test_per_class)
    data: ImageDataset = stand_in(seed) if smoke else \
        load_image_dataset("cifar100", mode, Path(root), seed=seed, stand_in=stand_in)
    if data.is_real:
        for split, fine, coarse in (("train", data.y_train, data.aux_train["coarse"]),
                                    ("test", data.y_test, data.aux_test["coarse"])):
            if not np.array_equal(HIERARCHY.fine_to_super[fine], coarse):
                raise UserError(f"the coarse labels of CIFAR-100's {split} file disagree with CIFAR-100's "
                                f"fine -> superclass map; the file is damaged: delete it and fetch it again")
    return Pooled(np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test]),
                  data.source)


def split_indices(n: int, train_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, test) index arrays over the pooled images: round(train_share * n) for training."""
    order = np.random.default_rng([seed, 21]).permutation(n)
    n_train = int(round(train_share * n))
    if not 0 < n_train < n:
        raise UserError(f"a {train_share:.0%} split of {n} images leaves one side empty; use more data")
    return order[:n_train], order[n_train:]


def long_tail(fine: np.ndarray, ratio: float, seed: int, num_classes: int = 100) -> np.ndarray:
    """Indices into `fine` keeping class k's share ratio ** (-k / (K - 1)) of its examples (at least
    one): class 0 keeps all, class K-1 one `ratio`-th (an exponential long tail, the fine labels'
    alphabetical order deciding which classes are rare). ratio 1 keeps everything."""
    if ratio < 1:
        raise UserError(f"--imbalance must be >= 1 (most / least frequent class), got {ratio}")
    rng = np.random.default_rng([seed, 23])
    keep = []
    for k in range(num_classes):
        members = np.flatnonzero(fine == k)
        share = ratio ** (-k / max(num_classes - 1, 1))
        keep.append(rng.permutation(members)[:max(1, int(round(share * len(members))))] if len(members) else members)
    return np.sort(np.concatenate(keep))


def class_weighted_order(labels: torch.Tensor, num_classes: int, *, seed: int, epoch: int) -> torch.Tensor:
    """One epoch of the class-weighted sampler: len(labels) indices drawn with replacement, each
    example with probability proportional to 1 / (its class's count), so every class is drawn
    equally often in expectation. Depends only on (seed, epoch), like tensor_batches' shuffling."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).double()   # (K,)
    weights = 1.0 / counts[labels.cpu()]                                      # (N,)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
