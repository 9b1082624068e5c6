"""Fit the learned reranker (reranker.py) on a saved train.py run and score it on the run's test problems
(train.py does the same at the end of a run with --rerank-k > 0): candidates = the model's beam + the
programs of the --k nearest training problems, ranked by a logistic regression over the decoder's
log-probability, retrieval similarity and value votes, fit on the run's validation problems.

    python text2math/rerank.py --checkpoint runs/text2math/<run> --data real --data-root ../shared/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import DATA_MODES, OneLineParser, int_in, parse_saved, thread_count
from common.errors import UserError, run_cli
from common.rundir import output_file, read_json, write_json
from common.runtime import set_cpu_threads
from text2math.beam import MAX_BEAM
from text2math.evaluate import load_model, resolve_checkpoint
from text2math.model import MODELS
from text2math.reranker import fit_and_score
from text2math.retrieval import MAX_NEIGHBOURS
from text2math.train import (RERANKER, cache_features, describe_rerank, encode, load_data, rerank_settings,
                             saved_reranker)
from text2math.train import build_parser as train_parser

HELP_TEST_ARGS = ["--checkpoint", "unused"]   # tests/test_help_defaults.py: the required flag, never opened by parse


def build_parser():
    trained = train_parser()   # the reranker's settings, decoding and scoring default to train.py's
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="best.pt / checkpoint.pt of a train.py run, or its folder")
    add("--data", choices=DATA_MODES, default=None, help="as train.py (default: the run's)")
    add("--data-root", type=Path, default=None, help="as train.py (default: the run's)")
    add("--beam", type=int_in(1, MAX_BEAM), default=trained.get_default("rerank_beam"),
        help="beam whose programs are candidates, at most 200 (default: %(default)s)")
    add("--k", type=int_in(1, MAX_NEIGHBOURS), default=trained.get_default("rerank_k"),
        help=f"nearest training problems whose programs are candidates, 1-{MAX_NEIGHBOURS} (default: %(default)s)")
    add("--options", action=argparse.BooleanOptionalAction, default=trained.get_default("rerank_options"),
        help="whether a candidate's value is one of the options is a feature (default: %(default)s)")
    add("--threads", type=thread_count, default="auto",
        help="CPU threads; auto: the cores not already busy (default: %(default)s)")
    add("--out", type=Path, default=None,
        help=f"json file for the scores and the fitted reranker, which `evaluate.py --reranker FILE` applies (default: "
             f"rerank.json beside the checkpoint; the run's own {RERANKER}, train.py's, is never replaced)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.threads = set_cpu_threads(args.threads)
    return args


def run_settings(path: Path, args) -> argparse.Namespace:
    """The run's own flags (config.json beside the checkpoint): the same split, validation part and lengths."""
    config = path.parent / "config.json"
    if not config.exists():
        raise UserError(f"--checkpoint {path}: no config.json beside it; rerank.py needs the train.py run folder")
    fix = "restore the config.json train.py wrote there, or train the run again"
    settings = parse_saved(train_parser(), read_json(config, fix, keys=("args",))["args"], config, fix, "train.py")
    settings.data = args.data or settings.data
    settings.data_root = (args.data_root or settings.data_root).expanduser().resolve()
    settings.rerank_beam, settings.rerank_k, settings.rerank_options = args.beam, args.k, args.options
    return settings


def main(argv=None) -> dict:
    args = parse(argv)
    path = resolve_checkpoint(args.checkpoint)
    out = output_file(args.out or path.parent / "rerank.json", "--out", ".json")   # checked before the work
    settings = run_settings(path, args)
    model, tokenizer = load_model(path)
    config = model.config
    data = load_data(settings)
    if not data.val:
        raise UserError(f"{path}: the run has no validation part (--val-fraction 0) to fit the reranker on")
    val, _ = encode(data.val, config, tokenizer, settings, train=False)
    test, _ = encode(data.test, config, tokenizer, settings, train=False)
    if MODELS[config.model].freeze_encoder:
        val, test = ((cache_features(model, t[0], t[1], "cpu", quiet=True), *t[1:]) for t in (val, test))
        model.encoder.cached = True
    model.eval()
    reranker, scores, _ = fit_and_score(model, (val, data.val), (test, data.test), data.train + data.val,
                                        **rerank_settings(settings))
    knn = scores["knn"]
    result = {"checkpoint": str(path), "n": len(data.test), **scores,
              **saved_reranker(reranker, args.beam, args.k, args.options, data.train + data.val)}
    write_json(out, result)
    print(f"{path} on {len(data.test)} problems, reranked: {describe_rerank(scores)}; kNN: {knn['exec_acc']:.2%} / "
          f"{knn['option_acc']:.2%}; reranker in {out} (evaluate.py --reranker {out} applies it)")
    return result


if __name__ == "__main__":
    run_cli(main)
