"""Grammar-constrained decoding: a decoder may only write programs that parse and execute.

A program is a sequence of steps `op a1 .. ak |`: an operation of the vocabulary, then exactly its
arity of arguments, each one of *this* problem's numbers (`n_i` the pointer can reach), a constant,
or a reference `#j` to an earlier step, then `|`; `<eos>` only after a whole step. Arguments are also
checked by value, so that the step executes: the last argument exactly (the step runs with it), an
earlier one through a witness (the step runs with that value repeated in the remaining places, so a
completion always exists). An operation is offered only while the tokens left can hold it, `|` and
`<eos>`. Every token the grammar forbids gets -inf before greedy or beam search ranks it.

`ConstrainedStep` wraps a decoder's `step`; the grammar state of each row travels in the decoder's
state dict as a row id (`gid`), so beam search reorders it with the same index_select as the tensors.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from text2math.program import END_OP, OPERATIONS, ExecutionError, constant_value

EOS, SOS = "<eos>", "<sos>"
MAX_REFS = 30
MEMO_SIZE = 1 << 18          # entries of Grammar's memo of steps that run


def runs(op: str, values: Sequence[float]) -> float | None:
    """The step's value, or None when it does not execute (domain error, overflow, not finite)."""
    try:
        value = float(OPERATIONS[op].fn(*values))
    except (ArithmeticError, ValueError, TypeError, ExecutionError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ProgramState:
    """One partial program: the values it can use, the steps done, the step being written."""
    numbers: tuple[tuple[int, float], ...]      # (token id, value) of the numbers the pointer can reach
    results: tuple[float, ...] = ()
    op: str | None = None
    args: tuple[float, ...] = ()
    length: int = 0                             # tokens written (without <sos>)
    done: bool = False                          # <eos> written, or a forbidden token was forced (dead)


@dataclass
class Grammar:
    vocab: Sequence[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.eos, self.sos, self.end = self.index[EOS], self.index[SOS], self.index.get(END_OP, -1)
        self.ops = {i: t for i, t in enumerate(self.vocab) if t in OPERATIONS}
        self.constants = [(i, _constant(t)) for i, t in enumerate(self.vocab) if t.startswith("const_")]
        self.constants = [(i, v) for i, v in self.constants if v is not None]
        self.refs = [self.index[f"#{j}"] for j in range(MAX_REFS) if f"#{j}" in self.index]
        self.constant_values, self.ref_slots = dict(self.constants), {t: j for j, t in enumerate(self.refs)}
        self.longest_step = max(op.arity for op in OPERATIONS.values()) + 3    # op, arguments, `|`, <eos>
        self._runs_with: dict[float, frozenset[int]] = {}          # value -> ops that run on it repeated
        self._completes: dict[tuple, bool] = {}                     # (op, args, value) -> the step runs
        self._lists: dict[tuple, tuple[list[int], object]] = {}     # allowed()'s memo
        self.constant_ops = frozenset().union(*(self.ops_running_on(v) for _, v in self.constants))

    def ops_running_on(self, value: float) -> frozenset[int]:
        """The operations (token ids) that execute with `value` in every argument place (memoised)."""
        if value not in self._runs_with:
            self._runs_with[value] = frozenset(i for i, op in self.ops.items()
                                               if runs(op, [value] * OPERATIONS[op].arity) is not None)
        return self._runs_with[value]

    def viable_ops(self, state: ProgramState) -> frozenset[int]:
        """Operations some argument available now makes run (so the step can always be completed)."""
        found = self.constant_ops
        for value in [v for _, v in state.numbers] + list(state.results):
            if len(found) == len(self.ops):
                break
            found = found | self.ops_running_on(value)
        return found

    def start(self, numbers: Sequence[tuple[int, float]]) -> ProgramState:
        return ProgramState(tuple(numbers))

    def advance(self, state: ProgramState, token: int) -> ProgramState:
        """The state after `token` (a forbidden token, e.g. of a dead beam row, ends the program)."""
        if token == self.sos and state.length == 0:
            return state
        if state.done:
            return state
        length = state.length + 1
        if token == self.eos:
            return ProgramState(state.numbers, state.results, length=length, done=True)
        if state.op is None and token in self.ops:
            return ProgramState(state.numbers, state.results, self.ops[token], (), length)
        if state.op is not None and len(state.args) == OPERATIONS[state.op].arity and token == self.end:
            value = runs(state.op, state.args)
            return ProgramState(state.numbers, (*state.results, value), length=length, done=value is None)
        value = self._argument(state, token)
        if state.op is None or value is None or len(state.args) >= OPERATIONS[state.op].arity:
            return ProgramState(state.numbers, state.results, length=length, done=True)
        return ProgramState(state.numbers, state.results, state.op, (*state.args, value), length)

    def _argument(self, state: ProgramState, token: int) -> float | None:
        """The value of `token` as an argument now: one of the problem's numbers, a constant or an earlier step's
        result; None if it is none of them."""
        if token in self.constant_values:
            return self.constant_values[token]
        if token in self.ref_slots:
            slot = self.ref_slots[token]
            return state.results[slot] if slot < len(state.results) else None
        return next((v for i, v in state.numbers if i == token), None)

    def allowed(self, state: ProgramState, max_len: int) -> list[int]:
        """Token ids that may come next; `max_len` counts every token including <eos>."""
        if state.done:
            return [self.eos]
        if state.op is None:
            ops = self._memo(("ops", id(state.numbers), state.results, min(max_len - state.length, self.longest_step)),
                             lambda: self._ops_fitting(state, max_len), state.numbers)
            return ops + [self.eos] if state.results or not ops else ops
        op, args = state.op, state.args
        if len(args) == OPERATIONS[op].arity:
            return [self.end]
        numbers = self._memo(("numbers", op, args, id(state.numbers)),
                             lambda: [i for i, v in state.numbers if self.completes(op, args, v)], state.numbers)
        constants = self._memo(("constants", op, args),
                               lambda: [i for i, v in self.constants if self.completes(op, args, v)])
        refs = [self.refs[j] for j, v in enumerate(state.results[:len(self.refs)]) if self.completes(op, args, v)]
        return numbers + constants + refs

    def _ops_fitting(self, state: ProgramState, max_len: int) -> list[int]:
        """The viable operations whose whole step (op, arguments, `|`) and <eos> fit in the tokens left."""
        left = max_len - state.length
        if len(state.results) >= len(self.refs):
            return []
        return [i for i in self.viable_ops(state) if OPERATIONS[self.ops[i]].arity + 3 <= left]

    def _memo(self, key: tuple, compute: Callable[[], list[int]], keep: object = None) -> list[int]:
        """compute(), memoised under `key` (bounded). Many beam rows write the same step of the same problem. A
        key holding id(x) passes x as `keep`: the memo holds x, so no other object can take its id."""
        found = self._lists.get(key)
        if found is None:
            if len(self._lists) >= MEMO_SIZE:
                self._lists.clear()
            found = self._lists[key] = (compute(), keep)
        return found[0]

    def completes(self, op: str, args: tuple[float, ...], value: float) -> bool:
        """Whether `op` runs with `args`, then `value` in every place left (memoised, bounded)."""
        key = (op, args, value)
        found = self._completes.get(key)
        if found is None:
            if len(self._completes) >= MEMO_SIZE:
                self._completes.clear()
            fill = OPERATIONS[op].arity - len(args)
            found = self._completes[key] = runs(op, (*args, *[value] * fill)) is not None
        return found

    def mask(self, states: Sequence[ProgramState], max_len: int, vocab_size: int) -> torch.Tensor:
        """(N, V) bool: True where the token is allowed."""
        allowed = [self.allowed(state, max_len) for state in states]
        lengths = np.fromiter(map(len, allowed), dtype=np.int64, count=len(allowed))
        cols = np.fromiter(itertools.chain.from_iterable(allowed), dtype=np.int64, count=int(lengths.sum()))
        mask = np.zeros((len(states), vocab_size), dtype=bool)
        mask[np.repeat(np.arange(len(states)), lengths), cols] = True
        return torch.from_numpy(mask)


def _constant(token: str) -> float | None:
    try:
        return constant_value(token)
    except ExecutionError:
        return None


class ConstrainedStep:
    """`step(tokens, state) -> (logits, state)` with every token the grammar forbids at -inf."""

    def __init__(self, step: Callable, grammar: Grammar, numbers: Sequence[Sequence[tuple[int, float]]],
                 max_len: int):
        self.inner, self.grammar, self.max_len = step, grammar, max_len
        self.states = [grammar.start(n) for n in numbers]

    def prepare(self, state: dict) -> dict:
        rows = next(iter(state.values())).shape[0]
        return {**state, "gid": torch.arange(rows, device=next(iter(state.values())).device)}

    def __call__(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        parents = state["gid"].tolist()
        self.states = [self.grammar.advance(self.states[p], t) for p, t in zip(parents, tokens.tolist())]
        logits, state = self.inner(tokens, {k: v for k, v in state.items() if k != "gid"})
        mask = self.grammar.mask(self.states, self.max_len, logits.shape[-1]).to(logits.device)
        state = {**state, "gid": torch.arange(len(parents), device=logits.device)}
        return logits.masked_fill(~mask, float("-inf")), state
