"""Decoding a test set (greedy or beam, grammar-constrained) and scoring it.

Measures (all over every evaluated problem):
- exact_match: the program's tokens equal the gold program's;
- exec_acc: the top-1 program runs to the correct option's value (within `tolerance`, relative);
- exec_gold: the top-1 program runs to the gold program's own value (independent of MathQA's option
  labels; a gold program that does not run counts as wrong);
- option_acc (option-aware selection, a second metric): among the beam's programs, best score first,
  the first whose value is one of the five options' values (else the top-1) lands on the correct option;
- runs: the share of top-1 programs that execute.
"""
from __future__ import annotations

from typing import Sequence

import torch

from common.progress import progress
from text2math.beam import beam_search_nbest, greedy_decode
from text2math.data import Problem
from text2math.grammar import ConstrainedStep, Grammar
from text2math.model import EOS, SOS, Seq2Seq, Seq2SeqConfig
from text2math.program import ExecutionError, execute_tokens, matches
from text2math.vocab import reachable_numbers

Hypotheses = list[list[int]]   # per problem, the programs (token ids) best first


@torch.no_grad()
def decode(model: Seq2Seq, tensors: tuple[torch.Tensor, ...], problems: Sequence[Problem], config: Seq2SeqConfig,
           *, beam: int, max_len: int, alpha: float = 1.0, batch: int = 64, constrained: bool = True,
           quiet: bool = False) -> list[Hypotheses]:
    """Per source row, the decoded programs (without <eos>) best first: one for greedy (beam 1), the
    beam's hypotheses otherwise. `tensors` = (src, mask, number positions[, tgt, retrieved]). `batch`
    problems are searched together, each with its `beam` rows, in one forward pass per step (batch 1:
    one problem at a time, the same programs; tested); a progress bar on a terminal unless `quiet`."""
    model.eval()
    sos, eos = config.tgt_vocab.index(SOS), config.tgt_vocab.index(EOS)
    grammar = Grammar(config.tgt_vocab)
    src, mask, numbers = tensors[:3]
    retrieved = tensors[4] if len(tensors) > 4 else None
    out: list[Hypotheses] = []
    for i in progress(range(0, len(src), batch), desc=f"decoding, beam {beam}", quiet=quiet):
        rows = slice(i, i + batch)
        width = max(int(mask[rows].sum(1).max()), 1)                 # no work on the padding every row has
        ret = None if retrieved is None else retrieved[rows][:, :max(int((retrieved[rows] != 0).sum(1).max()), 1)]
        state = model.start(src[rows][:, :width], mask[rows][:, :width], numbers[rows], ret)
        n = len(src[rows])
        step = model.decoder.step
        if constrained:
            reach = [reachable_numbers(p, pos, config.tgt_vocab) for p, pos in zip(problems[rows], numbers[rows])]
            step = ConstrainedStep(step, grammar, reach, max_len + 1)
            state = step.prepare(state)
        if beam == 1:
            out += [[row] for row in greedy_decode(step, state, n, sos, eos, max_len + 1)]
        else:
            out += [[ids for ids, _ in found] for found in beam_search_nbest(step, state, n, sos, eos, max_len + 1,
                                                                             beam, alpha)]
    return out


def value_of(tokens: Sequence[str], numbers: Sequence[float]) -> float | None:
    try:
        return execute_tokens(tokens, numbers)
    except ExecutionError:
        return None


def score_predictions(predictions: Sequence[Hypotheses], problems: Sequence[Problem], config: Seq2SeqConfig,
                      tolerance: float) -> dict:
    """The measures of the module docstring, as fractions of len(problems)."""
    totals = dict.fromkeys(("exact_match", "exec_acc", "exec_gold", "option_acc", "runs"), 0)
    for hypotheses, problem in zip(predictions, problems):
        programs = [[config.tgt_vocab[i] for i in ids] for ids in hypotheses] or [[]]
        values = [value_of(tokens, problem.numbers) for tokens in programs]
        top = values[0]
        totals["exact_match"] += programs[0] == problem.program
        totals["runs"] += top is not None
        totals["exec_acc"] += top is not None and matches(top, problem.answers, tolerance)
        totals["exec_gold"] += (top is not None and problem.gold_value is not None
                                and matches(top, [problem.gold_value], tolerance))
        chosen = next((v for v in values if v is not None and any(matches(v, o, tolerance) for o in problem.options)),
                      top)
        totals["option_acc"] += chosen is not None and matches(chosen, problem.answers, tolerance)
    n = max(len(problems), 1)
    return {k: v / n for k, v in totals.items()}
