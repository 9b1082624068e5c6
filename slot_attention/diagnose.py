"""Where a trained model's FG-ARI goes: edges, objects cut between slots, or objects sharing a slot.

    python slot_attention/diagnose.py runs/slot_attention/<run>           # its val split, from config.json
    python slot_attention/diagnose.py runs/slot_attention/<run> --edge 1

Reads the run's checkpoint.pt and the data settings in its config.json, segments the val images
(argmax of the slot masks, as train.py scores them) and prints:
- FG-ARI and ARI (train.py's numbers);
- FG-ARI over the interior foreground pixels only (those with one true label within --edge pixels):
  what is lost at the objects' edges, where the decoder's coarse grid blurs the masks;
- FG-ARI with every predicted segment relabelled as the object holding most of its foreground pixels:
  what is left if no object were cut between slots (edges and shared slots still count);
- each object's largest-slot share (the share of its pixels in the one segment holding most of them)
  and how many objects are held by the same segment as another object.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.nn import functional as F

from common.cli import OneLineParser, parse_saved, positive_int
from common.errors import UserError, run_cli
from common.rundir import read_json
from common.segmentation import adjusted_rand_index, segmentation_scores
from slot_attention.data import scenes_from_flags
from slot_attention.model import SlotAutoencoder, load_autoencoder, predicted_segmentation
from slot_attention.train import build_parser as train_parser

CUT_SHARE = 0.6   # an object whose largest segment holds less than this share of it counts as cut
DATA_KEYS = ("data", "data_root", "stand_in", "image_size", "n_train", "n_val", "subsample", "seed")


def interior_pixels(true: torch.Tensor, edge: int) -> torch.Tensor:
    """(B, H, W) labels -> (B, H, W) bool: pixels whose (2 edge + 1)^2 neighbourhood holds one label."""
    labels = true.unsqueeze(1).float()                                            # (B, 1, H, W)
    window = 2 * edge + 1
    highest = F.max_pool2d(labels, window, 1, edge)
    lowest = -F.max_pool2d(-labels, window, 1, edge)
    return ((highest == labels) & (lowest == labels)).squeeze(1)


def merge_cut_segments(true: torch.Tensor, pred: torch.Tensor, background: int = 0) -> torch.Tensor:
    """(B, H, W) labels -> pred with each predicted segment relabelled as the true object holding most of
    its foreground pixels (segments without foreground pixels become `background`)."""
    merged = torch.full_like(pred, background)
    for i in range(len(pred)):
        for segment in pred[i].unique():
            inside = pred[i] == segment
            objects = true[i][inside & (true[i] != background)]
            if objects.numel():
                merged[i][inside] = torch.bincount(objects).argmax()
    return merged


def object_holdings(true: torch.Tensor, pred: torch.Tensor, background: int = 0) -> tuple[list[float], int]:
    """Per object (every true label but `background`, every image): the share of its pixels in its largest
    predicted segment; and how many objects have that segment in common with another object of their image."""
    shares, shared = [], 0
    for i in range(len(true)):
        owners = []
        for label in true[i].unique():
            if label == background:
                continue
            counts = torch.bincount(pred[i][true[i] == label])
            shares.append(float(counts.max() / counts.sum()))
            owners.append(int(counts.argmax()))
        shared += sum(owners.count(owner) for owner in set(owners) if owners.count(owner) > 1)
    return shares, shared


def diagnose(true: torch.Tensor, pred: torch.Tensor, edge: int = 2) -> dict[str, float]:
    """All the numbers for (B, H, W) true and predicted labels (background 0)."""
    scores = segmentation_scores(true, pred)
    interior = adjusted_rand_index(true, pred, (true != 0) & interior_pixels(true, edge))
    merged = segmentation_scores(true, merge_cut_segments(true, pred))["fg_ari"]
    shares, shared = object_holdings(true, pred)
    objects = max(len(shares), 1)
    return {"fg_ari": float(scores["fg_ari"].mean()), "ari": float(scores["ari"].mean()),
            "interior_fg_ari": float(interior.mean()), "uncut_fg_ari": float(merged.mean()),
            "largest_share": sum(shares) / objects, "cut_objects": sum(s < CUT_SHARE for s in shares) / objects,
            "shared_objects": shared / objects, "objects": len(shares)}


def read_run(folder: Path) -> tuple[dict, Path]:
    """The data settings from a run's config.json (through train.py's parser again: a damaged value is refused as
    on the command line) and its checkpoint's path; a clear error otherwise."""
    config_path, checkpoint = folder / "config.json", folder / "checkpoint.pt"
    if not config_path.exists():
        raise UserError(f"{folder} holds no config.json: pick a run directory of slot_attention/train.py")
    fix = "restore the config.json slot_attention/train.py wrote there, or pick another run directory"
    values = read_json(config_path, fix, keys=("args",))["args"]
    missing = [key for key in DATA_KEYS if key not in values] if isinstance(values, dict) else []
    if missing:
        raise UserError(f"{config_path} holds no {', '.join(missing)}; {fix}")
    settings = parse_saved(train_parser(), values, config_path, fix, "slot_attention/train.py")
    return {key: getattr(settings, key) for key in (*DATA_KEYS, "smoke")}, checkpoint


@torch.no_grad()
def segment(model: SlotAutoencoder, images: torch.Tensor, seed: int, batch: int = 64) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, H, W) predicted segments, seeded as train.py's evaluation is."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([predicted_segmentation(model(images[i:i + batch].float() / 255, generator=generator)["masks"])
                      for i in range(0, len(images), batch)])


def build_parser() -> OneLineParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory of slot_attention/train.py")
    parser.add_argument("--edge", type=positive_int, default=2,
                        help="interior pixels: no other true label within this many pixels (default: %(default)s)")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    data_args, checkpoint = read_run(args.run)
    model = load_autoencoder(checkpoint)[0].eval()
    data = scenes_from_flags(argparse.Namespace(**data_args), announce=lambda _: None)
    result = diagnose(data.val_masks.long(), segment(model, data.val_images, data_args["seed"]), args.edge)
    print(f"{args.run} on {len(data.val_images)} val scenes ({data.source.split(' (')[0]}), "
          f"{result['objects']} objects:\n"
          f"  FG-ARI {result['fg_ari']:.3f}   ARI {result['ari']:.3f}\n"
          f"  FG-ARI over interior foreground pixels (edge {args.edge} px)   {result['interior_fg_ari']:.3f}\n"
          f"  FG-ARI with each segment merged into its main object (no cuts)  {result['uncut_fg_ari']:.3f}\n"
          f"  an object's largest-segment share: mean {result['largest_share']:.3f}; under {CUT_SHARE}: "
          f"{result['cut_objects']:.1%} of objects; sharing their segment with another object: "
          f"{result['shared_objects']:.1%}")
    return result


if __name__ == "__main__":
    run_cli(main)
