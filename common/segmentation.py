"""Segmentation agreement: the adjusted Rand index (ARI) and its foreground-only form (FG-ARI), batched.

Per image, the pixels' true and predicted segment labels give a contingency table n_ij; the pair
counts of scikit-learn's `pair_confusion_matrix` follow from it, and the index is scikit-learn's
`adjusted_rand_score` exactly, special case included: identical partitions (also two one-segment
partitions, and an image with no pixels) score 1.0. FG-ARI counts only the pixels whose true label
is not the background (Slot Attention's and CLEVRTex's headline number).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from common import distributed


def adjusted_rand_index(true: torch.Tensor, pred: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """true, pred: (B, ...) integer labels (>= 0) of the same shape; weight: optional (B, ...) 0/1
    mask of the pixels that count. Returns (B,) float64 ARI per image."""
    if true.shape != pred.shape:
        raise ValueError(f"label maps differ in shape: {tuple(true.shape)} vs {tuple(pred.shape)}")
    batch = true.shape[0]
    true, pred = true.reshape(batch, -1).long(), pred.reshape(batch, -1).long()
    w = torch.ones_like(true, dtype=torch.float64) if weight is None else weight.reshape(batch, -1).double()
    one_true = F.one_hot(true, int(true.max()) + 1 if true.numel() else 1).double() * w.unsqueeze(-1)
    one_pred = F.one_hot(pred, int(pred.max()) + 1 if pred.numel() else 1).double()
    table = torch.einsum("bni,bnj->bij", one_true, one_pred)                # (B, Kt, Kp) pixel counts
    n = table.sum(dim=(1, 2))
    sum_squares = (table * table).sum(dim=(1, 2))
    rows, cols = table.sum(dim=2), table.sum(dim=1)
    tp = sum_squares - n
    fp = (cols * cols).sum(dim=1) - sum_squares
    fn = (rows * rows).sum(dim=1) - sum_squares
    tn = n * n - fp - fn - sum_squares
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    ari = 2.0 * (tp * tn - fn * fp) / torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return torch.where((fn == 0) & (fp == 0), torch.ones_like(ari), ari)


def foreground_ari(true: torch.Tensor, pred: torch.Tensor, background: int = 0) -> torch.Tensor:
    """ARI over the pixels whose true label is not `background`; (B,) float64."""
    return adjusted_rand_index(true, pred, true != background)


def segmentation_scores(true: torch.Tensor, pred: torch.Tensor, background: int = 0) -> dict[str, torch.Tensor]:
    """Both indices per image: {"ari": (B,), "fg_ari": (B,)}."""
    return {"ari": adjusted_rand_index(true, pred), "fg_ari": foreground_ari(true, pred, background)}


# one batch of a split -> (per-image loss (b,), true labels (b, H, W), predicted labels (b, H, W))
SceneScorer = Callable[[list[torch.Tensor], torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@torch.no_grad()
def mean_scene_scores(score_batch: SceneScorer, tensors: Sequence[torch.Tensor], seed: int, device,
                      batch_size: int = 64) -> dict[str, float]:
    """Mean per-image loss, ARI and FG-ARI over a split whose rows are `tensors` (images, masks, ...):
    each rank scores its strided share (`distributed.shard`) in batches of `batch_size`, with a generator
    seeded `seed + 1000 * rank`; one all_reduce of the sums."""
    shares = [distributed.shard(t) for t in tensors]
    generator = torch.Generator(device=device).manual_seed(seed + 1000 * distributed.rank())
    sums = torch.zeros(4, dtype=torch.float64, device=device)       # loss, ARI, FG-ARI, images
    for start in range(0, len(shares[0]), batch_size):
        loss, true, predicted = score_batch([t[start:start + batch_size] for t in shares], generator)
        scores = segmentation_scores(true, predicted)
        sums += torch.stack([loss.double().sum(), scores["ari"].sum(), scores["fg_ari"].sum(),
                             torch.tensor(float(len(loss)), dtype=torch.float64, device=device)])
    loss, ari, fg_ari, count = distributed.all_reduce_sum(sums).tolist()
    return {"loss": loss / count, "ari": ari / count, "fg_ari": fg_ari / count}
