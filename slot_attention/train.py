"""Train Slot Attention on scenes with instance masks (CLEVRTex, or the generated flat/textured stand-in).

    python slot_attention/train.py                               # offline: the generated `flat` scenes
    python slot_attention/train.py --stand-in textured           # the CLEVRTex-like stand-in
    python slot_attention/train.py --data real --data-root ../shared/data --subsample 5000
    python slot_attention/train.py --smoke                       # seconds: every artefact

Per epoch: train and val reconstruction MSE, val ARI and FG-ARI (argmax of the slot masks against the
true instance masks; FG-ARI over the foreground pixels). LR: linear warm-up, then halving every
--decay-steps; gradients clipped; a non-finite or exploding loss stops the run naming the step, with
the last good checkpoint kept. The loss is the reconstruction MSE plus, from --area-penalty-start, a
penalty on the sum of the slots' squared mask shares that keeps the spare slots on the background.
At the end: curves, a mask grid, the slot library (K-means), scenes composed from it, the Gaussian
baseline and FIDs against the val images.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from matplotlib import colormaps

from common import distributed
from common.cli import make_parser, non_negative_float, non_negative_int, parse_args, positive_int
from common.divergence import DivergenceGuard
from common.errors import run_cli
from common.fid import fid, inception_features
from common.models import count_parameters
from common.plots import plot_curves, plot_image_grid
from common.progress import progress
from common.runtime import seed_everything
from common.schedules import add_step_schedule_flags, halving, lr_lambda
from common.segmentation import mean_scene_scores, segmentation_scores
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from slot_attention.data import SceneData, add_scene_flags, scenes_from_flags
from slot_attention.library import (add_library_flags, build_library, compose, decode_batched, decode_slot_sets,
                                    gaussian_slots)
from slot_attention.model import (CONFIG_FLAGS, SlotAutoencoder, SlotConfig, add_config_flags, config_from_args,
                                  mask_area_penalty, predicted_segmentation, reconstruction_loss)

ASSIGNMENT = "slot_attention"
# the training recipe the README measured (the model's is SlotConfig's defaults)
TRAINING = dict(epochs=30, batch_size=16, lr=6e-4, warmup_steps=300, decay_steps=10_000, grad_clip=1.0,
                explode_factor=50.0, area_penalty=0.05, area_penalty_start=2500, fid_samples=200, grid_images=6)
SMOKE_MODEL = dict(image_size=32, slots=4, slot_dim=16, encoder_channels=8, mlp_hidden=16, decoder_channels=8,
                   decoder_size=16)
EVAL_BATCH = 64
AREA_PENALTY_RAMP = 1000   # steps over which the mask-area penalty's weight rises linearly from 0 to --area-penalty


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=TRAINING["epochs"], batch_size=TRAINING["batch_size"],
                         lr=TRAINING["lr"])
    add_scene_flags(parser)
    add_config_flags(parser, list(CONFIG_FLAGS))
    add = parser.add_argument
    add("--area-penalty", type=non_negative_float, default=TRAINING["area_penalty"],
        help="weight of the mask-area penalty (the sum of the slots' squared image shares): keeps the spare slots "
             "on the background instead of on the objects; 0: off, the paper's loss (default: %(default)s)")
    add("--area-penalty-start", type=non_negative_int, default=TRAINING["area_penalty_start"],
        help=f"training step where the penalty starts, rising to its weight over {AREA_PENALTY_RAMP} steps; on the "
             "early plateau, where all slots are alike, it would hold them alike (default: %(default)s)")
    add_step_schedule_flags(parser, warmup=TRAINING["warmup_steps"], decay=TRAINING["decay_steps"],
                            clip=TRAINING["grad_clip"], explode=TRAINING["explode_factor"])
    add_library_flags(parser)
    add("--fid-samples", type=non_negative_int, default=TRAINING["fid_samples"],
        help="images per FID set; 0: no FID (Inception at 299x299 and the 2048x2048 matrix square root take "
             "minutes on a CPU; --smoke skips it) (default: %(default)s)")
    add("--grid-images", type=positive_int, default=TRAINING["grid_images"],
        help="val images in the mask grid (default: %(default)s)")
    return parser


def parse(argv=None):
    """The flags, with --smoke's tiny model and data; the model config is checked here (one-line errors)."""
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs = min(args.epochs, 2)
        args.fid_samples, args.library_images, args.clusters, args.grid_images = 0, 16, 4, 2
        args.warmup_steps = min(args.warmup_steps, 2)
        vars(args).update(SMOKE_MODEL)
    model_config(args)
    return args


def run_name(args) -> str:
    what = args.stand_in if args.data != "real" else "clevrtex"
    return f"{what}_{args.data}_s{args.image_size}_k{args.slots}_b{args.batch_size}_lr{args.lr:g}_seed{args.seed}"


