"""What a finished slot_diffusion run writes (train.py's write_artefacts): reconstructions by sampling, masks,
the slot library and composed scenes, the Gaussian-slot baseline, sampling time, FID against the val images,
and (with --baseline) slot_attention's broadcast decoder on the same val images, side by side.

Compositional generation uses slot_attention/library.py unchanged (its rule: the background slots of
one random training scene and as many object slots as another has, each from a K-means cluster drawn in
proportion to its object slots, each from a different training image); the slot roles come from the
region each slot's attention mask wins (its area and spread). Slot sets of the same size are sampled
together.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps

from common.errors import UserError
from common.fid import fid, inception_features
from common.models import count_parameters
from common.plots import plot_curves, plot_image_grid
from common.rundir import read_json
from common.segmentation import segmentation_scores
from slot_attention.library import build_library, compose, decode_slot_sets, gaussian_slots
from slot_attention.model import load_autoencoder, predicted_segmentation
from slot_diffusion.vae import evaluate_vae

EVAL_BATCH = 64


@torch.no_grad()
def sample_images(model, vae, slots: torch.Tensor, args, seed: int) -> torch.Tensor:
    """Slots (N, K, D) -> images (N, 3, H, W) in [0, 1] on the CPU: latents from pure noise, VAE-decoded."""
    model.eval()
    generator = torch.Generator(device=slots.device).manual_seed(seed)
    out = []
    for start in range(0, len(slots), EVAL_BATCH):
        z = model.sample_latents(slots[start:start + EVAL_BATCH], steps=args.sample_steps, sampler=args.sampler,
                                 generator=generator)
        out.append(vae.decode(z).clamp(0, 1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def encode_all(model, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> slots (N, K, D), masks (N, K, 1, H, W)."""
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    parts = [model(images[i:i + EVAL_BATCH].float() / 255, generator=generator)
             for i in range(0, len(images), EVAL_BATCH)]
    return torch.cat([p["slots"] for p in parts]), torch.cat([p["masks"] for p in parts])


def sample_slot_sets(model, vae, slot_sets: list[np.ndarray], args, seed: int) -> torch.Tensor:
    """Each set (k_i, D) decoded on its own (sets of one size batched together), in the given order."""
    device = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(slot_sets)
    for size in sorted({len(s) for s in slot_sets}):
        index = [i for i, s in enumerate(slot_sets) if len(s) == size]
        slots = torch.from_numpy(np.stack([slot_sets[i] for i in index])).to(device)
        for i, image in zip(index, sample_images(model, vae, slots, args, seed + size)):
            out[i] = image
    return torch.stack(out)


def mask_grid(images, vae_recon, recon, true_masks, masks, slots_recon_title: str):
    """Rows of [image, VAE, sampled reconstruction, true segments, predicted segments, each slot's
    attention mask over the image (white where the slot does not attend; masks divided by the image's
    largest mask value)]."""
    palette = colormaps["tab20"](np.arange(20))[:, :3]
    segments = predicted_segmentation(masks)
    scores = segmentation_scores(true_masks, segments)
    tiles, titles = [], []
    for i in range(len(images)):
        x = images[i].float().cpu() / 255
        tiles += [x.permute(1, 2, 0), vae_recon[i].permute(1, 2, 0), recon[i].permute(1, 2, 0),
                  palette[true_masks[i].cpu().numpy() % 20], palette[segments[i].cpu().numpy() % 20]]
        titles += ["image", "VAE only", slots_recon_title, "true objects",
                   f"attention FG-ARI {float(scores['fg_ari'][i]):.2f}"]
        m = masks[i].cpu() / masks[i].max().clamp(min=1e-8).cpu()    # scaled so the strongest pixel shows fully
        tiles += [(m[k] * x + (1 - m[k])).permute(1, 2, 0) for k in range(len(m))]
        titles += [f"slot {k + 1}" for k in range(len(m))]
    return np.stack([np.asarray(t, dtype=np.float32) for t in tiles]), titles, 5 + masks.shape[1]


def _fids(sets: dict[str, torch.Tensor], reference, n: int) -> dict[str, float]:
    return {f"fid_{name}": fid(inception_features(images[:n]), reference) for name, images in sets.items()}


