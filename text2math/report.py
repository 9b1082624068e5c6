"""The report: loss curves; the four models (exact match and execution accuracy, greedy and beam, and the learned
reranker over each model's candidates, beside the nearest-neighbour references: the nearest program, and
`knn.py --learned`'s ranking of the neighbours' programs, one run per seed); teacher forcing 0.3 / 0.6 / 0.9
and beams 1 / 10 / 20 on the best model; the best model's headline over three seeds."""
from __future__ import annotations

import statistics
from pathlib import Path

from common.plots import plot_overlays
from common.reporting import Headline, RunResult, RunSpec, copy_figure, markdown_table, pct
from text2math.model import MODELS
from text2math.train import RECIPE

BEST = RECIPE["model"]   # the best model on the real-data table (README): train.py's defaults are its recipe
BEAMS = ("--beam-sizes", "1", "10", "20")
TEACHER_FORCING = {"0.3": "tf_0.3", "0.6": "tf_0.6", "0.9": "tf_0.9", "1.0": BEST}  # value -> run
TASK = "Seq2seq models that turn MathQA word problems into executable programs"
SEEDS = {0: BEST, 1: f"{BEST}_seed1", 2: f"{BEST}_seed2"}                          # seed -> run (split included)
LEARNED_KNN = {seed: f"knn_learned_seed{seed}" for seed in SEEDS}                   # seed -> knn.py --learned run


def _scale(quick: bool) -> dict[str, tuple[str, ...]]:
    """Per-model flags on top of train.py's defaults (the recipe: --retrieve 2, batch 16, dropout 0.1, teacher
    forcing 1.0, lr 2e-3, the reranker). Quick: 1,500 generated problems, small LSTMs; the fine-tuned BERT keeps
    2 of MiniLM's 6 layers there so the whole report fits in minutes on a CPU."""
    if quick:
        base = ("--n-generated", "1500", "--hidden-size", "64", "--epochs", "4", "--batch-size", "32")
        return {"glove_lstm": base, "glove_attention": base, "bert_frozen": base,
                "bert_finetuned": (*base[:4], "--epochs", "2", "--batch-size", "32", "--bert-layers", "2")}
    # the CPU budgets of the README's real-data table (<= ~20 min each on a shared 2-core CPU)
    return {"glove_lstm": (), "glove_attention": ("--epochs", "5"),
            "bert_frozen": ("--epochs", "6", "--hidden-size", "256"),
            "bert_finetuned": ("--epochs", "2", "--hidden-size", "256", "--bert-layers", "2")}


def runs(quick: bool) -> list[RunSpec]:
    flags = _scale(quick)
    models = [RunSpec(name, ("--model", name, *flags[name], *(BEAMS if name == BEST else ()))) for name in MODELS]
    sweep = [RunSpec(run, ("--model", BEST, *flags[BEST], "--teacher-forcing", value))
             for value, run in TEACHER_FORCING.items() if run != BEST]
    seeds = [RunSpec(run, ("--model", BEST, *flags[BEST], "--seed", str(seed))) for seed, run in SEEDS.items()
             if run != BEST]
    generated = flags[BEST][:2] if quick else ()        # the same generated problems as the models' (--n-generated)
    knn = [RunSpec(run, ("--learned", "--seed", str(seed), *generated), script="knn.py")
           for seed, run in LEARNED_KNN.items()]
    return models + sweep + seeds + knn


def _rerank(summary: dict, key: str) -> str:
    return pct(summary["rerank"][key]) if summary.get("rerank") else "-"


def _other(summary: dict) -> str:
    other = (summary.get("rerank") or {}).get("other")
    return f"{pct(other['exec_acc'])} / {pct(other['option_acc'])}" if other else "-"


def _knn(summary: dict, key: str) -> str:
    return pct(summary["rerank"]["knn"][key]) if summary.get("rerank") else "-"


