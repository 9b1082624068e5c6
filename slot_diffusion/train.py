"""Train SlotDiffusion: slot_attention's slot encoder with a latent diffusion decoder (VAE frozen).

    python slot_diffusion/train.py                                   # flat stand-in, 64x64, VAE trained first
    python slot_diffusion/train.py --vae runs/slot_diffusion/vae_flat_s64_seed0/checkpoint.pt
    python slot_diffusion/train.py --baseline runs/slot_attention/<run>/checkpoint.pt   # side by side
    python slot_diffusion/train.py --smoke                           # seconds: every artefact

Per epoch: train and val diffusion loss (eps MSE; val with fixed noise and steps), val ARI / FG-ARI of the
masks from slot attention's last-iteration attention. At the end: reconstructions (latents sampled from
pure noise with each image's own slots, decoded by the VAE), the mask grid, the slot library (K-means)
and scenes composed from it, the Gaussian-slot baseline, sampling seconds per image, FID against the val
images; with --baseline, slot_attention's broadcast decoder evaluated on the same val images.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import REPO_ROOT, distributed
from common.cli import layer_count, make_parser, non_negative_int, parse_args, positive_int
from common.divergence import DivergenceGuard
from common.errors import UserError, run_cli
from common.models import count_parameters
from common.progress import progress
from common.runtime import last_line, run_child, seed_everything
from common.schedules import add_step_schedule_flags, halving, lr_lambda
from common.segmentation import mean_scene_scores
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from slot_attention.library import add_library_flags
from slot_attention.model import ENCODER_FIELDS, add_config_flags, config_from_args, predicted_segmentation
from slot_diffusion import train_vae
from slot_diffusion.artefacts import write_artefacts
from slot_diffusion.data import add_scene_flags, scenes_from_flags
from slot_diffusion.ddpm import SAMPLERS, SCHEDULES
from slot_diffusion.model import SlotDiffusion, SlotDiffusionConfig
from slot_diffusion.vae import VAE, load_vae

ASSIGNMENT = "slot_diffusion"
# the training recipe the README measured (the model's: SlotDiffusionConfig's defaults, its encoder slot_attention's)
TRAINING = dict(epochs=20, batch_size=16, lr=4e-4, warmup_steps=300, decay_steps=3000, grad_clip=1.0,
                explode_factor=50.0, vae_epochs=6, sample_steps=50, sampler="ddpm", fid_samples=100, grid_images=6,
                baseline_epochs=20)
SMOKE_MODEL = dict(image_size=32, slots=4, slot_dim=16, encoder_channels=8, mlp_hidden=16, unet_widths=[16, 32],
                   attention_levels=[1], heads=2, timesteps=100, sample_steps=4)
EVAL_BATCH = 64


def levels(text: str) -> list[int]:
    """'1,2' -> [1, 2]; '' -> [] (no transformer blocks but the middle one)."""
    return [int(v) for v in text.split(",") if v]


def add_model_flags(parser) -> None:
    """The encoder's flags (slot_attention's, with its defaults) and the diffusion decoder's (SlotDiffusionConfig's)."""
    add_config_flags(parser, ENCODER_FIELDS)
    defaults = SlotDiffusionConfig()
    add = parser.add_argument
    add("--unet-widths", type=train_vae.widths, default=list(defaults.unet_widths),
        help="UNet widths, one per resolution level (x2 downsampling between levels) (default: "
             f"{','.join(map(str, defaults.unet_widths))})")
    add("--unet-blocks", type=layer_count, default=defaults.unet_blocks,
        help="residual blocks per level (default: %(default)s)")
    add("--attention-levels", type=levels, default=list(defaults.attention_levels),
        help="levels (0 = full latent resolution) with transformer blocks; the middle always has one "
             f"(default: {','.join(map(str, defaults.attention_levels))})")
    add("--heads", type=positive_int, default=defaults.heads, help="attention heads (default: %(default)s)")
    add("--schedule", choices=SCHEDULES, default=defaults.schedule, help="beta schedule (default: %(default)s)")
    add("--timesteps", type=positive_int, default=defaults.timesteps, help="diffusion steps T (default: %(default)s)")


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=TRAINING["epochs"], batch_size=TRAINING["batch_size"],
                         lr=TRAINING["lr"])
    add_scene_flags(parser, n_val=train_vae.N_VAL)
    add_model_flags(parser)
    add = parser.add_argument
    add("--vae", default="train",
        help="a checkpoint.pt of slot_diffusion/train_vae.py, or 'train': train one into <out>/vae first "
             "(reused when finished) (default: %(default)s)")
    add("--vae-epochs", type=positive_int, default=TRAINING["vae_epochs"],
        help="epochs of the VAE under --vae train (default: %(default)s)")
    train_vae.add_vae_flags(parser)
    add("--sample-steps", type=positive_int, default=TRAINING["sample_steps"],
        help="reverse-process steps when sampling (strided over the T steps) (default: %(default)s)")
    add("--sampler", choices=SAMPLERS, default=TRAINING["sampler"],
        help="ddpm: ancestral sampling with the posterior variance; ddim: deterministic DDIM (default: %(default)s)")
    add_step_schedule_flags(parser, warmup=TRAINING["warmup_steps"], decay=TRAINING["decay_steps"],
                            clip=TRAINING["grad_clip"], explode=TRAINING["explode_factor"])
    add_library_flags(parser)
    add("--fid-samples", type=non_negative_int, default=TRAINING["fid_samples"],
        help="images per FID set; 0: no FID (each sampled image costs --sample-steps UNet passes and Inception "
             "takes 0.2-1.5 s an image on a CPU; --smoke skips it) (default: %(default)s)")
    add("--grid-images", type=positive_int, default=TRAINING["grid_images"],
        help="val images in the mask grid (default: %(default)s)")
    add("--baseline", default="none",
        help="slot_attention's broadcast decoder evaluated beside this one on the same val images: a "
             "checkpoint.pt of slot_attention/train.py, 'train' (train one into <out>/baseline with the same "
             "data, seed and encoder flags, --baseline-epochs) or 'none' (default: %(default)s)")
    add("--baseline-epochs", type=positive_int, default=TRAINING["baseline_epochs"],
        help="epochs of the slot_attention baseline under --baseline train (default: %(default)s)")
    return parser


def parse(argv=None):
    """The flags, with --smoke's tiny models and data; the encoder's config is checked here (one-line errors)."""
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.vae_epochs = min(args.epochs, 2), 1
        args.fid_samples, args.library_images, args.clusters, args.grid_images = 0, 16, 4, 2
        args.warmup_steps, args.baseline_epochs = min(args.warmup_steps, 2), 1
        args.vae_stem, args.vae_widths = 8, [8, 16]
        vars(args).update(SMOKE_MODEL)
    config_from_args(args, ENCODER_FIELDS)
    return args


def run_name(args) -> str:
    what = args.stand_in if args.data != "real" else "clevrtex"
    return f"{what}_{args.data}_s{args.image_size}_k{args.slots}_b{args.batch_size}_lr{args.lr:g}_seed{args.seed}"


def model_config(args, latent_size: int) -> SlotDiffusionConfig:
    encoder = config_from_args(args, ENCODER_FIELDS)
    try:
        return SlotDiffusionConfig(encoder=encoder, latent_size=latent_size, unet_widths=tuple(args.unet_widths),
                                   unet_blocks=args.unet_blocks, attention_levels=tuple(args.attention_levels),
                                   heads=args.heads, schedule=args.schedule, timesteps=args.timesteps)
    except ValueError as err:
        raise UserError(f"{err}; change --image-size, --unet-widths or --encoder-stride") from None


def shared_flags(args) -> list[str]:
    """The data and runtime flags a nested run (the VAE, the baseline) takes from this one."""
    flags = ["--data", args.data, "--data-root", str(args.data_root), "--stand-in", args.stand_in,
             "--image-size", str(args.image_size), "--n-train", str(args.n_train), "--n-val", str(args.n_val),
             "--seed", str(args.seed), "--device", args.device, "--threads", str(args.threads), "--wandb", "off"]
    flags += ["--subsample", str(args.subsample)] if args.subsample else []
    return flags + (["--smoke"] if args.smoke else [])


def flag(name: str, value) -> list[str]:
    """The command-line flag that sets `name` to `value`: ['--slots', '11'], ['--no-colour-shortcut']."""
    if isinstance(value, bool):
        return ["--" + ("" if value else "no-") + name.replace("_", "-")]
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return ["--" + name.replace("_", "-"), text]


def encoder_flags(args) -> list[str]:
    """This run's encoder flags, for the slot_attention baseline (so both decoders get the same encoder)."""
    return [text for name in ENCODER_FIELDS for text in flag(name, getattr(args, name))]


