"""Batched vs per-problem grammar-constrained beam search (text2math): the same problems and model, decoded
one problem at a time and --batch problems per forward pass; prints both times, their ratio, and whether the
programs are the same.

    python bench/text2math_beam.py                      # generated problems, a seeded untrained model, ~1-2 min
    python bench/text2math_beam.py --checkpoint runs/text2math/<run> --data real --data-root ../shared/data

Interleaved: per-problem, then batched, --repeats times; the median of each is reported.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import REPO_ROOT
from common.cli import DATA_MODES, OneLineParser, positive_int
from common.errors import run_cli
from text2math.data import load_mathqa
from text2math.evaluate import load_model, resolve_checkpoint
from text2math.evaluation import decode
from text2math.model import Seq2Seq, Seq2SeqConfig
from text2math.retrieval import RetrievalPool
from text2math.train import encode
from text2math.train import parse as train_parse
from text2math.vocab import source_vocab, target_vocab


def model_and_problems(args):
    """The checkpoint's model (or a seeded untrained glove_lstm with --retrieve 2) and the first --problems
    evaluation problems, encoded."""
    data = load_mathqa(args.data, args.data_root, seed=0, n_generated=max(3 * args.problems, 600))
    settings = train_parse(["--data", "generated", "--out", str(REPO_ROOT / "runs" / "bench_unused")])
    if args.checkpoint is not None:
        model, tokenizer = load_model(resolve_checkpoint(args.checkpoint))
    else:
        pool = RetrievalPool.from_problems(data.train).to_dict()
        config = Seq2SeqConfig("glove_lstm", target_vocab(data.train), source_vocab(data.train), "", 32, 64, 0.0,
                               None, True, 2, pool)
        torch.manual_seed(0)
        model, tokenizer = Seq2Seq(config).eval(), None
    problems = (data.test + data.train)[:args.problems]
    tensors, problems = encode(problems, model.config, tokenizer, settings, train=False)
    return model, tensors, problems


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, default=None, help="a train.py run (default: a seeded untrained model)")
    add("--data", choices=DATA_MODES, default="generated", help="problems decoded (default: %(default)s)")
    add("--data-root", type=Path, default=REPO_ROOT / "data", help="folder holding MathQA/ (default: <repo>/data)")
    add("--problems", type=positive_int, default=100, help="problems decoded (default: %(default)s)")
    add("--beam", type=positive_int, default=10, help="beam width (default: %(default)s)")
    add("--batch", type=positive_int, default=64, help="problems per forward pass, batched (default: %(default)s)")
    add("--max-len", type=positive_int, default=60, help="program tokens (default: %(default)s)")
    add("--repeats", type=positive_int, default=1, help="interleaved repeats (default: %(default)s)")
    add("--threads", type=positive_int, default=1, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tensors, problems = model_and_problems(args)
    times = {1: [], args.batch: []}
    found = {}
    for _ in range(args.repeats):
        for batch in times:
            tic = time.perf_counter()
            found[batch] = decode(model, tensors, problems, model.config, beam=args.beam, max_len=args.max_len,
                                  batch=batch, quiet=True)
            times[batch].append(time.perf_counter() - tic)
    one, many = statistics.median(times[1]), statistics.median(times[args.batch])
    same = found[1] == found[args.batch]
    print(f"{len(problems)} problems, beam {args.beam}, {args.threads} thread(s): one problem at a time {one:.1f} s, "
          f"{args.batch} per forward pass {many:.1f} s; speed ratio {one / many:.1f}x; same programs: {same}")


if __name__ == "__main__":
    run_cli(main)