def _learned(results: dict[str, RunResult], seed: int, key: str) -> float | None:
    """knn.py --learned's score at `seed` (None when that run is not among the results)."""
    run = results.get(LEARNED_KNN[seed])
    return run.summary["learned"][key] if run is not None and "learned" in run.summary else None


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    report_dir.mkdir(parents=True, exist_ok=True)
    models = {name: results[name] for name in MODELS}
    plot_overlays({"train loss (per token)": {n: r.curve("train_loss") for n, r in models.items()},
                   "test loss (per token, teacher forced)": {n: r.curve("test_loss") for n, r in models.items()},
                   "validation execution accuracy (greedy)": {n: r.curve("val_exec_acc") for n, r in models.items()}},
                  report_dir / "loss_curves.png", ylabel="", title="the four models")
    rows = []
    for name, result in models.items():
        s = result.summary
        beam = s["beams"]["10"] if "10" in s["beams"] else s["beams"][max(s["beams"], key=int)]
        rows.append([MODELS[name].title, f"`--model {name}`", f"{s.get('best_epoch', s['epochs'])} / {s['epochs']}",
                     f"{s['train_seconds']:.0f} s", pct(s["exact_match"]), pct(beam["exact_match"]),
                     f"**{pct(s['exec_acc'])}** / {pct(beam['exec_acc'])}", pct(beam["option_acc"]),
                     f"**{_rerank(s, 'exec_acc')}** / {_rerank(s, 'option_acc')}", _other(s)])
    best = models[BEST].summary
    rows.append(["reference: nearest-neighbour program (`knn.py`)", "-", "-", "seconds", "-", "-",
                 f"{_knn(best, 'exec_acc')}", f"{_knn(best, 'option_acc')} (k = {best['rerank']['k']})"
                 if best.get("rerank") else "-", "-", "-"])
    seed0 = next(iter(SEEDS))
    if _learned(results, seed0, "exec_acc") is not None:
        k = results[LEARNED_KNN[seed0]].summary["k"]
        rows.append([f"reference: the {k} nearest problems' programs ranked by a logistic regression fit on the "
                     "training problems (`knn.py --learned`, no seq2seq model)", "-", "-",
                     "under a minute", "-", "-", pct(_learned(results, seed0, "exec_acc")),
                     pct(_learned(results, seed0, "option_acc")), "-", "-"])
    beam_rows = [[beam, pct(v["exact_match"]), pct(v["exec_acc"]), pct(v["exec_gold"]), pct(v["option_acc"]),
                  pct(v["runs"])] for beam, v in best["beams"].items()]
    if best.get("rerank"):
        r = best["rerank"]
        beam_rows.append([f"reranked (beam {r['beam']} + {r['k']} neighbours)", pct(r["exact_match"]),
                          pct(r["exec_acc"]), pct(r["exec_gold"]), pct(r["option_acc"]), pct(r["runs"])])
    tf_rows = []
    for value, run in TEACHER_FORCING.items():
        s = results[run].summary
        beam = s["beams"].get("10", s["beams"][max(s["beams"], key=int)])
        tf_rows.append([value, pct(s["exact_match"]), pct(s["exec_acc"]), pct(beam["option_acc"]),
                        _rerank(s, "exec_acc"), f"{s['train_loss']:.3f}", f"{s['test_loss']:.3f}"])
    seed_runs = {seed: results[run].summary for seed, run in SEEDS.items()}
    columns = {"greedy": lambda s: s["exec_acc"], "beam 10": lambda s: s["beams"]["10"]["exec_acc"],
               "reranked": lambda s: s["rerank"]["exec_acc"],
               "reranked option-aware": lambda s: s["rerank"]["option_acc"],
               "kNN": lambda s: s["rerank"]["knn"]["exec_acc"],
               "kNN option-aware": lambda s: s["rerank"]["knn"]["option_acc"]}
    complete = all(s.get("rerank") and "10" in s["beams"] for s in seed_runs.values())
    values = {seed: [get(s) for get in columns.values()] for seed, s in seed_runs.items()} if complete else {}
    seed_headers = ["seed", *columns]
    if values and all(_learned(results, seed, "exec_acc") is not None for seed in SEEDS):
        seed_headers.append("kNN learned")
        for seed in values:
            values[seed].append(_learned(results, seed, "exec_acc"))
    seed_rows = [[seed, *map(pct, row)] for seed, row in values.items()]
    if values:
        seed_rows.append(["mean ± sd", *(_mean_sd(list(column)) for column in zip(*values.values()))])
    curves = copy_figure(models[BEST], "curves.png", report_dir, f"{BEST}_curves.png")
    any_run = next(iter(models.values()))
    quick_bert = models["bert_finetuned"].config["args"].get("bert_layers")
    return "\n".join([
        "## The four models", "",
        f"Data: {any_run.config['data_source']}. Execution accuracy: the top-1 program, run on the problem's "
        f"numbers, lands within {best['tolerance']:.0%} (relative) of the correct option's value; option-aware: "
        "among the ranked programs, the first whose value is one of the five options (a second metric, not "
        "top-1); exact match: the program's tokens equal the gold program's. Grammar-constrained decoding; "
        "weights of the epoch best on validation; every run retrieves the 2 nearest training problems' programs "
        "(`--retrieve 2`). Reranked: the learned reranker (`reranker.py`) over the model's beam-10 programs and the "
        "20 nearest training problems' programs, fit on the validation problems; with the options among its "
        "features (its top-1 uses the options, so compare it with the kNN's option-aware figure), and without "
        f"them (a plain top-1). Seed {any_run.config['args']['seed']}.", "",
        markdown_table(["model", "flag", "best / run epochs", "train time", "exact match greedy",
                        "exact match beam 10", "execution acc greedy / beam 10", "option-aware beam 10",
                        "**reranked** top-1 / option-aware", "reranked, options not a feature"], rows), "",
        f"BERT encoder: `{Path(models['bert_frozen'].config['args']['bert']).name}`"
        + (f"; the fine-tuned model keeps its first {quick_bert} layers (`--bert-layers {quick_bert}`) to fit the "
           "CPU budget" if quick_bert else "") + ".", "",
        f"![loss curves]({report_dir.name}/loss_curves.png)", "",
        f"The best model's own curves ({BEST}): ![curves]({curves})", "",
        "## Teacher forcing", "",
        f"{MODELS[BEST].title} with the probability of feeding the gold token at each training step "
        "(`--teacher-forcing`); otherwise the model's own previous prediction is fed (greedy):", "",
        markdown_table(["teacher forcing", "exact match", "execution acc", "option-aware (beam 10)",
                        "reranked top-1", "train loss", "test loss"], tf_rows), "",
        "## Beam size", "",
        f"{MODELS[BEST].title}, length-normalised beam search (score = sum log p / length); beam 1 is greedy:", "",
        markdown_table(["beam", "exact match", "execution acc", "acc (gold value)", "option-aware",
                        "programs that run"], beam_rows), "",
        "## Three seeds", "",
        f"{MODELS[BEST].title}: the seed sets the split of dev.json too, so each seed is judged on its own "
        "held-out problems, beside the nearest-neighbour references on the same problems (execution accuracy; "
        "kNN learned: `knn.py --learned`'s top-1):", "",
        markdown_table(seed_headers, seed_rows) if seed_rows else "(a seed run lacks the reranker or beam 10)", "",
    ])