def model_config(args) -> SlotConfig:
    return config_from_args(args, list(CONFIG_FLAGS))


def area_penalty_weight(step: int, weight: float, start: int, ramp: int = AREA_PENALTY_RAMP) -> float:
    """0 before `start`, then rising linearly to `weight` over `ramp` steps."""
    return weight * min(1.0, max(0.0, (step - start) / ramp))


@torch.no_grad()
def evaluate_scenes(model, images: torch.Tensor, masks: torch.Tensor, seed: int, device) -> dict:
    """Mean reconstruction MSE, ARI and FG-ARI over a split (a strided share per rank)."""
    model.eval()

    def score(batch: list[torch.Tensor], generator: torch.Generator):
        x = batch[0].to(device).float() / 255                                    # (b, 3, H, W)
        out = model(x, generator=generator)
        mse = ((out["recon"] - x) ** 2).mean(dim=(1, 2, 3))                      # (b,)
        return mse, batch[1].to(device), predicted_segmentation(out["masks"])

    return mean_scene_scores(score, (images, masks), seed, device, EVAL_BATCH)


def main(argv=None) -> dict:
    args = parse(argv)
    config = model_config(args)
    with distributed.launch(args) as info:
        seed_everything(args.seed)
        device = torch.device(info.device)
        data = scenes_from_flags(args).to(device)
        if data.max_objects >= config.slots:
            print(f"note: scenes hold up to {data.max_objects} objects + background, more than --slots "
                  f"{config.slots}: some slots must hold several objects")
        model = SlotAutoencoder(config).to(device)
        run = distributed.run_dir(args, data_source=data.source, device=str(device))
        print(f"{ASSIGNMENT}: {config.describe()}, {count_parameters(model):,} parameters; "
              f"{len(data.train_images):,} train / {len(data.val_images):,} val; data: {data.source}")
        trained = distributed.wrap_model(model, info.device, find_unused_parameters=config.has_unused_parameters)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(halving(args.decay_steps), 0,
                                                                           args.warmup_steps))
        batch = distributed.per_rank_batch(args.batch_size)
        steps = batch_count(len(data.train_images), batch, drop_last=True)

        start, elapsed = resume(run, trained, optimizer, scheduler)
        guard, step_guard = EpochGuard(run), DivergenceGuard(args.explode_factor, run.path, scheduler)
        earlier = run.metrics()          # the wall time carries on over --resume
        wall, since = (earlier[-1]["wall_seconds"] if earlier else 0.0), time.perf_counter()
        for epoch in range(start, args.epochs):
            tic = time.perf_counter()
            trained.train()
            meter = Meter()
            batches = tensor_batches((data.train_images,), batch, seed=args.seed, epoch=epoch, drop_last=True)
            for (images,) in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
                images = images.float() / 255                                     # (B, 3, H, W)
                with autocast(device):
                    out = trained(images)
                    loss = reconstruction_loss(out["recon"], images)
                    step_guard.check(loss, scheduler.last_epoch // steps)         # names the step that diverged
                    penalty = mask_area_penalty(out["masks"])
                    weight = area_penalty_weight(scheduler.last_epoch, args.area_penalty, args.area_penalty_start)
                    total = loss + weight * penalty
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(trained.parameters(), args.grad_clip)
                optimizer.step()
                scheduler.step()
                n = len(images)
                meter.add(total, n, loss=loss.detach() * n, area_penalty=penalty.detach() * n)
            train = guard.check(meter, trained, epoch)
            elapsed += time.perf_counter() - tic

            trained.eval()
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train)}
            scores = evaluate_scenes(model, data.val_images, data.val_masks, args.seed, device)
            wall, since = wall + time.perf_counter() - since, time.perf_counter()
            record.update(**prefixed("val", scores), wall_seconds=wall, train_seconds=elapsed)
            end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), trained, optimizer, scheduler),
                      quiet=args.smoke)
        trained.eval()
        finished_records(run)
        if not info.is_main:
            return {}
        return write_artefacts(run, model, data, args)


