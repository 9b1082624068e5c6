"""Beam search: beam 1 is greedy decoding; a wide beam finds the best sequence of a toy model
small enough to enumerate every sequence; the bench (bench/text2math_beam.py) prints its ratios."""
import itertools
import re

import pytest
import torch

from bench import text2math_beam
from common.errors import UserError
from tests.conftest import REPO
from text2math.beam import beam_search, greedy_decode, sequence_score
from text2math.model import Seq2Seq, Seq2SeqConfig, SPECIALS
from text2math.pointer import MAX_NUMBERS
from text2math.train import main as train_main

SOS, EOS = 1, 2


class ToyModel:
    """Log-probabilities from a fixed random table indexed by (step, previous token): the state is
    the step counter, so the score of any sequence is computable by hand."""

    def __init__(self, vocab: int, max_len: int, seed: int, batch: int):
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(batch, max_len + 1, vocab, vocab, generator=generator) * 2
        self.table[..., :2] = -1e9  # pad and <sos> are never produced

    def start(self, batch: int) -> dict:
        return {"t": torch.zeros(batch, dtype=torch.long), "row": torch.arange(batch)}

    def step(self, tokens, state):
        row = state["row"].repeat_interleave(len(tokens) // len(state["row"]))   # one row per example (beam.py)
        logits = self.table[row, state["t"], tokens]     # (N, V)
        return logits, {"t": state["t"] + 1, "row": state["row"]}

    def log_probs(self, row: int, sequence) -> list[float]:
        previous, out = SOS, []
        for t, token in enumerate(sequence):
            out.append(float(self.table[row, t, previous].log_softmax(-1)[token]))
            previous = token
        return out


def test_beam_one_equals_greedy_on_a_random_model():
    model = ToyModel(vocab=7, max_len=8, seed=3, batch=16)
    greedy = greedy_decode(model.step, model.start(16), 16, SOS, EOS, max_len=8)
    beam = beam_search(model.step, model.start(16), 16, SOS, EOS, max_len=8, beam=1)
    assert greedy == beam


def test_beam_one_equals_greedy_on_a_seq2seq_model():
    torch.manual_seed(0)
    vocab = [*SPECIALS, *(f"n{i}" for i in range(MAX_NUMBERS)), "add", "|"]
    config = Seq2SeqConfig("glove_attention", vocab, ["<pad>", "<unk>", "a", "b"], emb_dim=8, hidden=12, dropout=0.0)
    model = Seq2Seq(config).eval()
    src = torch.randint(2, 4, (5, 6))
    mask = torch.ones_like(src, dtype=torch.bool)
    numbers = torch.full((5, MAX_NUMBERS), -1)
    numbers[:, :2] = torch.tensor([1, 4])
    with torch.no_grad():
        greedy = greedy_decode(model.decoder.step, model.start(src, mask, numbers), 5, SOS, EOS, max_len=10)
        beam = beam_search(model.decoder.step, model.start(src, mask, numbers), 5, SOS, EOS, max_len=10, beam=1)
    assert greedy == beam


def test_wide_beam_finds_the_best_sequence_by_exhaustive_search():
    vocab, max_len, batch = 5, 4, 6          # tokens 3, 4 and <eos>: 1 + 2 + 4 + 8 + 16 sequences
    model = ToyModel(vocab, max_len, seed=11, batch=batch)
    free = [3, 4]
    for alpha in (0.0, 1.0):
        found = beam_search(model.step, model.start(batch), batch, SOS, EOS, max_len=max_len, beam=64, alpha=alpha)
        narrow = beam_search(model.step, model.start(batch), batch, SOS, EOS, max_len=max_len, beam=2, alpha=alpha)
        for row in range(batch):
            candidates = [list(body) + [EOS] for n in range(max_len) for body in itertools.product(free, repeat=n)]
            candidates += [list(body) for body in itertools.product(free, repeat=max_len)]  # cut at max_len
            scores = {tuple(c): sequence_score(model.log_probs(row, c), alpha) for c in candidates}
            best = max(scores, key=scores.get)
            assert found[row] == [t for t in best if t != EOS]
            narrow_full = tuple(narrow[row] + ([EOS] if len(narrow[row]) < max_len else []))
            assert scores[narrow_full] <= scores[best] + 1e-9


def test_the_bench_prints_the_ratio_and_whether_the_programs_agree(capsys):
    text2math_beam.main(["--problems", "12", "--beam", "3", "--batch", "4", "--max-len", "20"])
    out = capsys.readouterr().out
    assert re.search(r"12 problems, beam 3, .* speed ratio [\d.]+x; same programs: True$", out.strip())


def test_the_bench_against_a_revision_needs_a_checkpoint_and_a_revision(tmp_path):
    with pytest.raises(UserError, match="--checkpoint"):
        text2math_beam.main(["--against", "HEAD"])
    with pytest.raises(UserError, match="git archive failed"):
        text2math_beam.archive("no-such-revision-anywhere", tmp_path)
    with pytest.raises(UserError, match="not a revision"):          # never handed to git as an option
        text2math_beam.archive(f"--output={tmp_path / 'written'}", tmp_path)
    assert not (tmp_path / "written").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_bench_times_another_revision_on_the_same_problems(tmp_path, capsys):
    """--against runs that revision's own decode in a child process; HEAD's programs equal this tree's."""
    train_main(["--smoke", "--out", str(tmp_path / "run")])
    text2math_beam.main(["--checkpoint", str(tmp_path / "run"), "--problems", "8", "--beam", "2", "--batch", "4",
                         "--max-len", "20", "--against", "HEAD"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"HEAD: one problem at a time [\d.]+ s, 4 per forward pass [\d.]+ s; .*"
                    r"same programs as this tree: True$", last)
