"""The report: head `seed` vs `gmm` side by side (loss terms, pen-state accuracy, recognisability of
samples), the default model's recognisability over three seeds (mean ± std, per class too), the curves,
each head's sample grid and GIF, and examples of the training sketches."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.plots import plot_overlays
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, pct

HEAD_RUNS = ("seed", "gmm")
ORIGINAL_PEN_ACCURACY = 0.937  # the original report's "draw accuracy" (issue 6)
QUICK_ARGS = ("--max-per-class", "500", "--epochs", "8")
SEEDS = (0, 1, 2)          # the default model (head gmm) once per seed: the headline is their mean ± std
DEFAULT_HEAD = "gmm"


def runs(quick: bool) -> list[RunSpec]:
    """One run per head with train.py's defaults (seed 0), and the default head again with seeds 1 and 2;
    --quick: 500 drawings a class and 8 epochs (the default run, 1,000 a class and 10 epochs, takes minutes
    per run on a 2-core CPU)."""
    extra = QUICK_ARGS if quick else ()
    return ([RunSpec(head, ("--head", head, *extra)) for head in HEAD_RUNS]
            + [RunSpec(seed_run(seed), ("--head", DEFAULT_HEAD, "--seed", str(seed), *extra)) for seed in SEEDS[1:]])


def seed_run(seed: int) -> str:
    """The name of the default head's run with this seed (seed 0 is the head comparison's own run)."""
    return DEFAULT_HEAD if seed == SEEDS[0] else f"{DEFAULT_HEAD}_seed{seed}"


def mean_std(values: list[float]) -> str:
    """'84.00% ± 4.09' (std over runs, n - 1 in the denominator; a single run has no std)."""
    spread = f" ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
    return f"{100 * np.mean(values):.2f}%{spread}"


def seeded_runs(results: dict[str, RunResult]) -> list[RunResult]:
    """The default head's runs, one per seed, of those present."""
    return [results[seed_run(seed)] for seed in SEEDS if seed_run(seed) in results]


def seeds_table(results: dict[str, RunResult]) -> tuple[str, str]:
    """The default head's recognisability per seed and as mean ± std, overall and per class; and the headline."""
    seeded = seeded_runs(results)
    classes = seeded[0].summary["classes"]
    rows, overall, per_class = [], [], {name: [] for name in classes}
    for r in seeded:
        s = r.summary
        overall.append(s["recognisability"])
        for name in classes:
            per_class[name].append(s["recognisability_per_class"][name])
        rows.append([r.config["args"]["seed"], r.config["hardware"].get("torch_threads", "—"),
                     pct(s["recognisability"]), *(pct(s["recognisability_per_class"][n]) for n in classes),
                     f"{r.records[-1]['train_seconds']:.0f} s"])
    rows.append([f"**mean ± std** ({len(seeded)} seeds)", "", f"**{mean_std(overall)}**",
                 *(mean_std(per_class[n]) for n in classes), ""])
    s = seeded[0].summary
    table = markdown_table(["seed", "threads", f"recognised (T={s['temperature']:g}, {s['samples_judged']} samples)",
                            *classes, "train time"], rows)
    headline = (f"{mean_std(overall)} over {len(seeded)} seeds (lowest seed {pct(min(overall))}, "
                f"weakest class {min(classes, key=lambda n: np.mean(per_class[n]))})")
    return table, headline


