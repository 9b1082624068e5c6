"""The slot library and compositional generation.

1. `build_library`: the slots of training images, each with the region it owns in its own image (the
   pixels where its mask is the largest): the region's area (share of the image) and spread (the root of
   the summed variances of its pixels' x and y, in image widths), clustered with scikit-learn's K-means
   (`--clusters`).
2. Each slot gets a role from its region (`slot_roles`): `empty` (area < 0.2%), `background` (area >= 20%,
   or spread >= 0.2: scattered over the image; one object's pixels lie close together, and a square of
   half the image's width spreads 0.2) or `object` (the rest). A model that spreads the background over
   several slots, none of them 20% of the image (the mask-area penalty's doing, README), thus still has
   them all as background. Each cluster's role, for the summary, is its members' most common one.
3. `compose` (the rule): a new scene takes the background slots of one random training scene, all of
   them, and copies its object count from another random training scene. Each object is drawn by picking
   a cluster with probability proportional to its object-role members, then one of those uniformly, from
   a training scene not used yet in this new scene (so every object comes from a different image, and
   none from the background's). The drawn slots are decoded together (masks softmaxed over them).
4. `gaussian_slots`: the baseline: all K slots drawn from slot attention's initial Gaussian (with
   learned queries, the queries' per-dimension Gaussian) and decoded without any image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F

from common.cli import positive_int
from slot_attention.model import predicted_segmentation

BACKGROUND_AREA, EMPTY_AREA, BACKGROUND_SPREAD = 0.20, 0.002, 0.20
ROLES = ("background", "object", "empty")
CLUSTERS, LIBRARY_IMAGES = 12, 1000    # the flags' defaults


def add_library_flags(parser) -> None:
    """--clusters and --library-images (slot_attention's and slot_diffusion's train.py build the same library)."""
    add = parser.add_argument
    add("--clusters", type=positive_int, default=CLUSTERS,
        help="K-means clusters of the slot library (default: %(default)s)")
    add("--library-images", type=positive_int, default=LIBRARY_IMAGES,
        help="training images whose slots form the library (default: %(default)s)")


@dataclass
class SlotLibrary:
    slots: np.ndarray       # (M, D) float32
    areas: np.ndarray       # (M,) share of its image the slot owns (its mask the largest there)
    spreads: np.ndarray     # (M,) spread of that region, in image widths
    scenes: np.ndarray      # (M,) index of the training image it came from
    labels: np.ndarray      # (M,) its K-means cluster
    centres: np.ndarray     # (C, D)
    slot_roles: np.ndarray  # (M,) background / object / empty, from its region
    roles: list[str]        # per cluster: its members' most common role

    def objects_by_cluster(self) -> list[np.ndarray]:
        """Indices of the object-role slots of each cluster (clusters without any left out)."""
        groups = [np.flatnonzero((self.labels == c) & (self.slot_roles == "object")) for c in range(len(self.roles))]
        return [g for g in groups if len(g)]

    def role_counts(self) -> dict[str, int]:
        """Clusters per role, and slots per role (`background_slots`, ...)."""
        return {**{role: sum(r == role for r in self.roles) for role in ROLES},
                **{f"{role}_slots": int((self.slot_roles == role).sum()) for role in ROLES}}

    def save(self, path) -> None:
        np.savez_compressed(path, slots=self.slots, areas=self.areas, spreads=self.spreads, scenes=self.scenes,
                            labels=self.labels, centres=self.centres, slot_roles=self.slot_roles.astype(str),
                            roles=np.array(self.roles))


def owned_regions(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 1, H, W) masks -> area (B, K): the share of the image where slot k's mask is the largest, and
    spread (B, K): the root of the summed variances of those pixels' x and y (pixel centres, in image widths;
    0 for a slot that owns nothing)."""
    count, height, width = masks.shape[1], masks.shape[-2], masks.shape[-1]
    owner = F.one_hot(predicted_segmentation(masks), count).permute(0, 3, 1, 2).float()     # (B, K, H, W)
    pixels = owner.sum(dim=(2, 3))                                                          # (B, K)
    x = (torch.arange(width, device=masks.device, dtype=torch.float32) + 0.5) / width     # (W,) in image widths
    y = (torch.arange(height, device=masks.device, dtype=torch.float32) + 0.5) / width    # (H,)

    def variance(counts: torch.Tensor, coordinate: torch.Tensor) -> torch.Tensor:   # counts (B, K, W or H)
        mean = (counts * coordinate).sum(-1) / pixels.clamp(min=1)
        return ((counts * coordinate.square()).sum(-1) / pixels.clamp(min=1) - mean.square()).clamp(min=0)

    spread = (variance(owner.sum(dim=2), x) + variance(owner.sum(dim=3), y)).sqrt()        # (B, K)
    return pixels / (height * width), spread


