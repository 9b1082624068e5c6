"""A learned reranker over a trained seq2seq model's candidates (`--rerank`, train.py; rerank.py on a saved run).

Candidates of a problem: the model's beam (`beam` programs) plus the programs of its `k` nearest training
problems (TF-IDF of words and word pairs, as knn.py), re-bound to this problem's numbers (n0, n1, ... are
this problem's), each kept once and only when it executes on them. Each candidate gets FEATURES: the
seq2seq decoder's own log-probability of it (teacher forced: the model scores every candidate), its beam
rank, the retrieval similarity and rank of the neighbours that wrote it, how many neighbours' and beam
programs reach the same value here (a vote), and whether its value is one of the problem's five options
(`in_options`). A logistic regression on those features (standardised), fit on the validation problems the
model never trained on, whose neighbours come from the same pool (leave-one-out: a problem never retrieves
itself), ranks the candidates. With `options=False` the `in_options` column is left out (zero): its top-1
never looks at the options, and option-aware accuracy takes the first ranked candidate whose value is one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from text2math.data import Problem
from text2math.evaluation import Hypotheses, decode, score_predictions, value_of
from text2math.knn import knn_scores, retrieval_features
from text2math.model import EOS, SOS, Seq2Seq
from text2math.program import matches
from text2math.retrieval import neighbours

FEATURES = ("logp_mean", "logp_sum", "logp_gap", "in_beam", "beam_rank", "knn_sim", "knn_gap", "knn_rank",
            "knn_count", "vote_sim", "vote_count", "beam_vote", "length", "in_options")
LOGP_FLOOR = -20.0      # per token: a number the pointer cannot reach scores -inf; kept finite for the features


@dataclass
class Candidates:
    programs: list[list[int]]   # token ids, beam first (in beam order), then neighbours' (nearest first)
    values: list[float]
    features: np.ndarray        # (len(programs), len(FEATURES))


@torch.no_grad()
def log_probs(model: Seq2Seq, tensors, row: int, programs: list[list[int]], sos: int, eos: int) -> list[list[float]]:
    """Per program, the decoder's log-probability of each of its tokens and <eos> (teacher forced)."""
    tgt = torch.zeros((len(programs), max(map(len, programs)) + 2), dtype=torch.long)
    for i, ids in enumerate(programs):
        tgt[i, :len(ids) + 2] = torch.tensor([sos, *ids, eos])
    device = tensors[0].device
    src, mask, numbers = (t[row:row + 1] for t in tensors[:3])
    retrieved = tensors[4][row:row + 1] if len(tensors) > 4 else None
    state = model.start(src, mask, numbers, retrieved)              # the problem is encoded once, then
    state = {k: v.expand(len(programs), *v.shape[1:]) for k, v in state.items()}   # shared by its candidates
    logp = model.forced(state, tgt.to(device)).float().log_softmax(-1).cpu()
    gold = tgt[:, 1:]
    picked = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1).clamp(min=LOGP_FLOOR)
    return [picked[i, :len(ids) + 1].tolist() for i, ids in enumerate(programs)]


def candidates(model: Seq2Seq, tensors, problems: Sequence[Problem], beams: Sequence[Hypotheses],
               near: Sequence[list[tuple[int, float]]], pool_programs: Sequence[Sequence[str]], max_len: int,
               tolerance: float) -> list[Candidates]:
    """Every problem's candidates with their features (module docstring)."""
    vocab = model.config.tgt_vocab
    index = {t: i for i, t in enumerate(vocab)}
    sos, eos = index[SOS], index[EOS]
    width = max((len(b) for b in beams), default=1)
    out = []
    for row, (problem, beam, found) in enumerate(zip(problems, beams, near)):
        entries: dict[tuple[int, ...], dict] = {}
        for rank, ids in enumerate(beam):
            entries.setdefault(tuple(ids), {"beam": rank, "knn": []})
        for rank, (j, sim) in enumerate(found):
            program = pool_programs[j]
            if len(program) <= max_len and all(t in index for t in program):
                entry = entries.setdefault(tuple(index[t] for t in program), {"beam": None, "knn": []})
                entry["knn"].append((rank, sim))
        programs, values, meta = [], [], []
        for ids, entry in entries.items():
            value = value_of([vocab[i] for i in ids], problem.numbers) if ids else None
            if value is not None:
                programs.append(list(ids))
                values.append(value)
                meta.append(entry)
        if not programs:
            out.append(Candidates([], [], np.zeros((0, len(FEATURES)))))
            continue
        scored = log_probs(model, tensors, row, programs, sos, eos)
        means = [sum(s) / len(s) for s in scored]
        near_values = [(value_of(pool_programs[j], problem.numbers), sim) for j, sim in found]
        beam_values = [v for v, m in zip(values, meta) if m["beam"] is not None]
        rows = []
        for ids, value, entry, scores, mean in zip(programs, values, meta, scored, means):
            beam_rank = width if entry["beam"] is None else entry["beam"]
            rows.append([mean, sum(scores), mean - max(means), float(entry["beam"] is not None), math.log1p(beam_rank),
                         *retrieval_features(entry["knn"], value, near_values, tolerance),
                         sum(matches(v, [value], tolerance) for v in beam_values) / width,
                         len(ids) / 20, float(any(matches(value, o, tolerance) for o in problem.options))])
        out.append(Candidates(programs, values, np.asarray(rows, dtype=np.float64)))
    return out


