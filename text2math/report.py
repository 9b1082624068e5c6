"""The report: loss curves, exact match and execution accuracy of the four models, the
teacher-forcing table (0.3, 0.6, 0.9) and the beam-size table (1, 10, 20) on the best model."""
from __future__ import annotations

from pathlib import Path

from common.plots import plot_overlays
from common.reporting import RunResult, RunSpec, copy_figure, markdown_table, pct
from text2math.model import MODELS

BEAMS = ("--beam-sizes", "1", "10", "20")
TEACHER_FORCING = {"0.3": "tf_0.3", "0.6": "tf_0.6", "0.9": "glove_attention"}  # value -> run


def _scale(quick: bool) -> dict[str, tuple[str, ...]]:
    """Per-model flags. Quick: 1,500 generated problems, small LSTMs; the fine-tuned BERT keeps 2 of
    MiniLM's 6 layers there so the whole report fits in minutes on a CPU."""
    if quick:
        base = ("--n-generated", "1500", "--hidden-size", "64", "--epochs", "6", "--batch-size", "32")
        return {"glove_lstm": base, "glove_attention": base, "bert_frozen": base,
                "bert_finetuned": (*base[:4], "--epochs", "3", "--batch-size", "32", "--bert-layers", "2")}
    base = ("--epochs", "10")
    return {"glove_lstm": base, "glove_attention": base, "bert_frozen": base,
            "bert_finetuned": ("--epochs", "3", "--bert-layers", "3")}


def runs(quick: bool) -> list[RunSpec]:
    flags = _scale(quick)
    models = [RunSpec(name, ("--model", name, *flags[name], *BEAMS)) for name in MODELS]
    sweep = [RunSpec(run, ("--model", "glove_attention", *flags["glove_attention"], "--teacher-forcing", value))
             for value, run in TEACHER_FORCING.items() if run.startswith("tf_")]
    return models + sweep


def build(results: dict[str, RunResult], report_dir: Path) -> str:
    report_dir.mkdir(parents=True, exist_ok=True)
    models = {name: results[name] for name in MODELS}
    plot_overlays({"train loss (per token)": {n: r.curve("train_loss") for n, r in models.items()},
                   "test loss (per token, teacher forced)": {n: r.curve("test_loss") for n, r in models.items()},
                   "test execution accuracy (greedy)": {n: r.curve("test_exec_acc") for n, r in models.items()}},
                  report_dir / "loss_curves.png", ylabel="", title="the four models")
    rows = []
    for name, result in models.items():
        s = result.summary
        rows.append([MODELS[name].title, f"`--model {name}`", s["description"].split(": ", 1)[1], s["epochs"],
                     f"{s['train_seconds']:.0f} s", pct(s["exact_match"]), f"**{pct(s['exec_acc'])}**",
                     s["loss_trend"]])
    best_name = max(models, key=lambda n: models[n].summary["exec_acc"])
    best = models[best_name].summary
    beam_rows = [[beam, pct(v["exact_match"]), pct(v["exec_acc"]), pct(v["runs"])] for beam, v in best["beams"].items()]
    tf_rows = []
    for value, run in TEACHER_FORCING.items():
        s = results[run].summary
        tf_rows.append([value, pct(s["exact_match"]), pct(s["exec_acc"]),
                        f"{s['train_loss']:.3f}", f"{s['test_loss']:.3f}"])
    curves = copy_figure(models[best_name], "curves.png", report_dir, f"{best_name}_curves.png")
    any_run = next(iter(models.values()))
    quick_bert = models["bert_finetuned"].config["args"].get("bert_layers")
    return "\n".join([
        "## The four models", "",
        f"Data: {any_run.config['data_source']}. Execution accuracy: the predicted program, run on the problem's "
        f"numbers, lands within {best['tolerance']:.0%} (relative) of the correct option's value; exact match: "
        "the program's tokens equal the gold program's. "
        f"Greedy decoding (beam 1); seed {any_run.config['args']['seed']}.", "",
        markdown_table(["model", "flag", "encoder -> decoder", "epochs", "train time", "exact match", "execution acc",
                        "train loss"], rows), "",
        f"BERT encoder: `{Path(any_run.config['args']['bert'] or models['bert_frozen'].config['args']['bert']).name}`"
        f" ({models['bert_frozen'].config['args']['bert']})"
        + (f"; the fine-tuned model keeps its first {quick_bert} layers (`--bert-layers {quick_bert}`) to fit the "
           "CPU budget" if quick_bert else "") + ".", "",
        f"![loss curves]({report_dir.name}/loss_curves.png)", "",
        f"The best model's own curves ({best_name}): ![curves]({curves})", "",
        "## Teacher forcing", "",
        "Model 2 (GloVe + Bi-LSTM, attention decoder) with the probability of feeding the gold token at each "
        "training step (`--teacher-forcing`); otherwise the model's own previous prediction is fed:", "",
        markdown_table(["teacher forcing", "exact match", "execution acc", "final train loss", "test loss"],
                       tf_rows), "",
        "## Beam size", "",
        f"The best model by execution accuracy ({MODELS[best_name].title}), decoded with length-normalised beam "
        "search (score = sum log p / length); beam 1 is greedy decoding:", "",
        markdown_table(["beam", "exact match", "execution acc", "programs that run"], beam_rows), "",
    ])