def slot_grid(model, images: torch.Tensor, masks: torch.Tensor, seed: int) -> tuple[np.ndarray, list[str], int]:
    """Rows of [image, reconstruction, true segments, predicted segments, each slot's mask x RGB]."""
    with torch.no_grad():
        out = model(images.float() / 255, generator=torch.Generator(device=images.device).manual_seed(seed))
    palette = colormaps["tab20"](np.arange(20))[:, :3]
    segments = predicted_segmentation(out["masks"]).cpu().numpy()
    scores = segmentation_scores(masks, predicted_segmentation(out["masks"]))
    tiles, titles = [], []
    for i in range(len(images)):
        tiles += [images[i].permute(1, 2, 0).cpu().numpy() / 255, out["recon"][i].clamp(0, 1).permute(1, 2, 0).cpu(),
                  palette[masks[i].cpu().numpy() % 20], palette[segments[i] % 20]]
        titles += ["image", "reconstruction", "true objects", f"slots FG-ARI {float(scores['fg_ari'][i]):.2f}"]
        slots = (out["masks"][i] * out["rgb"][i] + (1 - out["masks"][i])).clamp(0, 1)   # white where the slot is not
        tiles += [s.permute(1, 2, 0).cpu().numpy() for s in slots]
        titles += [f"slot {k + 1}" for k in range(len(slots))]
    return np.stack([np.asarray(t, dtype=np.float32) for t in tiles]), titles, 4 + model.config.slots


def write_artefacts(run, model: SlotAutoencoder, data: SceneData, args) -> dict:
    records = run.metrics()
    last = records[-1]
    short = data.source.split(" (")[0]
    plot_curves(records, {"reconstruction MSE": ["train_loss", "val_loss"], "segmentation (val)": ["val_ari",
                "val_fg_ari"]}, run.file("curves.png"), title=f"{model.config.describe()}\n{short}")
    shown = slice(0, args.grid_images)
    tiles, titles, columns = slot_grid(model, data.val_images[shown], data.val_masks[shown], args.seed)
    plot_image_grid(tiles, titles, run.file("masks.png"), ncols=columns,
                    title=f"val scenes: reconstruction, segments, each slot ({short}, epoch {last['epoch']})")

    tic = time.perf_counter()
    library = build_library(model, data.train_images[:args.library_images], args.clusters, seed=args.seed)
    library.save(run.file("slot_library.npz"))
    count = min(max(args.fid_samples, 24), len(data.val_images))   # FID sets and the grids' 24
    slot_sets = compose(library, count, args.seed)
    composed = decode_slot_sets(model, slot_sets)
    baseline = decode_batched(model, gaussian_slots(model, count, args.seed))
    val = data.val_images[:count]
    with torch.no_grad():
        recon = torch.cat([model(val[i:i + EVAL_BATCH].float() / 255, generator=torch.Generator(
            device=val.device).manual_seed(args.seed))["recon"].clamp(0, 1).cpu() for i in range(0, count, EVAL_BATCH)])
    n_grid = min(24, count)
    plot_image_grid(composed[:n_grid].permute(0, 2, 3, 1).numpy(), [""] * n_grid, run.file("compositional.png"),
                    ncols=8, title=f"new scenes from the slot library ({args.clusters} K-means clusters)")
    plot_image_grid(baseline[:n_grid].permute(0, 2, 3, 1).numpy(), [""] * n_grid, run.file("gaussian_baseline.png"),
                    ncols=8, title="baseline: slots drawn from the initial Gaussian")
    n_fid = min(args.fid_samples, len(data.val_images))
    fids = {}
    if n_fid >= 2:   # --fid-samples 0 (and --smoke) skip it: Inception and a 2048x2048 sqrtm take minutes on a CPU
        reference = inception_features(val[:n_fid].cpu())
        fids = {f"fid_{name}": fid(inception_features(images[:n_fid]), reference)
                for name, images in (("reconstruction", recon), ("compositional", composed), ("gaussian", baseline))}
    summary = run.finish({
        **{k: last[k] for k in last if k.startswith(("train_", "val_"))},
        "best_val_fg_ari": max(r["val_fg_ari"] for r in records), **fids, "fid_samples": n_fid if fids else 0,
        "library": {"slots": len(library.slots), "clusters": len(library.roles), **library.role_counts(),
                    "mean_slots_composed": float(np.mean([len(s) for s in slot_sets]))},
        "curve": [{"epoch": r["epoch"], "minutes": r["wall_seconds"] / 60, "val_fg_ari": r["val_fg_ari"],
                   "val_ari": r["val_ari"]} for r in records],
        "epochs": last["epoch"], "train_seconds": last["train_seconds"], "wall_seconds": last["wall_seconds"],
        "after_training_seconds": time.perf_counter() - tic, "parameters": count_parameters(model),
        "model_config": model.config.to_dict(), "model": model.config.describe(), "stand_in": args.stand_in,
        "n_train": len(data.train_images), "n_val": len(data.val_images),
    })
    print(f"done: val FG-ARI {last['val_fg_ari']:.3f}, ARI {last['val_ari']:.3f}, MSE {last['val_loss']:.5f} after "
          f"{last['epoch']} epochs ({last['train_seconds'] / 60:.1f} min training); "
          + (f"FID vs val ({n_fid} images): " + ", ".join(f"{k[4:]} {v:.1f}" for k, v in fids.items()) if fids
             else "FID skipped") + f"; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
