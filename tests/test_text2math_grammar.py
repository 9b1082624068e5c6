"""Grammar-constrained decoding and the number pointer: every program a random model decodes (greedy
or beam) parses and executes, and names only numbers the problem has; the scoring of top-1, gold-value
and option-aware accuracy; the training-only vocabulary."""
import pytest
import torch

from common.errors import UserError
from text2math.beam import beam_search_nbest, greedy_decode
from text2math.data import Problem
from text2math.evaluation import decode, score_predictions
from text2math.grammar import MEMO_SIZE, ConstrainedStep, Grammar, runs
from text2math.model import SPECIALS, Seq2Seq, Seq2SeqConfig
from text2math.pointer import MAX_NUMBERS
from text2math.program import CONSTANTS, END_OP, OPERATIONS, execute_tokens
from text2math.vocab import encode_sources, encode_targets, target_vocab

SLOTS = [f"n{i}" for i in range(MAX_NUMBERS)] + [f"#{i}" for i in range(30)] + [END_OP]
VOCAB = [*SPECIALS, *SLOTS, *sorted(OPERATIONS), *sorted(CONSTANTS), "const_12"]
SOS, EOS = VOCAB.index("<sos>"), VOCAB.index("<eos>")
HOSTILE = [0.0, 1.0, -3.0, 2.5, 1e6, 1e-3, 1000.0, 7.0, 0.5, -0.25, 1e300]


def _problems(count: int, seed: int) -> list[Problem]:
    rng = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        k = int(torch.randint(0, 6, (1,), generator=rng))
        numbers = [HOSTILE[int(i)] for i in torch.randint(0, len(HOSTILE), (k,), generator=rng)]
        words = ["what", "is"] + [w for i in range(k) for w in (f"n{i}", "and")] + ["?"]
        out.append(Problem(" ".join(words), numbers, [], [], "", ""))
    return out


def _check(programs: list[list[int]], problems: list[Problem]) -> None:
    for ids, problem in zip(programs, problems):
        tokens = [VOCAB[i] for i in ids]
        execute_tokens(tokens, problem.numbers)            # raises when the program does not run
        used = [int(t[1:]) for t in tokens if t.startswith("n") and t[1:].isdigit()]
        assert all(i < len(problem.numbers) for i in used)


class RandomStep:
    """Logits drawn at random at every step (no model at all): the decoder wanders the whole grammar."""

    def __init__(self, seed: int, scale: float):
        self.rng, self.scale = torch.Generator().manual_seed(seed), scale

    def __call__(self, tokens, state):
        return torch.randn(len(tokens), len(VOCAB), generator=self.rng) * self.scale, state


@pytest.mark.parametrize("max_len", [6, 40])
def test_random_logits_decode_only_programs_that_run(max_len):
    grammar = Grammar(VOCAB)
    problems = _problems(30, seed=max_len)
    reach = [[(VOCAB.index(f"n{i}"), v) for i, v in enumerate(p.numbers)] for p in problems]
    for beam in (1, 4):
        step = ConstrainedStep(RandomStep(beam, scale=4.0), grammar, reach, max_len)
        state = step.prepare({"row": torch.arange(len(problems))})
        if beam == 1:
            ranked = [[program] for program in greedy_decode(step, state, len(problems), SOS, EOS, max_len)]
        else:
            ranked = [[h for h, _ in found] for found in beam_search_nbest(step, state, len(problems), SOS, EOS,
                                                                          max_len, beam)]
        for rank in range(max(map(len, ranked))):
            programs = [found[min(rank, len(found) - 1)] for found in ranked]
            _check(programs, problems)
            assert all(len(p) <= max_len - 1 for p in programs)


