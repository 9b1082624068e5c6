"""Nearest-neighbour program retrieval, a reference point beside the four models (none of them is used).
Each evaluation problem takes the program of its most similar training problem (TF-IDF of words and word pairs,
the numbers already replaced by n0, n1, ...) and runs it on its own numbers; option-aware: the first of
the `--k` nearest programs whose value is one of the five options. MathQA (from AQuA) holds many
near-duplicate problems, so this measures how far plain recall of training programs goes.

`--learned` ranks the k neighbours' programs instead of taking the nearest: a logistic regression over
retrieval features (similarity, rank, how many neighbours wrote the program or reach its value), the
value's shape, and hashed word x program features (each word of the problem paired with each operation,
operation pattern, constant and step order of the program), fit on the training problems themselves,
each with its own neighbours (leave-one-out). Still no seq2seq model: a stronger reference line.

    python text2math/knn.py --data real --data-root ../shared/data            # the held-out 10% of dev
    python text2math/knn.py --data real --data-root ../shared/data --learned  # + the learned ranking (under a minute)
    python text2math/knn.py --train-file train.json --eval-file test.json
    python text2math/knn.py --data real --data-root ../shared/data --learned --out runs/text2math/knn_learned

With `--out` the scores go to a run folder (config.json, summary.json) as every script's do; reproduce.py
text2math runs the learned ranking that way, one run per seed, for the report.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import REPO_ROOT
from common.cli import DATA_MODES, OneLineParser, int_in, open_fraction, positive_float, positive_int, seed_int
from common.errors import UserError, run_cli
from common.progress import progress
from common.rundir import RunDir
from text2math.data import MAX_GENERATED, N_GENERATED, MathQASplits, load_mathqa, with_files
from text2math.evaluation import value_of
from text2math.program import matches
from text2math.retrieval import MAX_NEIGHBOURS, neighbours

LEARNED_C = 0.1             # the logistic regression's inverse regularisation (chosen on validation, seeds 0 and 1)
LEARNED_MAX_FIT = 10_000    # at most this many training problems (a seeded sample) fit it: bounded memory
HASHED = 2 ** 20            # hashed word x program features
LEARNED_MAX_K = 50          # --learned: neighbours' programs ranked per problem (bounded memory, as LEARNED_MAX_FIT)
MAX_WORDS = 200             # a problem's first distinct words paired with the program (MathQA's: about 40)
NUMBER_TOKEN = re.compile(r"n\d+")


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
    add("--seed", type=seed_int, default=0,
        help=f"split seed, and the --learned fit's sample of a pool over {LEARNED_MAX_FIT:,} (default: %(default)s)")
    add("--k", type=int_in(1, MAX_NEIGHBOURS), default=20,
        help=f"neighbours tried by option-aware selection, 1-{MAX_NEIGHBOURS} ({LEARNED_MAX_K} with --learned) "
             f"(default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02, help="relative tolerance (default: %(default)s)")
    add("--learned", action="store_true",
        help="also rank the k neighbours' programs with a logistic regression fit on the training problems "
             "(module docstring; under a minute on MathQA dev)")
    add("--n-generated", type=positive_int, default=N_GENERATED,
        help=f"problems of the generated stand-in, at most {MAX_GENERATED:,}, as train.py (default: %(default)s)")
    add("--out", type=Path, default=None,
        help="run folder for config.json and summary.json (the scores) (default: none written)")
    add("--overwrite", action="store_true", help="start over in an --out that already holds a run")
    add("--resume", action="store_true",
        help="accepted for reproduce.py; knn.py keeps no checkpoint, so --resume starts the run over")
    add("--smoke", action="store_true",
        help="the 64-problem generated stand-in (seconds); replaces an earlier --smoke run in --out")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.data_root = args.data_root.expanduser().resolve()
    args.assignment, args.wandb = "text2math", "off"     # what a run folder records (RunDir)
    if args.out is not None:
        args.out = args.out.expanduser().resolve()
    if args.resume:                                      # nothing to resume: a run takes seconds to a minute
        args.resume, args.overwrite = False, True
    if args.learned and args.k > LEARNED_MAX_K:
        raise UserError(f"--learned ranks at most {LEARNED_MAX_K} neighbours' programs a problem: got --k {args.k}")
    return args


def knn_scores(train, test, k: int, tolerance: float, found=None) -> dict:
    """Top-1 and option-aware execution accuracy of nearest-neighbour program retrieval (`found`: the test problems'
    neighbours among `train`, as retrieval.neighbours gives them; searched here when None)."""
    top1 = option = 0
    found = neighbours([p.text for p in train], [p.text for p in test], k) if found is None else found
    for near, problem in zip(found, test):
        values = [value_of(train[j].program, problem.numbers) for j, _ in near]
        top1 += values[0] is not None and matches(values[0], problem.answers, tolerance)
        chosen = next((v for v in values if v is not None and any(matches(v, o, tolerance) for o in problem.options)),
                      values[0])
        option += chosen is not None and matches(chosen, problem.answers, tolerance)
    n = max(len(test), 1)
    return {"exec_acc": top1 / n, "option_acc": option / n, "n_train": len(train), "n_test": len(test), "k": k}


def program_units(program) -> list[str]:
    """'divide n1 n3 | multiply #0 const_100 |' -> its operations, operation patterns (`divide(n,n)`), constants,
    step order (`divide>multiply`, `^>divide`, `multiply>$`) and step count."""
    units, previous, steps = [], "^", " ".join(program).split("|")
    steps = [step.split() for step in steps if step.split()]
    for op, *args in steps:
        kinds = ["n" if NUMBER_TOKEN.fullmatch(a) else "#" if a.startswith("#") else a for a in args]
        units += [op, f"{op}({','.join(kinds)})", f"{previous}>{op}", *(a for a in args if a.startswith("const"))]
        previous = op
    return units + [f"{previous}>$", f"steps{len(steps)}"]


def text_program_features(text: str, program) -> list[str]:
    """The hashed features: the program's units, and each distinct word of the problem (numbers left out)
    paired with each unit."""
    units = program_units(program)
    words = sorted(list(dict.fromkeys(w for w in text.split() if not NUMBER_TOKEN.fullmatch(w)))[:MAX_WORDS])
    return [f"u:{u}" for u in units] + [f"x:{w}|{u}" for w in words for u in sorted(set(units))]


def retrieval_features(written, value: float, near, tolerance: float) -> list[float]:
    """A candidate program's similarity to the problem through its neighbours (the reranker's knn_sim, knn_gap,
    knn_rank, knn_count, vote_sim, vote_count): `written` holds the (rank, similarity) of the neighbours whose
    program it is (none for a program only the beam wrote), `near` the (value here or None, similarity) of every
    neighbour, nearest first; a vote is a neighbour whose program reaches the candidate's `value`."""
    sims = [sim for _, sim in written]
    best, top = max(sims, default=0.0), near[0][1] if near else 0.0
    same = [sim for v, sim in near if v is not None and matches(v, [value], tolerance)]
    return [best, best - top if sims else -1.0, math.log1p(written[0][0] if written else len(near)), len(sims),
            sum(same), len(same)]