def _row(result: RunResult) -> list:
    s = result.summary
    per_class = ", ".join(f"{k} {pct(v)}" for k, v in s["recognisability_per_class"].items())
    return [f"`{result.name}`", f"{s['test_offset_loss']:.3f}", f"{s['test_pen_loss']:.3f}", pct(s["test_pen_acc"]),
            f"**{pct(s['recognisability'])}** (T={s['temperature']:g}; {per_class})",
            ", ".join(f"T={t}: {pct(v)}" for t, v in s["recognisability_by_temperature"].items()) or "—",
            pct(s["recognizer_test_acc"]),
            f"{s['mean_sample_rows']:.1f} / {s['mean_data_rows']:.1f}", s["epochs"],
            f"{result.records[-1]['train_seconds']:.0f} s"]


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    heads = [results[name] for name in HEAD_RUNS]
    first = heads[0]
    args, s = first.config["args"], first.summary
    rows = [_row(r) for r in heads]
    rows.append(["the original report (issue 6)", "—", "—", pct(ORIGINAL_PEN_ACCURACY), "not measured", "—", "—", "—",
                 10, "—"])
    plot_overlays({"val pen-state accuracy": {r.name: r.curve("val_pen_acc") for r in heads},
                   "val pen loss": {r.name: r.curve("val_pen_loss") for r in heads}},
                  report_dir / "heads_pen.png", ylabel="", title="pen states: head seed vs gmm (same data, seed)")
    figures = {(r.name, f): copy_figure(r, f, report_dir, f"{r.name}_{f}")
               for r in heads for f in ("samples.png", "samples.gif", "curves.png")}
    examples = copy_figure(first, "training_examples.png", report_dir, "training_examples.png")
    seeds, headline = seeds_table(results)
    lines = [
        f"## The default model over seeds: samples recognised {headline}", "",
        f"The default head (`{DEFAULT_HEAD}`) trained once per seed; each seed also draws its own generated data "
        f"set, split and recognizer. `threads` is the number of CPU threads the run used (`--threads auto`).", "",
        seeds, "",
        "## Head `seed` vs `gmm`", "",
        f"Data: {s['data_source']}; {s['n_train']:,} train / {s['n_val']:,} val / {s['n_test']:,} test sketches; "
        f"seed {args['seed']}, batch {args['batch_size']}, AdamW lr {args['lr']:g} (cosine), gradient clipping "
        f"{args['grad_clip']:g}. Model: {s['model'].rsplit(' -> head', 1)[0]} -> head.", "",
        markdown_table(["head", "test offset loss", "test pen loss", "test pen-state acc",
                        "samples recognised as their class", "the same at other temperatures",
                        "recognizer on test sketches",
                        "rows per sample / per test sketch", "epochs", "train time"], rows), "",
        "- The offset losses are not comparable across heads: `seed` reports the mean squared error of "
        "(dx, dy) in units of the offsets' std, `gmm` the mixture's negative log-likelihood (it can be negative).",
        f"- Recognisability: {s['samples_judged']} samples per head ({s['samples_judged'] // len(s['classes'])} "
        f"per class) judged by a small CNN trained on the rasterised train split of the same data source; "
        f"chance is {pct(s['chance'])}. An empty sample counts as a miss.",
        "- Pen-state accuracy is over every real row plus the first end-of-sketch row (the padding after it is "
        "masked out of every loss and metric).", "",
        f"![pen states]({report_dir.name}/heads_pen.png)", "",
    ]
    for r in heads:
        lines += [f"### Head `{r.name}`", "", f"![{r.name} curves]({figures[r.name, 'curves.png']})", "",
                  f"![{r.name} samples]({figures[r.name, 'samples.png']})", "",
                  f"![{r.name} drawing]({figures[r.name, 'samples.gif']})", ""]
    lines += ["### The training sketches", "", f"![training sketches]({examples})", ""]
    return "\n".join(lines)


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: the default head's pen-state accuracy (the original report's "draw accuracy") over seeds,
    with the report's own headline, samples recognised as their class (the original did not measure it)."""
    seeded = [r.summary for r in seeded_runs(results)]
    ours = (f"{mean_std([s['test_pen_acc'] for s in seeded])} (samples recognised "
            f"{mean_std([s['recognisability'] for s in seeded])})") if seeded else "not run"
    return Headline("A class-conditioned LSTM stroke generator for Quick, Draw! sketches",
                    f"test pen-state accuracy, head {DEFAULT_HEAD} (mean ± std over seeds)",
                    f"{pct(ORIGINAL_PEN_ACCURACY)} (\"draw accuracy\")", ours)
