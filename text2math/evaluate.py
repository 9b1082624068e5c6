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
from common.cli import OneLineParser, int_in, non_negative_float, positive_float, positive_int, thread_count
from common.errors import UserError, run_cli
from common.formats import given_file, is_real, is_whole
from common.models import rebuild_model
from common.rundir import read_json, write_json
from common.runtime import set_cpu_threads
from text2math.beam import MAX_BEAM
from text2math.bert import load_bert
from text2math.data import read_given_file
from text2math.model import MODELS, Seq2Seq, Seq2SeqConfig
from text2math.evaluation import score_predictions
from text2math.reranker import FEATURES, Reranker, gather, oracle
from text2math.retrieval import MAX_NEIGHBOURS, RetrievalPool
from text2math.train import BEST, RERANKER, cache_features, describe_beams, describe_rerank, encode, evaluate_beams
from text2math.train import build_parser as train_parser

HELP_TEST_ARGS = ["--checkpoint", "unused", "--eval-file", "unused.json"]   # tests/test_help_defaults.py: required


def build_parser() -> argparse.ArgumentParser:
    trained = train_parser()   # decoding and scoring default to train.py's final evaluation
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True,
        help="best.pt / checkpoint.pt of a train.py run, or its folder")
    add("--eval-file", type=Path, required=True, help="MathQA json file to evaluate on")
    add("--beam-sizes", type=int_in(1, MAX_BEAM), nargs="+", default=trained.get_default("beam_sizes"),
        help="beam widths; 1 is greedy, at most 200 (default: %(default)s)")
    add("--length-alpha", type=non_negative_float, default=trained.get_default("length_alpha"),
        help="beam length normalisation (default: %(default)s)")
    add("--tolerance", type=positive_float, default=trained.get_default("tolerance"),
        help="relative tolerance (default: %(default)s)")
    add("--max-program-len", type=positive_int, default=trained.get_default("max_program_len"),
        help="program tokens decoded (default: %(default)s)")
    add("--max-src-len", type=positive_int, default=trained.get_default("max_src_len"),
        help="source tokens kept (default: %(default)s)")
    add("--bert", default=None,
        help="BERT folder or name, when the one the checkpoint names is elsewhere (default: the checkpoint's)")
    add("--threads", type=thread_count, default="auto",
        help="CPU threads; auto: the cores not already busy (default: %(default)s)")
    add("--rerank", action=argparse.BooleanOptionalAction, default=True,
        help=f"also rank with the run's fitted reranker ({RERANKER} beside the checkpoint, when there is one, or "
             "--reranker); its neighbours come from the run's training problems, so evaluate on problems outside "
             "them (default: %(default)s)")
    add("--reranker", type=Path, default=None,
        help=f"a reranker rerank.py fitted on this run (its --out file) to apply instead of the run's {RERANKER} "
             "(default: the run's)")
    add("--out", type=Path, default=None, help="folder for evaluation.json (default: beside the checkpoint)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.reranker is not None:
        if not args.rerank:
            raise UserError("--reranker with --no-rerank: drop one")
        args.reranker = given_file(args.reranker, "--reranker", "give the json file rerank.py wrote (its --out)")
    args.threads = set_cpu_threads(args.threads)
    return args


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
    state = load_checkpoint(path)
    tokenizer = None

    def build(values: dict) -> Seq2Seq:
        nonlocal tokenizer
        config = Seq2SeqConfig.from_dict({"number_index": False, **values})   # older checkpoints lack the field
        trunk = None
        if MODELS[config.model].encoder == "bert":
            tokenizer, trunk = load_bert(bert or config.bert, config.bert_layers)
        return Seq2Seq(config, trunk)

    return rebuild_model(state, build, path, "text2math/train.py"), tokenizer


def load_reranker(saved: Path) -> tuple[dict, RetrievalPool, Reranker]:
    """reranker.json as train.py / rerank.py wrote it: its settings, its pool and the reranker; anything else
    (a damaged file, a beam or k out of range, weights that do not fit the features) is one line."""
    fix = "run text2math/rerank.py on the run to write it again"
    values = read_json(saved, fix, keys=("reranker", "beam", "k", "pool"))
    try:
        pool = RetrievalPool.from_dict(values["pool"])
        reranker = Reranker.from_dict(values["reranker"])
        sizes = {len(reranker.mean), len(reranker.scale), len(reranker.weights)}
        numbers = [*reranker.mean, *reranker.scale, *reranker.weights, reranker.bias]
        fits = sizes == {len(FEATURES)} and all(is_real(x) for x in numbers)
    except (KeyError, TypeError, ValueError, AttributeError):
        fits = False
    for name, top in (("beam", MAX_BEAM), ("k", MAX_NEIGHBOURS)):
        value = values[name]
        fits = fits and is_whole(value) and 1 <= value <= top
    if not fits:
        raise UserError(f"{saved} is not a reranker train.py or rerank.py wrote (its pool, weights, beam or k); {fix}")
    return values, pool, reranker


def reranked(model: Seq2Seq, tensors, problems, saved: Path, args) -> dict | None:
    """The measures of the run's fitted reranker on these problems (None without reranker.json)."""
    if not saved.exists():
        return None
    values, pool, reranker = load_reranker(saved)
    found = gather(model, tensors, problems, pool.texts, pool.programs, beam=values["beam"], k=values["k"],
                   max_len=args.max_program_len, alpha=args.length_alpha, tolerance=args.tolerance)
    ranked = [reranker.rank(f) or [[]] for f in found]
    return {**score_predictions(ranked, problems, model.config, args.tolerance), "oracle": oracle(found, problems,
            args.tolerance), "beam": values["beam"], "k": values["k"], "options": values.get("options", True)}


def seen_in_training(config, problems) -> int | None:
    """How many of `problems` the run trained on: their texts in the model's retrieval pool (the training part; the
    validation part only chose the epoch); None for a model without retrieval (it keeps no list of them)."""
    texts = set(config.retrieval_pool.get("texts") or []) if config.retrieve else set()
    return sum(p.text in texts for p in problems) if texts else None


def main(argv=None) -> dict:
    args = parse(argv)
    path = resolve_checkpoint(args.checkpoint)
    problems = read_given_file(args.eval_file, "--eval-file")
    model, tokenizer = load_model(path, args.bert)
    config = model.config
    tensors, _ = encode(problems, config, tokenizer, args, train=False)
    if MODELS[config.model].freeze_encoder:
        tensors = (cache_features(model, tensors[0], tensors[1], "cpu", quiet=True), *tensors[1:])
        model.encoder.cached = True
    saved = (args.reranker or path.parent / RERANKER) if args.rerank else None
    out = (args.out or path.parent).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        beams = evaluate_beams(model, tensors, problems, config, args, out / f"predictions_{args.eval_file.stem}.jsonl")
        rerank = reranked(model, tensors, problems, saved, args) if saved else None
    seen = seen_in_training(config, problems)
    if seen:
        print(f"note: {seen:,} of the {len(problems):,} problems in {args.eval_file} are among this run's training "
              f"problems (its retrieval pool): their figures are not held-out ones")
    result = {"checkpoint": str(path), "eval_file": str(args.eval_file), "n": len(problems), "n_seen": seen,
              "tolerance": args.tolerance, "beams": beams, "rerank": rerank}
    write_json(out / f"evaluation_{args.eval_file.stem}.json", result)
    print(f"{path} on {args.eval_file} ({len(problems):,} problems): {describe_beams(beams)}"
          + (f"; reranked: {describe_rerank(rerank)}" if rerank else ""))
    return result


if __name__ == "__main__":
    run_cli(main)