def neighbour_candidates(problem, found, programs, tolerance: float) -> list[tuple[list[str], float, list[float]]]:
    """The distinct programs of a problem's neighbours `found` ((pool index, similarity), nearest first) that run
    on its numbers: (program, value, dense features), in order of first appearance."""
    near = [(value_of(programs[j], problem.numbers), sim) for j, sim in found]
    seen: dict[tuple[str, ...], list[tuple[int, float]]] = {}
    for rank, ((j, sim), (value, _)) in enumerate(zip(found, near)):
        if value is not None:
            seen.setdefault(tuple(programs[j]), []).append((rank, sim))
    largest = max([abs(n) for n in problem.numbers if math.isfinite(n)] + [1e-9])   # '9' * 400 reads as inf
    out = []
    for program, written in seen.items():
        value = near[written[0][0]][0]
        used = {t for t in program if NUMBER_TOKEN.fullmatch(t)}
        dense = [*retrieval_features(written, value, near, tolerance),
                 len(used) / max(len(problem.numbers), 1), float(len(used) == len(problem.numbers)),
                 float(abs(value - round(value)) < 1e-9), float(value < 0),
                 math.log10(abs(value) + 1e-9) - math.log10(largest), len(program) / 20]
        out.append((list(program), value, dense))
    return out


