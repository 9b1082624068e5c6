"""Evaluate a saved text2math model on any MathQA json file (test.json, challenge_test.json, ...).

    python text2math/evaluate.py --checkpoint runs/text2math/<run>/best.pt --eval-file MathQA/test.json
    python text2math/evaluate.py --checkpoint runs/text2math/<run> --eval-file dev.json --beam-sizes 1 10

The checkpoint (best.pt or checkpoint.pt of a train.py run, or its run folder) holds the model's config
and trained weights; a frozen BERT encoder is rebuilt from its package or folder. Writes
evaluation.json (and predictions.jsonl) into --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common.checkpoint import load_checkpoint
from common.cli import OneLineParser, positive_float, positive_int, thread_count
from common.errors import UserError, run_cli
from common.models import rebuild_model
from common.rundir import write_json
from common.runtime import set_cpu_threads
from text2math.data import read_given_file
from text2math.model import MODELS, Seq2Seq, Seq2SeqConfig
from text2math.train import BEST, cache_features, describe_beams, encode, evaluate_beams


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True,
        help="best.pt / checkpoint.pt of a train.py run, or its folder")
    add("--eval-file", type=Path, required=True, help="MathQA json file to evaluate on")
    add("--beam-sizes", type=positive_int, nargs="+", default=[1],
        help="beam widths; 1 is greedy (default: %(default)s)")
    add("--length-alpha", type=float, default=1.0, help="beam length normalisation (default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02, help="relative tolerance (default: %(default)s)")
    add("--max-program-len", type=positive_int, default=60, help="program tokens decoded (default: %(default)s)")
    add("--max-src-len", type=positive_int, default=160, help="source tokens kept (default: %(default)s)")
    add("--bert", default=None, help="BERT folder or name, when the one the checkpoint names is elsewhere")
    add("--threads", type=thread_count, default="auto", help="CPU threads (default: %(default)s)")
    add("--out", type=Path, default=None, help="folder for evaluation.json (default: beside the checkpoint)")
    return parser


def resolve_checkpoint(path: Path) -> Path:
    path = path.expanduser()
    if path.is_dir():
        found = next((path / n for n in (BEST, "checkpoint.pt") if (path / n).exists()), None)
        if found is None:
            raise UserError(f"--checkpoint {path}: the folder holds neither {BEST} nor checkpoint.pt")
        return found
    return path


def load_model(path: Path, bert: str | None = None) -> tuple[Seq2Seq, object]:
    """The model of a checkpoint (and the BERT tokenizer, else None)."""
    from text2math.bert import load_bert

    state = load_checkpoint(path)
    tokenizer = None

    def build(values: dict) -> Seq2Seq:
        nonlocal tokenizer
        config = Seq2SeqConfig.from_dict(values)
        if config.model not in MODELS:
            raise UserError(f"{path}: unknown model '{config.model}'")
        trunk = None
        if MODELS[config.model].encoder == "bert":
            tokenizer, trunk = load_bert(bert or config.bert, config.bert_layers)
        return Seq2Seq(config, trunk)

    return rebuild_model(state, build, path, "text2math/train.py"), tokenizer


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    set_cpu_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    problems = read_given_file(args.eval_file, "--eval-file")
    model, tokenizer = load_model(path, args.bert)
    config = model.config
    tensors, _ = encode(problems, config, tokenizer, args, train=False)
    if MODELS[config.model].freeze_encoder:
        tensors = (cache_features(model, tensors[0], tensors[1], "cpu", quiet=True), *tensors[1:])
        model.encoder.cached = True
    out = (args.out or path.parent).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        beams = evaluate_beams(model, tensors, problems, config, args, out / f"predictions_{args.eval_file.stem}.jsonl")
    result = {"checkpoint": str(path), "eval_file": str(args.eval_file), "n": len(problems),
              "tolerance": args.tolerance, "beams": beams}
    write_json(out / f"evaluation_{args.eval_file.stem}.json", result)
    print(f"{path} on {args.eval_file} ({len(problems):,} problems): {describe_beams(beams)}")
    return result


if __name__ == "__main__":
    run_cli(main)