def write_artefacts(run, model, vae, data, args, baseline_path, vae_path: str) -> dict:
    records = run.metrics()
    last = records[-1]
    short = data.source.split(" (")[0]
    plot_curves(records, {"diffusion loss (eps MSE)": ["train_loss", "val_loss"],
                          "segmentation (val, attention masks)": ["val_ari", "val_fg_ari"]},
                run.file("curves.png"), title=f"{model.config.describe()}\n{short}")
    tic = time.perf_counter()
    n_fid = min(args.fid_samples, len(data.val_images))
    count = min(max(n_fid, args.grid_images), len(data.val_images))
    val = data.val_images[:count]
    slots, masks = encode_all(model, val, args.seed)
    start = time.perf_counter()
    recon = sample_images(model, vae, slots, args, args.seed)
    seconds_per_image = (time.perf_counter() - start) / max(len(slots), 1)
    with torch.no_grad():
        vae_recon = torch.cat([vae.decode(vae.encode(val[i:i + EVAL_BATCH].float() / 255)).clamp(0, 1).cpu()
                               for i in range(0, count, EVAL_BATCH)])
    g = args.grid_images
    tiles, titles, columns = mask_grid(val[:g], vae_recon[:g], recon[:g], data.val_masks[:g], masks[:g],
                                       f"diffusion ({args.sampler}, {args.sample_steps})")
    plot_image_grid(tiles, titles, run.file("masks.png"), ncols=columns,
                    title=f"val scenes: VAE, sampled reconstruction from the slots, attention masks ({short}, "
                          f"epoch {last['epoch']})")
    recon_mse = float(((recon - val.float().cpu() / 255) ** 2).mean())
    vae_scores = evaluate_vae(vae, data.val_images)

    library = build_library(model, data.train_images[:args.library_images], args.clusters, seed=args.seed)
    library.save(run.file("slot_library.npz"))
    n_sets = max(n_fid, 24)
    slot_sets = compose(library, n_sets, args.seed)
    composed = sample_slot_sets(model, vae, slot_sets, args, args.seed + 1)
    gaussian = sample_images(model, vae, gaussian_slots(model, n_sets, args.seed), args, args.seed + 2)
    n_grid = min(24, n_sets)
    for images, name, what in ((composed, "compositional.png", f"new scenes from the slot library ({args.clusters} "
                                "K-means clusters), sampled"), (gaussian, "gaussian_baseline.png",
                                "baseline: slots drawn from the initial Gaussian, sampled")):
        plot_image_grid(images[:n_grid].permute(0, 2, 3, 1).numpy(), [""] * n_grid, run.file(name), ncols=8, title=what)

    fids, reference = {}, None
    if n_fid >= 2:
        reference = inception_features(val[:n_fid].cpu())
        fids = _fids({"reconstruction": recon, "compositional": composed, "gaussian": gaussian,
                      "vae": vae_recon}, reference, n_fid)
    side = evaluate_baseline(baseline_path, data, args, recon, reference, n_fid, run) if baseline_path else {}
    summary = run.finish({
        **{k: last[k] for k in last if k.startswith(("train_", "val_"))},
        "best_val_fg_ari": max(r["val_fg_ari"] for r in records), **fids, "fid_samples": n_fid if fids else 0,
        "reconstruction_mse": recon_mse, "sampling_seconds_per_image": seconds_per_image,
        "sampler": args.sampler, "sample_steps": args.sample_steps,
        "vae": {"path": vae_path, "val_psnr": vae_scores["psnr"], "val_mse": vae_scores["loss"],
                "latent_scale": float(vae.scale), "model": vae.config.describe()},
        "library": {"slots": len(library.slots), "clusters": len(library.roles), **library.role_counts(),
                    "mean_slots_composed": float(np.mean([len(s) for s in slot_sets]))},
        "baseline": side,
        "curve": [{"epoch": r["epoch"], "minutes": r["wall_seconds"] / 60, "val_fg_ari": r["val_fg_ari"],
                   "val_ari": r["val_ari"], "val_loss": r["val_loss"]} for r in records],
        "epochs": last["epoch"], "train_seconds": last["train_seconds"], "wall_seconds": last["wall_seconds"],
        "after_training_seconds": time.perf_counter() - tic, "parameters": count_parameters(model),
        "model_config": model.config.to_dict(), "model": model.config.describe(), "stand_in": args.stand_in,
        "n_train": len(data.train_images), "n_val": len(data.val_images),
    }, records)
    line = ", ".join(f"{k[4:]} {v:.1f}" for k, v in fids.items()) if fids else "FID skipped"
    print(f"done: val FG-ARI {last['val_fg_ari']:.3f}, ARI {last['val_ari']:.3f}, diffusion loss "
          f"{last['val_loss']:.4f} after {last['epoch']} epochs; VAE PSNR {vae_scores['psnr']:.1f} dB; sampling "
          f"{seconds_per_image:.2f} s/image; "
          f"FID vs val ({n_fid}): {line}"
          + (f"; broadcast decoder: FG-ARI {side['val_fg_ari']:.3f}" + (f", FID recon {side['fid_reconstruction']:.1f}"
             if 'fid_reconstruction' in side else "") if side else "") + f"; run directory {run.path}")
    return summary


