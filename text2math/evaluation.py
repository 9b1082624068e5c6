"""Decoding a test set (greedy or beam) and scoring it: exact match of the program tokens, and
execution accuracy against the correct option's value."""
from __future__ import annotations

from typing import Sequence

import torch

from text2math.beam import beam_search, greedy_decode
from text2math.data import Problem
from text2math.model import EOS, SOS, Seq2Seq, Seq2SeqConfig
from text2math.program import ExecutionError, execute_tokens, matches


@torch.no_grad()
def decode(model: Seq2Seq, tensors: tuple[torch.Tensor, torch.Tensor], config: Seq2SeqConfig, *, beam: int,
           max_len: int, alpha: float = 1.0, batch: int = 64) -> list[list[int]]:
    """Program token ids (without <eos>) for every source row; beam 1 is greedy decoding."""
    model.eval()
    sos, eos = config.tgt_vocab.index(SOS), config.tgt_vocab.index(EOS)
    src, mask = tensors
    out: list[list[int]] = []
    for i in range(0, len(src), batch):
        state = model.start(src[i:i + batch], mask[i:i + batch])
        n = len(src[i:i + batch])
        if beam == 1:
            out += greedy_decode(model.decoder.step, state, n, sos, eos, max_len + 1)
        else:
            out += beam_search(model.decoder.step, state, n, sos, eos, max_len + 1, beam, alpha)
    return out


def score_predictions(predictions: Sequence[Sequence[int]], problems: Sequence[Problem], config: Seq2SeqConfig,
                      tolerance: float) -> dict:
    """exact_match: the tokens equal the gold program's; exec_acc: the program runs to the correct
    option's value within `tolerance` (relative); runs: the share of predictions that execute."""
    exact = executed = correct = 0
    for ids, problem in zip(predictions, problems):
        tokens = [config.tgt_vocab[i] for i in ids]
        exact += tokens == problem.program
        try:
            value = execute_tokens(tokens, problem.numbers)
        except ExecutionError:
            continue
        executed += 1
        correct += matches(value, problem.answers, tolerance)
    n = max(len(problems), 1)
    return {"exact_match": exact / n, "exec_acc": correct / n, "runs": executed / n}
