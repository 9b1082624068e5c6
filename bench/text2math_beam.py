"""Batched vs per-problem grammar-constrained beam search (text2math): the same problems and model, decoded
one problem at a time and --batch problems per forward pass; prints both times, their ratio, and whether the
programs are the same. With --against REV, the same is measured for the code at git revision REV (run from
`git archive REV` in a child process, interleaved with this tree's runs), and this tree's batched search is
compared with REV's per-problem search.

    python bench/text2math_beam.py                      # generated problems, a seeded untrained model, ~1-2 min
    python bench/text2math_beam.py --checkpoint runs/text2math/<run> --data real --data-root ../shared/data
    python bench/text2math_beam.py --checkpoint runs/text2math/<run> --data real --data-root ../shared/data \
        --against 3fbc76d                               # against the search as it was when issue 32 was filed

Interleaved: per-problem, then batched, --repeats times; the median of each is reported.
"""
from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import REPO_ROOT
from common.cli import DATA_MODES, OneLineParser, int_in, positive_int
from common.errors import UserError, run_cli
from text2math.beam import MAX_BEAM
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


# run by a child python inside `git archive REV`: that revision's loader, encoder and decode() on the same problems
# (the API of evaluate.load_model, train.encode and evaluation.decode(batch=...) since issue 18)
AGAINST = """
import json, sys, time
from pathlib import Path
import torch
from text2math import train
from text2math.data import load_mathqa
from text2math.evaluate import load_model, resolve_checkpoint
from text2math.evaluation import decode
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
model, tokenizer = load_model(resolve_checkpoint(Path(a["checkpoint"])))
data = load_mathqa(a["data"], Path(a["data_root"]), seed=0, n_generated=max(3 * a["problems"], 600))
flags = ["--data", "generated", "--out", a["out"]]
settings = train.parse(flags) if hasattr(train, "parse") else train.parse_args(
    train.build_parser(), flags, assignment=train.ASSIGNMENT, run_name=train.run_name)
tensors, problems = train.encode((data.test + data.train)[:a["problems"]], model.config, tokenizer, settings,
                                 train=False)
out = {}
for batch in a["batches"]:
    tic = time.perf_counter()
    found = decode(model, tensors, problems, model.config, beam=a["beam"], max_len=a["max_len"], batch=batch)
    out[batch] = [time.perf_counter() - tic, found]
print(json.dumps(out))
"""


def archive(revision: str, into: Path) -> None:
    """The files of git revision `revision` (its text2math/ and common/) unpacked into `into`."""
    if revision.startswith("-"):        # never an option of git's
        raise UserError(f"--against {revision}: not a revision (it starts with '-')")
    commit = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    if commit.returncode:
        raise UserError(f"--against {revision}: git archive failed: no such commit in this repository")
    made = subprocess.run(["git", "archive", "--format=tar", commit.stdout.strip(), "text2math", "common"],
                          cwd=REPO_ROOT, capture_output=True, timeout=120)
    if made.returncode:
        raise UserError(f"--against {revision}: git archive failed: {made.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(made.stdout)) as tar:
        tar.extractall(into, filter="data")


def run_against(root: Path, args, batches: list[int]) -> dict[int, tuple[float, list]]:
    """{batch: (seconds, programs)} of the revision unpacked in `root` (AGAINST)."""
    settings = {"checkpoint": str(resolve_checkpoint(args.checkpoint).resolve()), "data": args.data,
                "data_root": str(args.data_root.resolve()), "problems": args.problems, "beam": args.beam,
                "max_len": args.max_len, "threads": args.threads, "batches": batches, "out": str(root / "runs")}
    try:
        child = subprocess.run([sys.executable, "-c", AGAINST, json.dumps(settings)], cwd=root, capture_output=True,
                               text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        raise UserError(f"--against {args.against}: its decode ran over an hour; try fewer --problems") from None
    if child.returncode:
        last = (child.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"--against {args.against}: its decode failed: {last}")
    result = json.loads((child.stdout.strip().splitlines() or ["{}"])[-1])    # its last line: the JSON
    return {int(batch): (seconds, found) for batch, (seconds, found) in result.items()}


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, default=None, help="a train.py run (default: a seeded untrained model)")
    add("--data", choices=DATA_MODES, default="generated", help="problems decoded (default: %(default)s)")
    add("--data-root", type=Path, default=REPO_ROOT / "data", help="folder holding MathQA/ (default: <repo>/data)")
    add("--problems", type=positive_int, default=100, help="problems decoded (default: %(default)s)")
    add("--beam", type=int_in(1, MAX_BEAM), default=10, help="beam width (default: %(default)s)")
    add("--batch", type=positive_int, default=64, help="problems per forward pass, batched (default: %(default)s)")
    add("--max-len", type=positive_int, default=60, help="program tokens (default: %(default)s)")
    add("--repeats", type=positive_int, default=1, help="interleaved repeats (default: %(default)s)")
    add("--threads", type=positive_int, default=1, help="torch CPU threads (default: %(default)s)")
    add("--against", metavar="REV", default=None,
        help="also time the search of git revision REV on the same problems (needs --checkpoint)")
    args = parser.parse_args(argv)
    if args.against is not None and args.checkpoint is None:
        raise UserError("--against needs --checkpoint: the two revisions must decode with the same trained model")
    torch.set_num_threads(args.threads)
    model, tensors, problems = model_and_problems(args)
    batches = sorted({1, args.batch})
    times = {batch: [] for batch in batches}
    old_times = {batch: [] for batch in batches}
    found, old_found = {}, {}
    with tempfile.TemporaryDirectory(prefix="text2math_beam_") as folder:
        if args.against is not None:
            archive(args.against, Path(folder))
        for _ in range(args.repeats):
            if args.against is not None:
                for batch, (seconds, programs) in run_against(Path(folder), args, batches).items():
                    old_times[batch].append(seconds)
                    old_found[batch] = programs
            for batch in batches:
                tic = time.perf_counter()
                found[batch] = decode(model, tensors, problems, model.config, beam=args.beam, max_len=args.max_len,
                                      batch=batch, quiet=True)
                times[batch].append(time.perf_counter() - tic)
    one, many = statistics.median(times[1]), statistics.median(times[args.batch])
    same = all(found[batch] == found[1] for batch in batches)
    print(f"{len(problems)} problems, beam {args.beam}, {args.threads} thread(s): one problem at a time {one:.2f} s, "
          f"{args.batch} per forward pass {many:.2f} s; speed ratio {one / many:.1f}x; same programs: {same}")
    if args.against is not None:
        old_one, old_many = statistics.median(old_times[1]), statistics.median(old_times[args.batch])
        same = all(old_found[batch] == found[1] for batch in batches)
        print(f"{args.against}: one problem at a time {old_one:.2f} s, {args.batch} per forward pass {old_many:.2f} s; "
              f"this tree's batched search is {old_one / many:.1f}x faster than its per-problem search and "
              f"{old_many / many:.1f}x than its batched one; same programs as this tree: {same}")


if __name__ == "__main__":
    run_cli(main)