class LearnedRanking:
    """The logistic regression of `--learned` over `neighbour_candidates` (module docstring)."""

    def __init__(self, pool, k: int, tolerance: float, seed: int = 0, max_fit: int = LEARNED_MAX_FIT):
        from scipy import sparse
        from sklearn.feature_extraction import FeatureHasher
        from sklearn.linear_model import LogisticRegression

        self.programs, self.tolerance, self.sparse = [p.program for p in pool], tolerance, sparse
        self.hasher = FeatureHasher(n_features=HASHED, input_type="string", alternate_sign=False)
        fit_on = np.arange(len(pool))
        if len(fit_on) > max_fit:
            fit_on = np.sort(np.random.default_rng(seed).choice(len(pool), max_fit, replace=False))
        texts = [pool[i].text for i in fit_on]
        found = neighbours([p.text for p in pool], texts, k, exclude=fit_on.tolist())   # never itself
        rows, dense, target = [], [], []
        for i, near in progress(zip(fit_on, found), desc="learned ranking: the training problems' candidates",
                                total=len(fit_on)):
            problem = pool[i]
            for program, value, features in neighbour_candidates(problem, near, self.programs, tolerance):
                rows.append(text_program_features(problem.text, program))
                dense.append(features)
                target.append(bool(problem.answers) and matches(value, problem.answers, tolerance))
        self.fitted_on = len(fit_on)
        self.model = None
        if len(set(target)) < 2:          # one class only (tiny pools): the nearest program stays first
            return
        dense = np.asarray(dense)
        self.mean, self.scale = dense.mean(0), dense.std(0) + 1e-9
        self.model = LogisticRegression(C=LEARNED_C, solver="liblinear", max_iter=2000).fit(
            self._matrix(rows, dense), np.asarray(target))

    def _matrix(self, rows, dense):
        scaled = (np.asarray(dense, dtype=np.float64).reshape(len(rows), -1) - self.mean) / self.scale
        return self.sparse.hstack([self.hasher.transform(rows), self.sparse.csr_matrix(scaled)]).tocsr()

    def rank(self, problem, found) -> list[float]:
        """The values of a problem's neighbour programs that run, best ranked first."""
        candidates = neighbour_candidates(problem, found, self.programs, self.tolerance)
        if not candidates or self.model is None:
            return [value for _, value, _ in candidates]
        scores = self.model.decision_function(self._matrix(
            [text_program_features(problem.text, program) for program, _, _ in candidates],
            [features for _, _, features in candidates]))
        return [candidates[i][1] for i in np.argsort(-scores, kind="stable")]


def learned_scores(train, test, k: int, tolerance: float, seed: int = 0, found=None) -> dict:
    """Top-1 and option-aware execution accuracy of `LearnedRanking` over the k neighbours' programs (`found` as in
    knn_scores)."""
    ranking = LearnedRanking(train, k, tolerance, seed)
    top1 = option = 0
    found = neighbours([p.text for p in train], [p.text for p in test], k) if found is None else found
    for problem, near in progress(zip(test, found), desc="learned ranking: test problems", total=len(test)):
        values = ranking.rank(problem, near)
        if values:
            top1 += matches(values[0], problem.answers, tolerance)
            chosen = next((v for v in values if any(matches(v, o, tolerance) for o in problem.options)), values[0])
            option += matches(chosen, problem.answers, tolerance)
    n = max(len(test), 1)
    return {"exec_acc": top1 / n, "option_acc": option / n, "fitted_on": ranking.fitted_on, "c": LEARNED_C}


def main(argv=None) -> dict:
    args = parse(argv)
    if args.train_file is not None and args.eval_file is not None:
        data = with_files(MathQASplits([], [], ""), args.train_file, args.eval_file, seed=args.seed,
                          test_fraction=args.test_fraction)
    else:
        data = with_files(load_mathqa(args.data, args.data_root, seed=args.seed, smoke=args.smoke,
                                      n_generated=args.n_generated, test_fraction=args.test_fraction),
                          args.train_file, args.eval_file, seed=args.seed, test_fraction=args.test_fraction)
    run = RunDir(args, data_source=data.source) if args.out is not None else None   # an earlier run: checked now
    found = neighbours([p.text for p in data.train], [p.text for p in data.test], args.k)   # searched once for both
    scores = {**knn_scores(data.train, data.test, args.k, args.tolerance, found), "data_source": data.source}
    print(f"nearest-neighbour programs ({data.source}): top-1 execution accuracy {scores['exec_acc']:.2%}, "
          f"option-aware (k={args.k}) {scores['option_acc']:.2%}")
    if args.learned:
        scores["learned"] = learned_scores(data.train, data.test, args.k, args.tolerance, args.seed, found)
        print(f"the same programs, learned ranking (fit on {scores['learned']['fitted_on']} training problems): top-1 "
              f"{scores['learned']['exec_acc']:.2%}, option-aware {scores['learned']['option_acc']:.2%}")
    if run is not None:
        scores = run.finish(scores)
        print(f"run directory {run.path}")
    return scores


if __name__ == "__main__":
    run_cli(main)