@torch.no_grad()
def evaluate_baseline(path, data, args, diffusion_recon, reference, n_fid: int, run) -> dict:
    """slot_attention's SlotAutoencoder on the same val images: FG-ARI / ARI (all val), MSE and FID of its
    reconstructions, FID of its composed scenes, decoding seconds per image; a side-by-side grid."""
    device = data.val_images.device
    model, state = load_autoencoder(path)
    model = model.to(device).eval()
    if model.config.image_size != args.image_size:
        raise UserError(f"--baseline {path} was trained at {model.config.image_size} px, this run at "
                        f"{args.image_size}; pick a baseline of the same --image-size")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    fg, ari, recon, seconds = [], [], [], 0.0
    for start in range(0, len(data.val_images), EVAL_BATCH):
        x = data.val_images[start:start + EVAL_BATCH].float() / 255
        slots, _ = model.slot_encoder(x, generator=generator)
        tic = time.perf_counter()
        out = model.decode(slots)
        seconds += time.perf_counter() - tic
        scores = segmentation_scores(data.val_masks[start:start + EVAL_BATCH], predicted_segmentation(out["masks"]))
        fg.append(scores["fg_ari"]), ari.append(scores["ari"]), recon.append(out["recon"].clamp(0, 1).cpu())
    recon = torch.cat(recon)
    val = data.val_images.float().cpu() / 255
    side = {"path": str(path), "val_fg_ari": float(torch.cat(fg).mean()), "val_ari": float(torch.cat(ari).mean()),
            "reconstruction_mse": float(((recon - val) ** 2).mean()),
            "reconstruction_mse_same_images": float(((recon[:len(diffusion_recon)] - val[:len(diffusion_recon)]) ** 2
                                                     ).mean()),
            "decoding_seconds_per_image": seconds / len(val), "model": model.config.describe(),
            "epochs": int(state.get("epoch", 0))}
    trained = Path(path).parent / "summary.json"      # the baseline run's own wall time, when it has one
    if trained.exists():
        own = read_json(trained, f"delete {trained} or train the baseline again", keys=())
        side.update(wall_seconds=own.get("wall_seconds"), curve=own.get("curve", []))
    library = build_library(model, data.train_images[:args.library_images], args.clusters, seed=args.seed)
    composed = decode_slot_sets(model, compose(library, max(n_fid, 24), args.seed))
    if reference is not None:
        side.update(_fids({"reconstruction": recon, "compositional": composed}, reference, n_fid))
    g = min(8, len(diffusion_recon))
    tiles = [t for i in range(g) for t in (val[i], recon[i], diffusion_recon[i])]
    plot_image_grid(np.stack([t.permute(1, 2, 0).numpy() for t in tiles]), ["image", "broadcast decoder",
                    "diffusion decoder"] * g, run.file("side_by_side.png"), ncols=6,
                    title="the same val images: slot_attention's broadcast decoder vs the diffusion decoder")
    plot_image_grid(composed[:24].permute(0, 2, 3, 1).numpy(), [""] * min(24, len(composed)),
                    run.file("baseline_compositional.png"), ncols=8,
                    title="broadcast decoder: new scenes from its slot library")
    return side
