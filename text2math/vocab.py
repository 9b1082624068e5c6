"""Vocabularies and padded tensors: source words (GloVe encoders) or WordPiece ids (BERT), and the
program tokens the decoder emits."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch

from common.errors import UserError
from text2math.data import Problem
from text2math.grammar import MAX_REFS as MAX_STEPS
from text2math.model import EOS, PAD, SOS, SPECIALS, UNK
from text2math.pointer import MAX_NUMBERS, word_positions
from text2math.program import END_OP


def source_vocab(problems: Sequence[Problem], min_count: int = 1) -> list[str]:
    """PAD, UNK, then the training words by frequency (ties alphabetical)."""
    counts = Counter(word for p in problems for word in p.text.split())
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *words]


def target_vocab(problems: Sequence[Problem]) -> list[str]:
    """SPECIALS, every n_i and #i slot, '|', then the operations and constants the given (training)
    programs use, sorted. Build it from training programs only: a token only an evaluation program
    uses is <unk> there, which the model cannot produce."""
    slots = [f"n{i}" for i in range(MAX_NUMBERS)] + [f"#{i}" for i in range(MAX_STEPS)] + [END_OP]
    used = sorted({t for p in problems for t in p.program} - set(slots))
    return [*SPECIALS, *slots, *used]


def glove_matrix(words: Sequence[str], vectors: dict[str, np.ndarray], initial: torch.Tensor) -> torch.Tensor:
    """`initial` (V, E) with the rows of words GloVe knows replaced by their vectors (PAD stays 0)."""
    matrix = initial.clone()
    for i, word in enumerate(words):
        if word in vectors:
            matrix[i] = torch.from_numpy(vectors[word])
    matrix[0] = 0
    return matrix


def encode_sources(problems: Sequence[Problem], words: Sequence[str], tokenizer, max_len: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (N, S), mask (N, S) and number positions (N, MAX_NUMBERS), -1 where a number is absent or
    cut: word ids from `words`, or the BERT tokenizer's ids (first word piece of each number) when given."""
    if tokenizer is not None:
        return _encode_wordpieces(problems, tokenizer, max_len)
    index = {w: i for i, w in enumerate(words)}
    unk = index[UNK]
    kept = [p.text.split()[:max_len] for p in problems]
    rows = [[index.get(w, unk) for w in row] or [unk] for row in kept]
    ids = torch.zeros((len(rows), max(map(len, rows))), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids, ids != 0, torch.tensor([word_positions(row) for row in kept], dtype=torch.long).view(-1, MAX_NUMBERS)


def _encode_wordpieces(problems: Sequence[Problem], tokenizer, max_len: int):
    words = [p.text.split() or ["."] for p in problems]
    encoded = tokenizer(words, is_split_into_words=True, padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
    positions = []
    for i, row in enumerate(words):
        first: dict[int, int] = {}
        for position, word in enumerate(encoded.word_ids(i)):
            if word is not None:
                first.setdefault(word, position)
        by_word = word_positions(row)
        positions.append([first.get(w, -1) if w >= 0 else -1 for w in by_word])
    return encoded["input_ids"], encoded["attention_mask"].bool(), torch.tensor(positions, dtype=torch.long)


def reachable_numbers(problem: Problem, positions: torch.Tensor, vocab: Sequence[str]) -> list[tuple[int, float]]:
    """(token id, value) of the problem's numbers the pointer can reach (in the source, slot < MAX_NUMBERS)."""
    index = {t: i for i, t in enumerate(vocab)}
    return [(index[f"n{i}"], value) for i, value in enumerate(problem.numbers[:MAX_NUMBERS]) if positions[i] >= 0]


def encode_targets(problems: Sequence[Problem], vocab: Sequence[str], max_len: int, truncate: bool = False,
                   positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list[bool]]:
    """(N', T) rows `<sos> program <eos> <pad>...` and which problems were kept: programs longer
    than max_len, or using a token outside `vocab` or a number the pointer cannot reach (`positions`),
    are dropped (training) or kept as they are, cut, with <unk> (`truncate`, evaluation)."""
    index = {t: i for i, t in enumerate(vocab)}
    rows, kept = [], []
    for k, p in enumerate(problems):
        reachable = {f"n{i}" for i in range(MAX_NUMBERS) if positions is None or positions[k, i] >= 0}
        ids = [index[t] if t in index and not (_is_number(t) and t not in reachable) else index[UNK]
               for t in p.program[:max_len]]
        fits = len(p.program) <= max_len and index[UNK] not in ids
        kept.append(fits or truncate)
        if fits or truncate:
            rows.append([index[SOS], *ids, index[EOS]])
    if problems and not rows:   # training on nothing would end as a NaN loss (exit 3), not a data error
        raise UserError(f"all {len(problems):,} training programs were dropped (longer than {max_len} tokens, or "
                        f"using a number or token outside reach); raise --max-program-len or check the data")
    tgt = torch.full((len(rows), max(map(len, rows), default=2)), index[PAD], dtype=torch.long)
    for i, row in enumerate(rows):
        tgt[i, :len(row)] = torch.tensor(row)
    return tgt, kept


def _is_number(token: str) -> bool:
    return token.startswith("n") and token[1:].isdigit()