def check_resumed_model(run, config: SlotDiffusionConfig) -> None:
    """Under --resume, a checkpoint of another model (a run started before the encoder's defaults became
    slot_attention's: Gaussian slots, no colour shortcut) is one line naming the flags it was trained with."""
    state = run.resume_state()
    if state is None or not isinstance(state.get("model_config"), dict):
        return                      # resume() says what is wrong with it
    saved = SlotDiffusionConfig.from_dict(state["model_config"])
    differ = [*((name, getattr(saved.encoder, name)) for name in ENCODER_FIELDS
                if getattr(saved.encoder, name) != getattr(config.encoder, name)),
              *((name, getattr(saved, name)) for name in ("unet_widths", "unet_blocks", "attention_levels", "heads",
                                                          "schedule", "timesteps")
                if getattr(saved, name) != getattr(config, name))]
    if differ:
        flags = " ".join(text for name, value in differ for text in flag(name, value))
        raise UserError(f"{run.path / 'checkpoint.pt'} holds a model trained with {flags}: resume with those flags, "
                        f"or start over with --overwrite")


def obtain_vae(args, device) -> tuple[VAE, str]:
    """--vae PATH, or --vae train: train_vae.py into <out>/vae (a finished one is reused under --resume only)."""
    if args.vae != "train":
        path = Path(args.vae).expanduser().resolve()
        return load_vae(path, device), str(path)
    out = args.out / "vae"
    reuse = args.resume and (out / "summary.json").exists()
    if distributed.is_distributed() and not reuse:
        raise UserError("--vae train runs in one process: train the VAE first (slot_diffusion/train_vae.py, under "
                        "torchrun too) and pass its checkpoint with --vae PATH")
    if not reuse:
        print(f"training the VAE into {out} (--vae train)")
        train_vae.main([*shared_flags(args), "--epochs", str(args.vae_epochs), "--out", str(out), "--overwrite",
                        "--vae-stem", str(args.vae_stem), "--vae-widths", ",".join(map(str, args.vae_widths)),
                        "--vae-kl-weight", str(args.vae_kl_weight)])
    return load_vae(out / "checkpoint.pt", device), str(out / "checkpoint.pt")