@pytest.mark.parametrize("model", ["glove_lstm", "glove_attention"])
def test_random_seq2seq_models_decode_only_programs_that_run(model):
    torch.manual_seed(1)
    words = ["<pad>", "<unk>", "what", "is", "and", "?", *(f"n{i}" for i in range(6))]
    config = Seq2SeqConfig(model, VOCAB, words, emb_dim=8, hidden=16, dropout=0.0)
    net = Seq2Seq(config).eval()
    with torch.no_grad():     # a strong bias towards fragile operations and constants
        for name in ("divide", "log", "sqrt", "factorial", "power", "inverse", "choose", "triangle_area_three_edges"):
            net.decoder.out.bias[VOCAB.index(name) - MAX_NUMBERS] += 3.0
    problems = _problems(16, seed=7)
    tensors = encode_sources(problems, words, None, 60)
    for beam in (1, 4):
        found = decode(net, tensors, problems, config, beam=beam, max_len=24)
        for rank in range(max(len(h) for h in found)):
            chosen = [h[min(rank, len(h) - 1)] for h in found]
            _check(chosen, problems)
        assert score_predictions(found, problems, config, 0.02)["runs"] == 1.0


def test_the_grammar_step_by_step():
    grammar = Grammar(VOCAB)
    ids = {t: VOCAB.index(t) for t in ("add", "sqrt", "n0", "n1", "n2", "#0", "#1", "const_1", END_OP, "<eos>")}
    state = grammar.start([(ids["n0"], 4.0), (ids["n1"], -9.0)])
    first = set(grammar.allowed(state, 20))
    assert ids["add"] in first and ids["<eos>"] not in first and ids["n0"] not in first
    state = grammar.advance(state, ids["sqrt"])
    args = set(grammar.allowed(state, 20))
    assert ids["n0"] in args and ids["n1"] not in args          # sqrt(-9) does not run
    assert ids["n2"] not in args and ids["#0"] not in args      # no third number, no earlier step
    state = grammar.advance(state, ids["n0"])
    assert grammar.allowed(state, 20) == [ids[END_OP]]          # exactly its arity, then '|'
    state = grammar.advance(state, ids[END_OP])
    assert state.results == (2.0,)
    after = set(grammar.allowed(state, 20))
    assert ids["<eos>"] in after and ids["add"] in after
    assert ids["add"] not in grammar.allowed(state, state.length + 4)   # add n n | <eos> needs 5 tokens
    state = grammar.advance(grammar.advance(state, ids["add"]), ids["#0"])
    assert ids["#0"] in grammar.allowed(state, 20) and ids["#1"] not in grammar.allowed(state, 20)


def test_pointer_scores_only_the_numbers_the_problem_has():
    torch.manual_seed(0)
    words = ["<pad>", "<unk>", "x", "n0", "n1"]
    config = Seq2SeqConfig("glove_attention", VOCAB, words, emb_dim=8, hidden=16, dropout=0.0)
    net = Seq2Seq(config).eval()
    problems = [Problem("x n0 x n1", [3.0, 4.0], [], [], "", ""), Problem("n0 x", [5.0], [], [], "", "")]
    src, mask, numbers = encode_sources(problems, words, None, 60)
    assert numbers[0, :3].tolist() == [1, 3, -1] and numbers[1, :2].tolist() == [0, -1]
    logits, _ = net.decoder.step(torch.full((2,), SOS), net.start(src, mask, numbers))
    slots = logits[:, 4:4 + MAX_NUMBERS]
    assert torch.isfinite(slots[0, :2]).all() and torch.isinf(slots[0, 2:]).all()
    assert torch.isfinite(slots[1, :1]).all() and torch.isinf(slots[1, 1:]).all()
    cut = encode_sources(problems, words, None, 2)[2]            # n1 is cut from a 2-word source
    assert cut[0, :2].tolist() == [1, -1]


def _problem(program, answers, options, gold):
    return Problem("t", [10.0, 4.0], program, answers, "", "", options, gold)


