"""Train the KL-regularised autoencoder whose latents the diffusion decoder models.

    python slot_diffusion/train_vae.py                      # flat stand-in, 64x64 -> 3x16x16 latents
    python slot_diffusion/train_vae.py --image-size 128     # 3x32x32 latents (the course's shape)
    python slot_diffusion/train_vae.py --smoke

Per epoch: train MSE / KL, val MSE and PSNR (posterior mean decoded). At the end `scale` is set to 1 / the
std of the training latents (so the diffusion model sees unit-variance latents) and stored in the
checkpoint; a grid of val images and reconstructions is written. slot_diffusion/train.py uses any
checkpoint.pt of this script (--vae PATH) or trains one itself (--vae train).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from common import distributed
from common.checkpoint import load_checkpoint
from common.cli import make_parser, non_negative_float, parse_args, positive_int
from common.errors import UserError, run_cli
from common.models import count_parameters
from common.plots import plot_curves, plot_image_grid
from common.progress import progress
from common.runtime import seed_everything
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from slot_diffusion.data import add_scene_flags, scenes_from_flags
from slot_diffusion.vae import VAE, VAEConfig, evaluate_vae, vae_loss

ASSIGNMENT = "slot_diffusion"
# the training recipe of the README's VAE (the model's is VAEConfig's defaults)
TRAINING = dict(epochs=6, batch_size=32, lr=1e-3, vae_kl_weight=1e-5, grid_images=8)
N_VAL = 200                # slot_diffusion's val scenes (the VAE sees the scenes train.py sees)
SMOKE_MODEL = dict(image_size=32, vae_stem=8, vae_widths=[8, 16])
EVAL_BATCH = 64


def widths(text: str) -> list[int]:
    """'32,64' -> [32, 64] (a list: config.json stores it as one, so --resume compares equal)."""
    values = [int(v) for v in text.split(",")]
    if not values or min(values) <= 0:
        raise ValueError(text)
    return values


def add_vae_flags(parser) -> None:
    """The VAE's flags (train.py takes them for --vae train); defaults from VAEConfig."""
    add = parser.add_argument
    defaults = VAEConfig()
    add("--vae-stem", type=positive_int, default=defaults.stem,
        help="VAE full-resolution width (default: %(default)s)")
    add("--vae-widths", type=widths, default=list(defaults.widths),
        help=f"VAE widths, one per x2 downsampling (two: 4x) (default: {','.join(map(str, defaults.widths))})")
    add("--vae-kl-weight", type=non_negative_float, default=TRAINING["vae_kl_weight"],
        help="weight of the KL term (per-element means) (default: %(default)s)")


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=TRAINING["epochs"], batch_size=TRAINING["batch_size"],
                         lr=TRAINING["lr"])
    add_scene_flags(parser, n_val=N_VAL)
    add_vae_flags(parser)
    parser.add_argument("--grid-images", type=positive_int, default=TRAINING["grid_images"],
                        help="val images in the reconstruction grid (default: %(default)s)")
    return parser


def parse(argv=None):
    """The flags, with --smoke's tiny model and data."""
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.grid_images = min(args.epochs, 2), 4
        vars(args).update(SMOKE_MODEL)
    vae_config(args)
    return args


def run_name(args) -> str:
    what = args.stand_in if args.data != "real" else "clevrtex"
    return f"vae_{what}_{args.data}_s{args.image_size}_seed{args.seed}"


def vae_config(args) -> VAEConfig:
    config = VAEConfig(stem=args.vae_stem, widths=tuple(args.vae_widths))
    if args.image_size % config.factor:
        raise UserError(f"--image-size {args.image_size} must be a multiple of the VAE's downsampling {config.factor}")
    return config