@torch.no_grad()
def encode_latents(vae: VAE, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(images[i:i + EVAL_BATCH].float() / 255) for i in range(0, len(images), EVAL_BATCH)])


@torch.no_grad()
def evaluate_split(model: SlotDiffusion, images, latents, masks, seed: int, device) -> dict:
    """Val diffusion loss (fixed noise and steps), ARI and FG-ARI of the attention masks."""
    model.eval()

    def score(batch: list[torch.Tensor], generator: torch.Generator):
        x, z, true = batch                                  # (b, 3, H, W) uint8, (b, C, h, w), (b, H, W)
        loss, predicted = model.loss(x.float() / 255, z, generator)   # (b,), (b, K, 1, H, W)
        return loss, true, predicted_segmentation(predicted)

    return mean_scene_scores(score, (images, latents, masks), seed, device, EVAL_BATCH)


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        device = torch.device(info.device)
        data = scenes_from_flags(args).to(device)
        run = distributed.run_dir(args, data_source=data.source, device=str(device))
        vae, vae_path = obtain_vae(args, device)
        if args.image_size % vae.config.factor:
            raise UserError(f"--image-size {args.image_size} is not a multiple of the VAE's downsampling "
                            f"{vae.config.factor}")
        train_latents, val_latents = encode_latents(vae, data.train_images), encode_latents(vae, data.val_images)
        config = model_config(args, train_latents.shape[-1])
        if data.max_objects >= config.encoder.slots:
            print(f"note: scenes hold up to {data.max_objects} objects + background, more than --slots "
                  f"{config.encoder.slots}")
        seed_everything(args.seed)
        model = SlotDiffusion(config).to(device)
        print(f"{ASSIGNMENT}: {config.describe()}, {count_parameters(model):,} parameters (VAE {vae_path}, frozen); "
              f"{len(data.train_images):,} train / {len(data.val_images):,} val; data: {data.source}")
        trained = distributed.wrap_model(model, info.device,
                                         find_unused_parameters=config.encoder.has_unused_parameters)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(halving(args.decay_steps), 0,
                                                                           args.warmup_steps))
        batch = distributed.per_rank_batch(args.batch_size)
        steps = batch_count(len(data.train_images), batch, drop_last=True)

        check_resumed_model(run, config)
        start, elapsed = resume(run, trained, optimizer, scheduler)
        guard, step_guard = EpochGuard(run), DivergenceGuard(args.explode_factor, run.path, scheduler)
        earlier = run.metrics()          # the wall time carries on over --resume
        wall, since = (earlier[-1]["wall_seconds"] if earlier else 0.0), time.perf_counter()
        for epoch in range(start, args.epochs):
            tic = time.perf_counter()
            trained.train()
            meter = Meter()
            batches = tensor_batches((data.train_images, train_latents), batch, seed=args.seed, epoch=epoch,
                                     drop_last=True)
            for images, latents in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps,
                                            quiet=args.smoke):
                images = images.float() / 255
                with autocast(device):
                    loss = trained(images, latents)["loss"].mean()
                    step_guard.check(loss, scheduler.last_epoch // steps)         # names the step that diverged
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained.parameters(), args.grad_clip)
                optimizer.step()
                scheduler.step()
                meter.add(loss, len(images))
            train = guard.check(meter, trained, epoch)
            elapsed += time.perf_counter() - tic

            trained.eval()
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train)}
            scores = evaluate_split(model, data.val_images, val_latents, data.val_masks, args.seed, device)
            wall, since = wall + time.perf_counter() - since, time.perf_counter()
            record.update(**prefixed("val", scores), wall_seconds=wall, train_seconds=elapsed)
            end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), trained, optimizer, scheduler),
                      quiet=args.smoke)
        trained.eval()
        finished_records(run)
        if not info.is_main:
            return {}
        baseline = obtain_baseline(args)
        return write_artefacts(run, model, vae, data, args, baseline, vae_path)


