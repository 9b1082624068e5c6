"""Numbers copied, not generated: the decoder's scores for `n0, n1, ...` come from a pointer over the
encoder states at the positions where the problem's numbers stand, not from vocabulary rows.

The program vocabulary keeps the slots `n0 .. n{MAX_NUMBERS-1}` right after the special tokens (so
token ids, exact match and the executor are unchanged); the decoder's output layer scores every other
token, and `splice` puts the pointer's scores into the number slots. A slot whose number is not in
the problem (or was cut from the source) scores -inf: the pointer can only pick numbers that exist.

Attention everywhere in the decoders (pointer, retrieved programs, Luong) goes through `row_scores` and
`row_context`: the queries have one row per hypothesis (N = B * K, an example's K beam rows together) while
the encoder side keeps one row per example (B), so beam search never copies the memory per beam row.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn as nn

MAX_NUMBERS = 40            # n0 .. n39
FIRST_NUMBER = 4            # the slots follow <pad> <sos> <eos> <unk>
PLACEHOLDER = re.compile(r"n(\d+)$")


def word_positions(words: Sequence[str]) -> list[int]:
    """[position of n0, of n1, ...] among `words` (-1 where absent), at most MAX_NUMBERS."""
    positions = [-1] * MAX_NUMBERS
    for j, word in enumerate(words):
        match = PLACEHOLDER.match(word)
        if match and int(match.group(1)) < MAX_NUMBERS and positions[int(match.group(1))] < 0:
            positions[int(match.group(1))] = j
    return positions


def row_scores(keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores (N, S) of the queries (N, H) against their example's keys (B, S, H), -inf where `mask` (B, S) is
    False; N = B * K, rows b*K .. b*K+K-1 belong to example b (K = 1 in training)."""
    b, s = mask.shape
    scores = torch.bmm(keys, query.view(b, -1, query.shape[-1]).transpose(1, 2))     # (B, S, K)
    return scores.masked_fill(~mask.unsqueeze(-1), float("-inf")).transpose(1, 2).reshape(-1, s)


def row_context(weights: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The weighted sums (N, D) of each row's example's memory (B, S, D) under its weights (N, S)."""
    b, s, d = memory.shape
    return torch.bmm(weights.view(b, -1, s), memory).view(-1, d)


class NumberPointer(nn.Module):
    """Bilinear scores between the decoder's query and the encoder states of the numbers."""

    def __init__(self, memory_dim: int, query_dim: int, index_embedding: bool = False):
        super().__init__()
        self.keys = nn.Linear(memory_dim, query_dim, bias=False)
        # a learned vector per number index (n0, n1, ...): programs use the numbers largely in order,
        # and a BERT encoder's state at `nK` starts with the same word piece `n` for every K
        self.index = nn.Embedding(MAX_NUMBERS, query_dim) if index_embedding else None

    def start(self, memory: torch.Tensor, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """memory (B, S, D), positions (B, MAX_NUMBERS) with -1 where absent."""
        index = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, memory.shape[-1])
        states = memory.gather(1, index)                                    # (B, K, D)
        keys = self.keys(states)
        if self.index is not None:
            keys = keys + self.index.weight.unsqueeze(0)                    # (B, K, H)
        return {"number_keys": keys, "number_mask": positions >= 0}

    def forward(self, query: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, MAX_NUMBERS) scores of the queries (N, H); -inf for numbers the problem does not have."""
        return row_scores(state["number_keys"], query, state["number_mask"])


def splice(general: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
    """Logits over the whole vocabulary: the output layer's (every token but the number slots) with the
    pointer's scores in the slots FIRST_NUMBER .. FIRST_NUMBER + MAX_NUMBERS."""
    return torch.cat([general[:, :FIRST_NUMBER], numbers, general[:, FIRST_NUMBER:]], dim=-1)
