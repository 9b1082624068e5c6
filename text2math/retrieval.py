"""Retrieval augmentation (`--retrieve K`, off by default): each problem is given the programs of its K
nearest TRAINING problems (TF-IDF of words and word pairs, as knn.py), which the decoder attends to and
may copy tokens from (model.py). Neighbours are searched only in the training pool: a training problem
never retrieves itself (leave-one-out, the same situation an unseen problem is in), and validation and
evaluation problems are queries, never part of the pool, so no evaluation program can leak in.

The pool (the training problems' texts and programs) is stored in the checkpoint, so evaluate.py
retrieves from the same training problems on any file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from text2math.pointer import row_context, row_scores

SEPARATOR = "<eos>"     # between two retrieved programs (and after the last: no row is ever empty)
MAX_NEIGHBOURS = 1000   # neighbours' programs a problem may be given as candidates (train.py --rerank-k, rerank.py
                        # --k, knn.py --k): each is executed and scored for every problem


@dataclass
class RetrievalPool:
    texts: list[str]            # the training problems (numbers as n0, n1, ...)
    programs: list[list[str]]   # their tokenised programs

    def to_dict(self) -> dict:
        return {"texts": self.texts, "programs": self.programs}

    @classmethod
    def from_dict(cls, values: dict) -> "RetrievalPool":
        """The pool to_dict wrote; ValueError unless it holds as many texts (str) as programs (lists of str)."""
        texts, programs = (values.get("texts"), values.get("programs")) if isinstance(values, dict) else (None, None)
        lists = [texts, *programs] if isinstance(programs, list) else [None]
        if not (isinstance(texts, list) and len(texts) == len(lists) - 1 and all(
                isinstance(p, list) and all(isinstance(t, str) for t in p) for p in lists)):
            raise ValueError("a retrieval pool holds the training problems' texts and programs (RetrievalPool)")
        return cls(list(texts), [list(p) for p in programs])

    @classmethod
    def from_problems(cls, problems) -> "RetrievalPool":
        return cls([p.text for p in problems], [list(p.program) for p in problems])

    def neighbours(self, queries: Sequence[str], k: int, exclude_self: bool = False) -> list[list[int]]:
        """Indices into the pool of each query's k most similar problems, most similar first. With
        `exclude_self`, query i is pool problem i and is left out of its own neighbours."""
        exclude = list(range(len(queries))) if exclude_self else None
        return [[j for j, _ in found] for found in neighbours(self.texts, queries, k, exclude)]


def neighbours(pool_texts: Sequence[str], queries: Sequence[str], k: int,
               exclude: Sequence[int | None] | None = None) -> list[list[tuple[int, float]]]:
    """(pool index, similarity) of each query's k most similar pool problems, most similar first; query i
    never gets pool problem exclude[i] (itself: leave-one-out)."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    memory = vectorizer.fit_transform(pool_texts)
    out = []
    for start in range(0, len(queries), 512):
        similarity = (vectorizer.transform(list(queries[start:start + 512])) @ memory.T).toarray()
        for row, sims in enumerate(similarity):
            skip = exclude[start + row] if exclude is not None else None
            order = np.argsort(-sims, kind="stable")
            # the excluded problem is dropped, not ranked last: with k at or above the pool's size it came back
            # with similarity -inf, and the features' NaN stopped the reranker's fit with a traceback
            out.append([(int(j), float(sims[j])) for j in order[:k + 1] if j != skip][:k])
    return out


def retrieved_tensor(pool: RetrievalPool, queries: Sequence[str], vocab: Sequence[str], k: int,
                     exclude_self: bool = False, max_len: int = 60) -> torch.Tensor:
    """(N, R) token ids: the k neighbours' programs (each cut to max_len), each followed by <eos>, padded
    with 0. Tokens outside `vocab` (none, when the vocabulary was built from the pool) are <unk>."""
    index = {t: i for i, t in enumerate(vocab)}
    unk, sep = index["<unk>"], index[SEPARATOR]
    rows = []
    for found in pool.neighbours(queries, k, exclude_self):
        row: list[int] = []
        for j in found:
            row += [index.get(t, unk) for t in pool.programs[j][:max_len]] + [sep]
        rows.append(row or [sep])
    out = torch.zeros((len(rows), max(map(len, rows), default=1)), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


class RetrievedCopy(torch.nn.Module):
    """The decoder's view of the retrieved programs: a Bi-LSTM over their tokens, attention from the
    decoder's features, and a copy distribution (the attention weights put on each retrieved token's
    vocabulary id) mixed with the generating distribution by a learned gate (pointer-generator)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int):
        super().__init__()
        half = max(hidden // 2, 1)
        self.embedding = torch.nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.lstm = torch.nn.LSTM(emb_dim, half, batch_first=True, bidirectional=True)
        self.keys = torch.nn.Linear(2 * half, hidden, bias=False)
        self.combine = torch.nn.Linear(hidden + 2 * half, hidden)
        self.gate = torch.nn.Linear(hidden + 2 * half, 1)

    def start(self, retrieved: torch.Tensor) -> dict[str, torch.Tensor]:
        """retrieved (B, R) token ids, 0 = padding (every row holds at least one token)."""
        mask = retrieved != 0
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.embedding(retrieved), lengths, batch_first=True,
                                                         enforce_sorted=False)
        out, _ = self.lstm(packed)
        memory, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=retrieved.shape[1])
        return {"ret_ids": retrieved, "ret_mask": mask, "ret_memory": memory, "ret_keys": self.keys(memory)}

    def forward(self, features: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features (N, H) -> new features (N, H), copy weights (N, R), gate (N, 1) = P(generate); the state's
        tensors have one row per example (pointer.row_scores)."""
        weights = row_scores(state["ret_keys"], features, state["ret_mask"]).softmax(-1)   # (N, R)
        context = row_context(weights, state["ret_memory"])                              # (N, M)
        joined = torch.cat([features, context], dim=-1)
        return torch.tanh(self.combine(joined)), weights, torch.sigmoid(self.gate(joined))

    @staticmethod
    def mix(logits: torch.Tensor, weights: torch.Tensor, gate: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """log(gate * softmax(logits) + (1 - gate) * copy) (N, V), `ids` (B, R) one row per example; -inf stays
        -inf (numbers the problem lacks cannot be copied either)."""
        if len(ids) != len(weights):
            ids = ids.repeat_interleave(len(weights) // len(ids), dim=0)              # (N, R)
        copy = torch.zeros_like(logits, dtype=weights.dtype).scatter_add(1, ids, weights)
        probs = gate * logits.float().softmax(-1) + (1 - gate) * copy
        return torch.log(probs + 1e-10).masked_fill(torch.isneginf(logits), float("-inf"))
