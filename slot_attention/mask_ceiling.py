"""How much FG-ARI a decoder's mask resolution allows: the true segments, area-averaged down to a
coarse grid (what a perfect decoder that stops there could emit), bilinearly upsampled back to the
image and argmaxed, scored against themselves.

    python slot_attention/mask_ceiling.py                       # flat stand-in, 64x64, grids 8-64
    python slot_attention/mask_ceiling.py --stand-in textured --sizes 16 32

train.py's decoder CNN stops at --decoder-size (16 by default) and upsamples its mask logits
bilinearly. Not a strict bound (learned logits on the coarse grid could place some edges better than log
area shares do), but it shows how much a grid costs before any training.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.nn import functional as F

from common.cli import OneLineParser, positive_int, seed_int
from common.errors import UserError, run_cli
from common.segmentation import segmentation_scores
from slot_attention.data import KINDS, generate_scenes

LOG_FLOOR = 1e-3   # the logit of an area share of 0


def ceiling_segmentation(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W) integer segments -> (B, H, W) the argmax of their log area shares on a size x size grid,
    bilinearly upsampled to H x W (the path of train.py's decoder masks)."""
    count = int(masks.max()) + 1
    one_hot = F.one_hot(masks.long(), count).permute(0, 3, 1, 2).float()          # (B, S, H, W)
    coarse = F.adaptive_avg_pool2d(one_hot, size)                                  # (B, S, size, size): shares
    logits = F.interpolate(torch.log(coarse + LOG_FLOOR), size=masks.shape[-2:], mode="bilinear",
                           align_corners=False)
    return logits.argmax(dim=1)


def ceilings(masks: torch.Tensor, sizes: list[int]) -> dict[int, dict[str, float]]:
    """Mean FG-ARI and ARI of the ceiling segmentation at each grid size."""
    out = {}
    for size in sizes:
        if size > masks.shape[-1]:
            raise UserError(f"grid {size} is larger than the image ({masks.shape[-1]})")
        scores = segmentation_scores(masks.long(), ceiling_segmentation(masks, size))
        out[size] = {"fg_ari": float(scores["fg_ari"].mean()), "ari": float(scores["ari"].mean())}
    return out


def main(argv=None) -> dict:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--stand-in", choices=KINDS, default="flat", help="generated scenes (default: %(default)s)")
    add("--image-size", type=positive_int, default=64, help="image side (default: %(default)s)")
    add("--scenes", type=positive_int, default=200, help="val scenes scored (default: %(default)s)")
    add("--seed", type=seed_int, default=0, help="the scenes' seed (default: %(default)s)")
    add("--sizes", type=positive_int, nargs="+", default=[8, 16, 32, 64], help="grid sizes (default: 8 16 32 64)")
    args = parser.parse_args(argv)
    _, masks = generate_scenes(args.scenes, args.image_size, args.stand_in, args.seed, "val")
    result = ceilings(torch.from_numpy(masks), args.sizes)
    print(f"FG-ARI ceiling of perfect masks on a coarse grid, bilinear to {args.image_size} "
          f"({args.scenes} generated {args.stand_in} val scenes, seed {args.seed}):")
    for size, scores in result.items():
        print(f"  {size:>3}x{size:<3}  FG-ARI {scores['fg_ari']:.3f}  ARI {scores['ari']:.3f}")
    return result


if __name__ == "__main__":
    run_cli(main)