def labels(found: Candidates, problem: Problem, tolerance: float) -> np.ndarray:
    return np.array([matches(v, problem.answers, tolerance) for v in found.values], dtype=bool)


@dataclass
class Reranker:
    """A linear score over the standardised FEATURES: score = ((x - mean) / scale) @ weights + bias."""
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    fitted_on: int = 0          # problems

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "mean": self.mean, "scale": self.scale, "weights": self.weights,
                "bias": self.bias, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, values: dict) -> "Reranker":
        return cls(values["mean"], values["scale"], values["weights"], values["bias"], values.get("fitted_on", 0))

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((features - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights) + self.bias

    def rank(self, found: Candidates) -> list[list[int]]:
        order = np.argsort(-self.scores(found.features), kind="stable") if len(found.programs) else []
        return [found.programs[i] for i in order]


def fit(found: Sequence[Candidates], problems: Sequence[Problem], tolerance: float, options: bool = True,
        c: float = 1.0) -> Reranker:
    """Logistic regression: does the candidate execute to the correct option? Without `options`, the
    `in_options` column is zero (its weight stays 0). Without both classes among the candidates (tiny data),
    the decoder's mean log-probability alone ranks them."""
    features = np.concatenate([f.features for f in found] or [np.zeros((0, len(FEATURES)))])
    if not options:
        features = features.copy()
        features[:, FEATURES.index("in_options")] = 0.0
    target = np.concatenate([labels(f, p, tolerance) for f, p in zip(found, problems)] or [np.zeros(0, bool)])
    mean = features.mean(0) if len(features) else np.zeros(len(FEATURES))
    scale = features.std(0) if len(features) else np.ones(len(FEATURES))
    scale = np.where(scale > 1e-9, scale, 1.0)
    if len(set(target.tolist())) < 2:
        weights = np.eye(len(FEATURES))[FEATURES.index("logp_mean")]
        return Reranker(mean.tolist(), scale.tolist(), weights.tolist(), 0.0, 0)
    model = LogisticRegression(C=c, max_iter=2000).fit((features - mean) / scale, target)
    return Reranker(mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]), len(found))


def gather(model: Seq2Seq, tensors, problems: Sequence[Problem], pool_texts: Sequence[str],
           pool_programs: Sequence[Sequence[str]], *, beam: int, k: int, max_len: int, alpha: float, tolerance: float,
           exclude: Sequence[int | None] | None = None) -> list[Candidates]:
    """Decode the beam and look up the neighbours, then build every problem's candidates."""
    beams = decode(model, tensors, problems, model.config, beam=beam, max_len=max_len, alpha=alpha)
    near = neighbours(pool_texts, [p.text for p in problems], k, exclude)
    return candidates(model, tensors, problems, beams, near, pool_programs, max_len, tolerance)


def oracle(found: Sequence[Candidates], problems: Sequence[Problem], tolerance: float) -> float:
    """Share of problems with at least one candidate executing to the correct option (the reranker's ceiling)."""
    return sum(bool(labels(f, p, tolerance).any()) for f, p in zip(found, problems)) / max(len(problems), 1)


def fit_and_score(model: Seq2Seq, val: tuple, test: tuple, pool: Sequence[Problem], *, beam: int, k: int,
                  max_len: int, alpha: float, tolerance: float, options: bool = True
                  ) -> tuple[Reranker, dict, list[list[list[int]]]]:
    """Fit the reranker on the validation problems (`val` = (tensors, problems), the last len(problems) of
    `pool`, each left out of its own neighbours) and rank the test problems' candidates. Returns the reranker,
    its scores on test (score_predictions' measures, the candidates' ceiling, the other variant's (`options`
    flipped) top-1 / option-aware, knn.py's scores with the same pool and k) and the ranked programs."""
    texts, programs = [p.text for p in pool], [p.program for p in pool]
    offset = len(pool) - len(val[1])
    fit_on = gather(model, *val, texts, programs, beam=beam, k=k, max_len=max_len, alpha=alpha, tolerance=tolerance,
                    exclude=[offset + i for i in range(len(val[1]))])
    found = gather(model, *test, texts, programs, beam=beam, k=k, max_len=max_len, alpha=alpha, tolerance=tolerance)
    results = {}
    for flag in (options, not options):
        reranker = fit(fit_on, val[1], tolerance, options=flag)
        ranked = [reranker.rank(f) or [[]] for f in found]
        results[flag] = reranker, score_predictions(ranked, test[1], model.config, tolerance), ranked
    reranker, scores, ranked = results[options]
    other = results[not options][1]
    scores.update(options=options, oracle=oracle(found, test[1], tolerance),
                  val_oracle=oracle(fit_on, val[1], tolerance),
                  candidates=float(np.mean([len(f.programs) for f in found])) if found else 0.0,
                  beam=beam, k=k, fitted_on=reranker.fitted_on, n_pool=len(pool),
                  other={"options": not options, "exec_acc": other["exec_acc"], "option_acc": other["option_acc"]})
    scores["knn"] = knn_scores(pool, test[1], k, tolerance)     # the reference line, on the same problems
    return reranker, scores, ranked