def test_scores_top1_gold_value_and_option_aware():
    config = Seq2SeqConfig("glove_lstm", VOCAB, ["<pad>", "<unk>"])
    tok = {t: VOCAB.index(t) for t in VOCAB}
    add = [tok["add"], tok["n0"], tok["n1"], tok[END_OP]]             # 14
    sub = [tok["subtract"], tok["n0"], tok["n1"], tok[END_OP]]        # 6
    mul = [tok["multiply"], tok["n0"], tok["n1"], tok[END_OP]]        # 40
    options = [[14.0], [6.0], [40.0], [1.0], []]
    problems = [_problem(["add", "n0", "n1", "|"], [14.0], options, 14.0),     # top-1 right
                _problem(["subtract", "n0", "n1", "|"], [6.0], options, 6.0),  # option-aware skips 7 -> 6
                _problem(["multiply", "n0", "n1", "|"], [1.0], options, 40.0)]  # label noise: gold value 40
    hypotheses = [[add, sub], [[tok["divide"], tok["n0"], tok["const_2"], tok[END_OP]], sub], [mul]]
    scores = score_predictions(hypotheses, problems, config, 0.02)
    assert scores["exact_match"] == pytest.approx(2 / 3) and scores["runs"] == 1.0
    assert scores["exec_acc"] == pytest.approx(1 / 3)        # 14 only (problem 3's option says 1)
    assert scores["exec_gold"] == pytest.approx(2 / 3)       # 14 and 40
    assert scores["option_acc"] == pytest.approx(2 / 3)      # 14, and 6 chosen over 5


def test_target_vocab_comes_from_training_programs_only():
    train = [Problem("t", [1.0, 2.0], ["add", "n0", "n1", "|"], [], "", "")]
    test = [Problem("t n0 n1", [1.0, 2.0], ["lcm", "n0", "n1", "|"], [], "", "")]
    vocab = target_vocab(train)
    assert "add" in vocab and "lcm" not in vocab and END_OP in vocab
    numbers = encode_sources(test, ["<pad>", "<unk>"], None, 10)[2]
    tgt, kept = encode_targets(test, vocab, 60, truncate=True, positions=numbers)
    assert kept == [True] and tgt[0, 1] == vocab.index("<unk>")
    fits = [Problem("t n0 n1", [1.0, 2.0], ["add", "n0", "n1", "|"], [], "", ""), *test]
    both = encode_sources(fits, ["<pad>", "<unk>"], None, 10)[2]
    assert encode_targets(fits, vocab, 60, positions=both)[1] == [True, False]   # training drops it
    with pytest.raises(UserError, match="all 1 training programs were dropped"):   # and refuses to train on none
        encode_targets(test, vocab, 60, positions=numbers)


def _allowed_from_scratch(grammar: Grammar, state, max_len: int) -> set[int]:
    """The grammar's rule, with no memo: every argument candidate executed."""
    if state.done:
        return {grammar.eos}
    if state.op is None:
        full = len(state.results) >= len(grammar.refs)
        ops = [] if full else [i for i in grammar.viable_ops(state)
                               if OPERATIONS[grammar.ops[i]].arity + 3 <= max_len - state.length]
        return set(ops + [grammar.eos] if state.results or not ops else ops)
    fill = OPERATIONS[state.op].arity - len(state.args)
    if not fill:
        return {grammar.end}
    candidates = [*state.numbers, *grammar.constants, *zip(grammar.refs, state.results)]
    return {i for i, v in candidates if runs(state.op, (*state.args, *[v] * fill)) is not None}


@pytest.mark.parametrize("memo_size", [5, MEMO_SIZE])
def test_the_memoised_grammar_allows_what_the_rule_allows(monkeypatch, memo_size):
    """Every state a random beam search visits gets the same tokens as the rule computed afresh, also when the
    memo is small enough to be cleared all the time."""
    monkeypatch.setattr("text2math.grammar.MEMO_SIZE", memo_size)
    grammar = Grammar(VOCAB)
    seen = []
    original = grammar.allowed

    def checked(state, max_len):
        found = original(state, max_len)
        seen.append(set(found) == _allowed_from_scratch(grammar, state, max_len))
        return found

    monkeypatch.setattr(grammar, "allowed", checked)
    problems = _problems(30, seed=3)
    reach = [[(VOCAB.index(f"n{i}"), v) for i, v in enumerate(p.numbers)] for p in problems]
    step = ConstrainedStep(RandomStep(9, scale=4.0), grammar, reach, 30)
    beam_search_nbest(step, step.prepare({"row": torch.arange(len(problems))}), len(problems), SOS, EOS, 30, 4)
    assert len(seen) > 1000 and all(seen)
    assert len(grammar._lists) <= memo_size and len(grammar._completes) <= memo_size
