"""The slot library and compositional generation.

1. `build_library`: the slots of training images (each with the area its mask covers in its own
   image), clustered with scikit-learn's K-means (`--clusters`).
2. Each cluster gets a role from its members' mean mask area: `background` (>= 20% of the image),
   `empty` (< 0.2%: slots that own no pixels) or `object` (the rest).
3. `compose` (the rule): a new scene copies its object count from a random training scene (its
   slots of role `object`), then draws one background slot and that many object slots. Each draw
   picks a cluster of the role with probability proportional to its size, then a member of it
   uniformly, from a training scene not used yet in this new scene (so every slot comes from a
   different image). The drawn slots are decoded together (masks softmaxed over them).
4. `gaussian_slots`: the baseline: all K slots drawn from slot attention's initial Gaussian and
   decoded without any image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BACKGROUND_AREA, EMPTY_AREA = 0.20, 0.002
ROLES = ("background", "object", "empty")


@dataclass
class SlotLibrary:
    slots: np.ndarray     # (M, D) float32
    areas: np.ndarray     # (M,) share of its image the slot's mask covers
    scenes: np.ndarray    # (M,) index of the training image it came from
    labels: np.ndarray    # (M,) its K-means cluster
    centres: np.ndarray   # (C, D)
    roles: list[str]      # per cluster: background / object / empty

    def members(self, role: str) -> list[np.ndarray]:
        """Indices of the members of each cluster of `role` (clusters without members left out)."""
        groups = [np.flatnonzero(self.labels == c) for c, r in enumerate(self.roles) if r == role]
        return [g for g in groups if len(g)]

    def role_counts(self) -> dict[str, int]:
        return {role: sum(r == role for r in self.roles) for role in ROLES}

    def save(self, path) -> None:
        np.savez_compressed(path, slots=self.slots, areas=self.areas, scenes=self.scenes, labels=self.labels,
                            centres=self.centres, roles=np.array(self.roles))


@torch.no_grad()
def collect_slots(model, images: torch.Tensor, *, batch_size: int = 64, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slots (M, D), mask areas (M,) and scene indices (M,) of uint8 images (N, C, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    slots, areas = [], []
    for start in range(0, len(images), batch_size):
        out = model(images[start:start + batch_size].to(device).float() / 255, generator=generator)
        slots.append(out["slots"].flatten(0, 1).float().cpu())
        areas.append(out["masks"].float().mean(dim=(2, 3, 4)).flatten().cpu())
    per_scene = model.config.slots
    scenes = np.repeat(np.arange(len(images)), per_scene)
    return torch.cat(slots).numpy(), torch.cat(areas).numpy(), scenes


def cluster_roles(labels: np.ndarray, areas: np.ndarray, clusters: int) -> list[str]:
    roles = []
    for c in range(clusters):
        mean = float(areas[labels == c].mean()) if (labels == c).any() else 0.0
        roles.append("background" if mean >= BACKGROUND_AREA else "empty" if mean < EMPTY_AREA else "object")
    if "background" not in roles and clusters:   # the largest-area cluster stands in for the background
        means = [float(areas[labels == c].mean()) if (labels == c).any() else -1.0 for c in range(clusters)]
        roles[int(np.argmax(means))] = "background"
    return roles


def build_library(model, images: torch.Tensor, clusters: int, *, seed: int = 0, batch_size: int = 64
                  ) -> SlotLibrary:
    from sklearn.cluster import KMeans

    slots, areas, scenes = collect_slots(model, images, batch_size=batch_size, seed=seed)
    clusters = min(clusters, len(slots))
    kmeans = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(slots)
    labels = kmeans.labels_.astype(np.int64)
    return SlotLibrary(slots, areas, scenes, labels, kmeans.cluster_centers_.astype(np.float32),
                       cluster_roles(labels, areas, clusters))


def _draw(library: SlotLibrary, groups: list[np.ndarray], used: set, rng: np.random.Generator) -> int | None:
    if not groups:
        return None
    sizes = np.array([len(g) for g in groups], float)
    members = groups[rng.choice(len(groups), p=sizes / sizes.sum())]
    fresh = [m for m in members if library.scenes[m] not in used]
    pick = int(rng.choice(fresh if fresh else members))
    used.add(int(library.scenes[pick]))
    return pick


def compose(library: SlotLibrary, count: int, seed: int) -> list[np.ndarray]:
    """`count` new slot sets by the rule above; each (1 + objects, D)."""
    rng = np.random.default_rng([seed, 11])
    backgrounds, objects = library.members("background"), library.members("object")
    object_role = np.isin(library.labels, [c for c, r in enumerate(library.roles) if r == "object"])
    per_scene = np.bincount(library.scenes[object_role], minlength=int(library.scenes.max()) + 1)
    scenes = []
    for _ in range(count):
        used: set = set()
        picks = [_draw(library, backgrounds, used, rng)]
        picks += [_draw(library, objects, used, rng) for _ in range(int(rng.choice(per_scene)))]
        scenes.append(library.slots[[p for p in picks if p is not None]])
    return scenes


@torch.no_grad()
def decode_slot_sets(model, slot_sets: list[np.ndarray]) -> torch.Tensor:
    """Decode each set of slots on its own: (N, C, H, W) images in [0, 1]."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.decode(torch.from_numpy(s).to(device).unsqueeze(0))["recon"].clamp(0, 1).cpu()
                      for s in slot_sets])


@torch.no_grad()
def gaussian_slots(model, count: int, seed: int) -> torch.Tensor:
    """The baseline: (count, K, D) slots from slot attention's initial Gaussian."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    return model.slot_encoder.slot_attention.initial_slots(count, generator)


@torch.no_grad()
def decode_batched(model, slots: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([model.decode(slots[i:i + batch_size])["recon"].clamp(0, 1).cpu()
                      for i in range(0, len(slots), batch_size)])