@torch.no_grad()
def latent_scale(model: VAE, images: torch.Tensor) -> float:
    """1 / std of the posterior means of (up to 1,000) training images."""
    model.eval()
    means = torch.cat([model.posterior(images[i:i + EVAL_BATCH].float() / 255)[0]
                       for i in range(0, min(len(images), 1000), EVAL_BATCH)])
    return float(1.0 / means.std().clamp(min=1e-6))


def main(argv=None) -> dict:
    args = parse(argv)
    return train(args)


def train(args) -> dict:
    """One VAE run into args.out."""
    config = vae_config(args)
    with distributed.launch(args) as info:
        seed_everything(args.seed)
        device = torch.device(info.device)
        data = scenes_from_flags(args).to(device)
        model = VAE(config).to(device)
        run = distributed.run_dir(args, data_source=data.source, device=str(device))
        print(f"vae: {config.describe()}, {count_parameters(model):,} parameters; "
              f"{len(data.train_images):,} train / {len(data.val_images):,} val; data: {data.source}")
        trained = distributed.wrap_model(model, info.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        batch = distributed.per_rank_batch(args.batch_size)
        steps = batch_count(len(data.train_images), batch, drop_last=True)

        start, elapsed = resume(run, trained, optimizer)
        guard = EpochGuard(run)
        for epoch in range(start, args.epochs):
            tic = time.perf_counter()
            trained.train()
            meter = Meter()
            batches = tensor_batches((data.train_images,), batch, seed=args.seed, epoch=epoch, drop_last=True)
            for (images,) in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
                images = images.float() / 255
                with autocast(device):
                    loss, parts = vae_loss(trained(images), images, args.vae_kl_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = len(images)
                meter.add(loss, n, mse=parts["mse"] * n, kl=parts["kl"] * n)
            train = guard.check(meter, trained, epoch)
            elapsed += time.perf_counter() - tic

            trained.eval()
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train),
                      **prefixed("val", evaluate_vae(model, data.val_images)), "train_seconds": elapsed}
            end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), trained, optimizer),
                      quiet=args.smoke)
        trained.eval()
        finished_records(run)
        if not info.is_main:
            return {}
        return finish(run, model, data, args)


def finish(run, model: VAE, data, args) -> dict:
    """Set the latent scale, store it in the checkpoint, write the grid and summary."""
    model.scale.fill_(latent_scale(model, data.train_images))
    state = load_checkpoint(run.path / "checkpoint.pt")
    state["model"] = model.state_dict()
    run.save_checkpoint(state)
    scores = evaluate_vae(model, data.val_images)
    records = run.metrics()
    plot_curves(records, {"MSE": ["train_mse", "val_loss"], "val PSNR (dB)": ["val_psnr"]}, run.file("curves.png"),
                title=model.config.describe())
    shown = data.val_images[:args.grid_images].float() / 255
    with torch.no_grad():
        z = model.encode(shown)
        recon = model.decode(z).clamp(0, 1)
    tiles = [t.permute(1, 2, 0).cpu().numpy() for pair in zip(shown, recon) for t in pair]
    plot_image_grid(np.stack(tiles), ["image", "VAE"] * len(shown), run.file("reconstructions.png"), ncols=8,
                    title=f"val images and VAE reconstructions ({z.shape[1]}x{z.shape[2]}x{z.shape[3]} latents), "
                          f"PSNR {scores['psnr']:.1f} dB")
    last = records[-1]
    summary = run.finish({"val_psnr": scores["psnr"], "val_mse": scores["loss"], "latent_scale": float(model.scale),
                          "latent_shape": list(z.shape[1:]), "train_mse": last["train_mse"],
                          "train_seconds": last["train_seconds"], "epochs": last["epoch"],
                          "model_config": model.config.to_dict(), "model": model.config.describe(),
                          "parameters": count_parameters(model)}, records)
    print(f"vae done: val PSNR {scores['psnr']:.2f} dB (MSE {scores['loss']:.5f}), latents {list(z.shape[1:])}, "
          f"scale {float(model.scale):.3f}; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