def headline(results: dict[str, RunResult]) -> Headline:
    """The index row: the best model with the learned reranker over seeds, options as a feature (option-aware,
    beside the kNN's option-aware figure) and not (a plain top-1, beside the kNN's top-1); greedy when the runs
    have no reranker. The original report gives no figure."""
    summaries = [results[run].summary for run in SEEDS.values() if run in results]
    if not summaries:
        return Headline(TASK, f"execution accuracy, best model ({BEST})", "—", "not run")
    if not all(s.get("rerank") for s in summaries):
        return Headline(TASK, f"execution accuracy, greedy, best model ({BEST}; %, mean ± sd over seeds)", "—",
                        _mean_sd([s["exec_acc"] for s in summaries]))
    with_options = [s["rerank"] if s["rerank"]["options"] else s["rerank"]["other"] for s in summaries]
    plain = [s["rerank"]["other"] if s["rerank"]["options"] else s["rerank"] for s in summaries]
    knn = [s["rerank"]["knn"] for s in summaries]
    option_aware, top1 = _mean_sd([r["exec_acc"] for r in with_options]), _mean_sd([r["exec_acc"] for r in plain])
    learned = [_learned(results, seed, "exec_acc") for seed in SEEDS]
    learned_said = f", learned kNN {_mean_sd(learned)}" if None not in learned else ""
    return Headline(TASK, f"execution accuracy, {BEST} + learned reranker (%, mean ± sd over seeds)", "—",
                    f"{option_aware} option-aware (kNN {_mean_sd([k['option_acc'] for k in knn])}); {top1} plain "
                    f"top-1 (kNN {_mean_sd([k['exec_acc'] for k in knn])}{learned_said})")
