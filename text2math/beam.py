"""Greedy decoding and batched, length-normalised beam search over a decoder's `step`.

`step(tokens (N,), state) -> (logits (N, V), state)` where every tensor in the state has N rows.
A hypothesis ends at <eos>; its score is sum(log p) / length**alpha (length counts <eos>), so
alpha = 1 ranks by mean log-probability and alpha = 0 by the plain sum. With beam 1 the search
keeps the argmax at every step: it is greedy decoding."""
from __future__ import annotations

from typing import Callable

import torch

Step = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]


def _select(state: dict, index: torch.Tensor) -> dict:
    return {k: v.index_select(0, index) for k, v in state.items()}


def greedy_decode(step: Step, state: dict, batch: int, sos: int, eos: int, max_len: int) -> list[list[int]]:
    """The argmax token at every step until <eos> (not included in the output) or max_len."""
    tokens = torch.full((batch,), sos, dtype=torch.long, device=next(iter(state.values())).device)
    done = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    out = []
    for _ in range(max_len):
        logits, state = step(tokens, state)
        tokens = logits.argmax(-1)
        out.append(tokens)
        done |= tokens == eos
        if bool(done.all()):
            break
    rows = torch.stack(out, 1).tolist()
    return [row[:row.index(eos)] if eos in row else row for row in rows]


def beam_search(step: Step, state: dict, batch: int, sos: int, eos: int, max_len: int, beam: int,
                alpha: float = 1.0) -> list[list[int]]:
    """The best hypothesis (without <eos>) per example, by length-normalised score."""
    return [found[0][0] for found in beam_search_nbest(step, state, batch, sos, eos, max_len, beam, alpha)]


def beam_search_nbest(step: Step, state: dict, batch: int, sos: int, eos: int, max_len: int, beam: int,
                      alpha: float = 1.0) -> list[list[tuple[list[int], float]]]:
    """Per example, the beam's hypotheses (without <eos>) with their length-normalised scores, best
    first (those of score -inf left out, but never all). `state` has `batch` rows; it is repeated
    `beam` times here (example-major: rows b*beam .. b*beam+beam-1)."""
    device = next(iter(state.values())).device
    state = _select(state, torch.arange(batch, device=device).repeat_interleave(beam))
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0                                             # one live hypothesis to start
    tokens = torch.full((batch * beam,), sos, dtype=torch.long, device=device)
    history = torch.empty((batch, beam, 0), dtype=torch.long, device=device)
    finished = torch.zeros((batch, beam), dtype=torch.bool, device=device)
    lengths = torch.zeros((batch, beam), device=device)
    for _ in range(max_len):
        logits, state = step(tokens, state)
        logp = logits.float().log_softmax(-1).view(batch, beam, -1)   # (B, K, V)
        vocab = logp.shape[-1]
        # a finished hypothesis extends only by <eos> at no cost, so it keeps its score and place
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., eos] = 0.0
        logp = torch.where(finished.unsqueeze(-1), frozen, logp)
        candidates = (scores.unsqueeze(-1) + logp).view(batch, -1)    # (B, K*V)
        new_lengths = (lengths + (~finished).float()).unsqueeze(-1).expand(-1, -1, vocab).reshape(batch, -1)
        ranking = candidates / new_lengths.clamp(min=1) ** alpha
        ranking = ranking.masked_fill(torch.isinf(candidates), float("-inf"))
        top = ranking.topk(beam, dim=-1).indices                      # (B, K)
        origin, token = top // vocab, top % vocab
        scores = candidates.gather(1, top)
        lengths = new_lengths.gather(1, top)
        finished = finished.gather(1, origin) | (token == eos)
        history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand(-1, -1, history.shape[-1])),
                             token.unsqueeze(-1)], dim=-1)
        rows = (origin + torch.arange(batch, device=device).unsqueeze(1) * beam).view(-1)
        state = _select(state, rows)
        tokens = token.view(-1)
        if bool((finished | torch.isinf(scores)).all()):
            break
    final = (scores / lengths.clamp(min=1) ** alpha).masked_fill(torch.isinf(scores), float("-inf"))
    order = final.argsort(dim=-1, descending=True, stable=True)      # (B, K)
    out = []
    for b, ranks in enumerate(order.tolist()):
        found = [(history[b, k].tolist(), float(final[b, k])) for k in ranks]
        found = [(row[:row.index(eos)] if eos in row else row, score) for row, score in found]
        out.append([f for f in found if f[1] > float("-inf")] or found[:1])
    return out


def sequence_score(log_probs: list[float], alpha: float = 1.0) -> float:
    """The score beam_search ranks a finished hypothesis by (its tokens' log-probs, <eos> included)."""
    return sum(log_probs) / max(len(log_probs), 1) ** alpha