def obtain_baseline(args) -> Path | None:
    """--baseline PATH, or --baseline train: slot_attention/train.py into <out>/baseline, with this run's data,
    seed and encoder flags (a finished one is reused under --resume only; an unfinished one is resumed then)."""
    if args.baseline == "none":
        return None
    if args.baseline != "train":
        return Path(args.baseline).expanduser().resolve()
    out = args.out / "baseline"
    if not (args.resume and (out / "summary.json").exists()):
        log = args.out / "baseline.log"
        print(f"training the slot_attention baseline into {out} (--baseline train; its output: {log})")
        command = [sys.executable, str(REPO_ROOT / "slot_attention" / "train.py"), *shared_flags(args),
                   *encoder_flags(args), "--epochs", str(args.baseline_epochs), "--batch-size",
                   str(args.batch_size), "--fid-samples", "0", "--library-images", str(args.library_images),
                   "--clusters", str(args.clusters), "--out", str(out),
                   "--resume" if args.resume and (out / "config.json").exists() else "--overwrite"]
        returncode = run_child(command, log)
        if returncode != 0:
            raise UserError(f"the slot_attention baseline failed (exit {returncode}): {last_line(log)}; log: {log}")
    return out / "checkpoint.pt"


if __name__ == "__main__":
    run_cli(main)
