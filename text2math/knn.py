"""A reference point, not one of the four models: nearest-neighbour program retrieval. Each evaluation
problem takes the program of its most similar training problem (TF-IDF of words and word pairs, the
numbers already replaced by n0, n1, ...) and runs it on its own numbers; option-aware: the first of
the `--k` nearest programs whose value is one of the five options. MathQA (from AQuA) holds many
near-duplicate problems, so this measures how far plain recall of training programs goes.

    python text2math/knn.py --data real --data-root ../shared/data            # the held-out 10% of dev
    python text2math/knn.py --train-file train.json --eval-file test.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import REPO_ROOT
from common.cli import DATA_MODES, OneLineParser, open_fraction, positive_float, positive_int, seed_int
from common.errors import run_cli
from common.rundir import write_json
from text2math.data import MathQASplits, load_mathqa, with_files
from text2math.evaluation import value_of
from text2math.program import matches
from text2math.retrieval import RetrievalPool


def build_parser():
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data", choices=DATA_MODES, default="auto", help="as train.py (default: %(default)s)")
    add("--data-root", type=Path, default=REPO_ROOT / "data", help="folder holding MathQA/ (default: <repo>/data)")
    add("--train-file", type=Path, default=None,
        help="MathQA json to retrieve from (default: as train.py, the 90%% of dev.json it trains on)")
    add("--eval-file", type=Path, default=None,
        help="MathQA json to evaluate on (default: as train.py, the held-out 10%% of dev.json)")
    add("--test-fraction", type=open_fraction, default=0.1, help="share of dev.json held out (default: %(default)s)")
    add("--seed", type=seed_int, default=0, help="split seed (default: %(default)s)")
    add("--k", type=positive_int, default=20, help="neighbours tried by option-aware selection (default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02, help="relative tolerance (default: %(default)s)")
    add("--out", type=Path, default=None, help="write the scores to this json file (default: none written)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.data_root = args.data_root.expanduser().resolve()
    return args


def knn_scores(train, test, k: int, tolerance: float) -> dict:
    """Top-1 and option-aware execution accuracy of nearest-neighbour program retrieval."""
    top1 = option = 0
    neighbours = RetrievalPool.from_problems(train).neighbours([p.text for p in test], k)
    for nearest, problem in zip(neighbours, test):
        values = [value_of(train[j].program, problem.numbers) for j in nearest]
        top1 += values[0] is not None and matches(values[0], problem.answers, tolerance)
        chosen = next((v for v in values if v is not None and any(matches(v, o, tolerance) for o in problem.options)),
                      values[0])
        option += chosen is not None and matches(chosen, problem.answers, tolerance)
    n = max(len(test), 1)
    return {"exec_acc": top1 / n, "option_acc": option / n, "n_train": len(train), "n_test": len(test), "k": k}


def main(argv=None) -> dict:
    args = parse(argv)
    if args.train_file is not None and args.eval_file is not None:
        data = with_files(MathQASplits([], [], ""), args.train_file, args.eval_file, seed=args.seed,
                          test_fraction=args.test_fraction)
    else:
        data = with_files(load_mathqa(args.data, args.data_root, seed=args.seed,
                                      test_fraction=args.test_fraction),
                          args.train_file, args.eval_file, seed=args.seed, test_fraction=args.test_fraction)
    scores = {**knn_scores(data.train, data.test, args.k, args.tolerance), "data_source": data.source}
    print(f"nearest-neighbour programs ({data.source}): top-1 execution accuracy {scores['exec_acc']:.2%}, "
          f"option-aware (k={args.k}) {scores['option_acc']:.2%}")
    if args.out is not None:
        write_json(args.out, scores)
    return scores


if __name__ == "__main__":
    run_cli(main)