def slot_roles(areas: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """Each slot's role from its owned region: empty, background (large or scattered) or object."""
    roles = np.full(len(areas), "object", dtype=object)
    roles[(areas >= BACKGROUND_AREA) | (spreads >= BACKGROUND_SPREAD)] = "background"
    roles[areas < EMPTY_AREA] = "empty"
    return roles.astype(str)


@torch.no_grad()
def collect_slots(model, images: torch.Tensor, *, batch_size: int = 64, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slots (M, D), owned areas (M,), their spreads (M,) and scene indices (M,) of uint8 images (N, C, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    slots, areas, spreads = [], [], []
    for start in range(0, len(images), batch_size):
        out = model(images[start:start + batch_size].to(device).float() / 255, generator=generator)
        slots.append(out["slots"].flatten(0, 1).float().cpu())
        area, spread = owned_regions(out["masks"].float())
        areas.append(area.flatten().cpu())
        spreads.append(spread.flatten().cpu())
    per_scene = out["slots"].shape[1]       # K: slot_attention's and slot_diffusion's models alike
    scenes = np.repeat(np.arange(len(images)), per_scene)
    return torch.cat(slots).numpy(), torch.cat(areas).numpy(), torch.cat(spreads).numpy(), scenes


def cluster_roles(labels: np.ndarray, roles: np.ndarray, clusters: int) -> list[str]:
    """Each cluster's most common slot role (ties: the first in ROLES; a cluster without members: empty)."""
    counts = [[int(((labels == c) & (roles == role)).sum()) for role in ROLES] for c in range(clusters)]
    return [ROLES[int(np.argmax(n))] if sum(n) else "empty" for n in counts]


def build_library(model, images: torch.Tensor, clusters: int, *, seed: int = 0, batch_size: int = 64
                  ) -> SlotLibrary:
    slots, areas, spreads, scenes = collect_slots(model, images, batch_size=batch_size, seed=seed)
    clusters = min(clusters, len(slots))
    kmeans = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(slots)
    labels = kmeans.labels_.astype(np.int64)
    roles = slot_roles(areas, spreads)
    return SlotLibrary(slots, areas, spreads, scenes, labels, kmeans.cluster_centers_.astype(np.float32), roles,
                       cluster_roles(labels, roles, clusters))


def _draw(library: SlotLibrary, groups: list[np.ndarray], used: set, rng: np.random.Generator) -> int | None:
    if not groups:
        return None
    sizes = np.array([len(g) for g in groups], float)
    members = groups[rng.choice(len(groups), p=sizes / sizes.sum())]
    fresh = [m for m in members if library.scenes[m] not in used]
    pick = int(rng.choice(fresh if fresh else members))
    used.add(int(library.scenes[pick]))
    return pick


def scene_backgrounds(library: SlotLibrary) -> list[np.ndarray]:
    """Per training scene, the indices of its background-role slots; a scene without any gives its
    largest slot (so every scene has a background to lend)."""
    backgrounds = []
    for scene in np.unique(library.scenes):
        own = np.flatnonzero(library.scenes == scene)
        chosen = own[library.slot_roles[own] == "background"]
        backgrounds.append(chosen if len(chosen) else own[[int(np.argmax(library.areas[own]))]])
    return backgrounds


def compose(library: SlotLibrary, count: int, seed: int) -> list[np.ndarray]:
    """`count` new slot sets by the rule above; each (backgrounds + objects, D), the background first."""
    rng = np.random.default_rng([seed, 11])
    backgrounds, objects = scene_backgrounds(library), library.objects_by_cluster()
    per_scene = np.bincount(library.scenes[library.slot_roles == "object"], minlength=int(library.scenes.max()) + 1)
    scenes = []
    for _ in range(count):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        used = {int(library.scenes[background[0]])}
        picks = [_draw(library, objects, used, rng) for _ in range(int(rng.choice(per_scene)))]
        scenes.append(library.slots[[*background, *(p for p in picks if p is not None)]])
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
    """The baseline: (count, K, D) slots from slot attention's initial Gaussian. With learned queries
    (`--slot-init learned`) the initial slots are the same K queries for every image, so the baseline
    draws each slot from the diagonal Gaussian of the queries instead (per dimension, their mean and
    standard deviation over the K queries)."""
    attention = model.slot_encoder.slot_attention
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    if attention.init != "learned":
        return attention.initial_slots(count, generator)
    queries = attention.queries[0]                                          # (K, D)
    noise = torch.randn(count, *queries.shape, device=device, generator=generator)
    return queries.mean(dim=0) + queries.std(dim=0) * noise                 # (count, K, D)


@torch.no_grad()
def decode_batched(model, slots: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([model.decode(slots[i:i + batch_size])["recon"].clamp(0, 1).cpu()
                      for i in range(0, len(slots), batch_size)])
