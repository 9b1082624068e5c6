"""Greedy decoding and batched, length-normalised beam search over a decoder's `step`.

`step(tokens (N,), state) -> (logits (N, V), state)`: N rows, one per hypothesis; a tensor the step never
changes may keep one row per example instead (beam_search_nbest).
A hypothesis ends at <eos>; its score is sum(log p) / length**alpha (length counts <eos>), so
alpha = 1 ranks by mean log-probability and alpha = 0 by the plain sum. With beam 1 the search
keeps the argmax at every step: it is greedy decoding."""
from __future__ import annotations

from typing import Callable

import torch

Step = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]
MAX_BEAM = 200   # --beam-sizes / --rerank-beam / --beam: 10 and 20 are the report's; 1e6 filled the memory


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
    first (those of score -inf left out, but never all). `state` has `batch` rows, one per example.

    The first step runs on those rows (one live hypothesis per example) and its `beam` best tokens become
    the beam. A tensor that step hands back unchanged (encoder memory, keys, masks) is the same for all of an
    example's hypotheses, so it keeps one row per example for the whole search and is never reordered; the
    others get a row per hypothesis, example-major (rows b*K .. b*K+K-1), and the step must read a per-example
    tensor's row b for them (model.py). Examples whose hypotheses have all ended leave the batch (their rows
    are dropped from every tensor, once a quarter of the examples have ended), so a batch is not held to its
    longest program; they give the same hypotheses as if searched alone."""
    device = next(iter(state.values())).device
    scores = torch.zeros((batch, 1), device=device)                # (B, width): one hypothesis to start
    tokens = torch.full((batch,), sos, dtype=torch.long, device=device)
    history = torch.empty((batch, 1, 0), dtype=torch.long, device=device)
    finished = torch.zeros((batch, 1), dtype=torch.bool, device=device)
    lengths = torch.zeros((batch, 1), device=device)
    alive = torch.arange(batch, device=device)                     # the examples still searched, in row order
    shared: set[str] | None = None                                 # the per-example tensors
    done: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}   # example -> (history, scores, lengths)
    for _ in range(max_len):
        logits, stepped = step(tokens, state)
        if shared is None:
            shared = {k for k, v in stepped.items() if state.get(k) is v}
        state = stepped
        n, width = scores.shape
        logp = logits.float().log_softmax(-1).view(n, width, -1)   # (B, width, V)
        vocab = logp.shape[-1]
        # a finished hypothesis extends only by <eos> at no cost, so it keeps its score and place
        logp = logp.masked_fill(finished.unsqueeze(-1), float("-inf"))
        logp[..., eos].masked_fill_(finished, 0.0)
        candidates = scores.unsqueeze(-1) + logp                      # (B, width, V)
        new_lengths = lengths + (~finished).float()                   # (B, width)
        ranking = (candidates / new_lengths.clamp(min=1).unsqueeze(-1) ** alpha).view(n, -1)
        top = ranking.topk(min(beam, ranking.shape[1]), dim=-1).indices    # (B, K)
        origin, token = top // vocab, top % vocab
        scores = candidates.view(n, -1).gather(1, top)
        lengths = new_lengths.gather(1, origin)
        finished = finished.gather(1, origin) | (token == eos)
        history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand(-1, -1, history.shape[-1])),
                             token.unsqueeze(-1)], dim=-1)
        rows = (origin + torch.arange(n, device=device).unsqueeze(1) * width).view(-1)
        state = {k: v if k in shared else v.index_select(0, rows) for k, v in state.items()}
        tokens = token.view(-1)
        width = top.shape[1]
        ended = (finished | torch.isinf(scores)).all(1)   # an ended example stays as it is until it leaves
        if int(ended.sum()) * 4 >= len(alive):               # leave in groups: each compaction copies the state
            for b in ended.nonzero().view(-1).tolist():
                done[int(alive[b])] = (history[b], scores[b], lengths[b])
            keep = (~ended).nonzero().view(-1)
            if not len(keep):
                break
            kept_rows = (keep.unsqueeze(1) * width + torch.arange(width, device=device)).view(-1)
            state = {k: v.index_select(0, keep if k in shared else kept_rows) for k, v in state.items()}
            scores, lengths, finished, history = scores[keep], lengths[keep], finished[keep], history[keep]
            tokens, alive = tokens[kept_rows], alive[keep]
    for b in range(len(alive)):                                    # cut at max_len
        done[int(alive[b])] = (history[b], scores[b], lengths[b])
    out = []
    for b in range(batch):
        rows, row_scores, row_lengths = done[b]
        final = (row_scores / row_lengths.clamp(min=1) ** alpha).masked_fill(torch.isinf(row_scores), float("-inf"))
        ranks = final.argsort(descending=True, stable=True).tolist()
        found = [(rows[k].tolist(), float(final[k])) for k in ranks]
        found = [(row[:row.index(eos)] if eos in row else row, score) for row, score in found]
        out.append([f for f in found if f[1] > float("-inf")] or found[:1])
    return out


def sequence_score(log_probs: list[float], alpha: float = 1.0) -> float:
    """The score beam_search ranks a finished hypothesis by (its tokens' log-probs, <eos> included)."""
    return sum(log_probs) / max(len(log_probs), 1) ** alpha
