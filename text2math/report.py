"""The report: loss curves, exact match and execution accuracy of the four models, the
teacher-forcing table (0.3, 0.6, 0.9) and the beam-size table (1, 10, 20) on the best model."""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import RunResult, RunSpec, copy_figure, markdown_table, pct
from text2math.model import MODELS

BEAMS = ("--beam-sizes", "1", "10", "20")
BEST = "bert_frozen"   # the best model on the real-data table (README): the teacher-forcing sweep reruns it
TEACHER_FORCING = {"0.3": "tf_0.3", "0.6": "tf_0.6", "0.9": "tf_0.9", "1.0": BEST}  # value -> run
# the protocol of every run (README "Real-data runs"): retrieval of the 2 nearest TRAINING problems' programs,
# batch 16 (4x the updates of batch 64 per epoch), light dropout, gold tokens fed in training
PROTOCOL = ("--retrieve", "2", "--batch-size", "16", "--dropout", "0.1", "--teacher-forcing", "1.0", "--lr", "2e-3")


def _scale(quick: bool) -> dict[str, tuple[str, ...]]:
    """Per-model flags. Quick: 1,500 generated problems, small LSTMs; the fine-tuned BERT keeps 2 of
    MiniLM's 6 layers there so the whole report fits in minutes on a CPU."""
    if quick:
        base = ("--n-generated", "1500", "--hidden-size", "64", "--epochs", "6", "--batch-size", "32")
        return {"glove_lstm": base, "glove_attention": base, "bert_frozen": base,
                "bert_finetuned": (*base[:4], "--epochs", "3", "--batch-size", "32", "--bert-layers", "2")}
    glove = ("--hidden-size", "128")     # the CPU budgets of the README's real-data table (<= ~20 min each)
    return {"glove_lstm": (*glove, "--epochs", "8"), "glove_attention": (*glove, "--epochs", "5"),
            "bert_frozen": ("--epochs", "6", "--hidden-size", "256"),
            "bert_finetuned": ("--epochs", "2", "--hidden-size", "256", "--bert-layers", "2")}


def runs(quick: bool) -> list[RunSpec]:
    flags = {name: (*PROTOCOL, *scale) for name, scale in _scale(quick).items()}   # later flags win
    models = [RunSpec(name, ("--model", name, *flags[name], *BEAMS)) for name in MODELS]
    sweep = [RunSpec(run, ("--model", BEST, *flags[BEST], "--teacher-forcing", value))
             for value, run in TEACHER_FORCING.items() if run.startswith("tf_")]
    return models + sweep


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
        beam = s["beams"][max(s["beams"], key=int)]
        rows.append([MODELS[name].title, f"`--model {name}`", s["description"].split(": ", 1)[1],
                     f"{s.get('best_epoch', s['epochs'])} / {s['epochs']}", f"{s['train_seconds']:.0f} s",
                     pct(s["exact_match"]), f"**{pct(s['exec_acc'])}**", pct(s["exec_gold"]),
                     f"{pct(beam['exec_acc'])} / {pct(beam['option_acc'])}"])
    best_name = max(models, key=lambda n: models[n].summary["exec_acc"])
    best = models[best_name].summary
    beam_rows = [[beam, pct(v["exact_match"]), pct(v["exec_acc"]), pct(v["exec_gold"]), pct(v["option_acc"]),
                  pct(v["runs"])] for beam, v in best["beams"].items()]
    tf_rows = []
    for value, run in TEACHER_FORCING.items():
        s = results[run].summary
        tf_rows.append([value, pct(s["exact_match"]), pct(s["exec_acc"]), pct(s["option_acc"]),
                        f"{s['train_loss']:.3f}", f"{s['test_loss']:.3f}"])
    curves = copy_figure(models[best_name], "curves.png", report_dir, f"{best_name}_curves.png")
    any_run = next(iter(models.values()))
    quick_bert = models["bert_finetuned"].config["args"].get("bert_layers")
    return "\n".join([
        "## The four models", "",
        f"Data: {any_run.config['data_source']}. Execution accuracy: the top-1 program, run on the problem's "
        f"numbers, lands within {best['tolerance']:.0%} (relative) of the correct option's value (or of the gold "
        "program's own value); option-aware: among the beam's programs, the best-scoring one whose value is one "
        "of the five options (a second metric, not top-1); exact match: the program's tokens equal the gold "
        "program's. Grammar-constrained decoding, greedy unless a beam is named; weights of the epoch best on "
        f"validation (early stopping); seed {any_run.config['args']['seed']}.", "",
        markdown_table(["model", "flag", "encoder -> decoder", "best / run epochs", "train time", "exact match",
                        "execution acc", "acc (gold value)", "widest beam: acc / option-aware"], rows), "",
        f"BERT encoder: `{Path(any_run.config['args']['bert'] or models['bert_frozen'].config['args']['bert']).name}`"
        f" ({models['bert_frozen'].config['args']['bert']})"
        + (f"; the fine-tuned model keeps its first {quick_bert} layers (`--bert-layers {quick_bert}`) to fit the "
           "CPU budget" if quick_bert else "") + ".", "",
        f"![loss curves]({report_dir.name}/loss_curves.png)", "",
        f"The best model's own curves ({best_name}): ![curves]({curves})", "",
        "## Teacher forcing", "",
        f"{MODELS[BEST].title} with the probability of feeding the gold token at each "
        "training step (`--teacher-forcing`); otherwise the model's own previous prediction is fed (greedy):", "",
        markdown_table(["teacher forcing", "exact match", "execution acc", "option-aware", "train loss", "test loss"],
                       tf_rows), "",
        "## Beam size", "",
        f"The best model by execution accuracy ({MODELS[best_name].title}), decoded with length-normalised beam "
        "search (score = sum log p / length); beam 1 is greedy decoding:", "",
        markdown_table(["beam", "exact match", "execution acc", "acc (gold value)", "option-aware",
                        "programs that run"], beam_rows), "",
    ])
