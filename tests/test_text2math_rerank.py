"""Batched beam search gives the per-problem search's programs (generated problems always; real MathQA when
../shared/data is there); the learned reranker: leave-one-out neighbours, a fit that follows its evidence,
every ranked program executes, and evaluate.py applies a run's fitted reranker to another file."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from text2math.data import Problem, generated_rows, load_mathqa
from text2math.evaluation import decode, value_of
from text2math.model import EOS, SOS, Seq2Seq, Seq2SeqConfig
from text2math.pointer import FIRST_NUMBER, MAX_NUMBERS
from text2math.reranker import FEATURES, Candidates, fit, log_probs
from text2math.retrieval import neighbours
from text2math.retrieval import RetrievalPool
from text2math.train import encode, main
from text2math.train import parse as train_parse
from text2math.vocab import source_vocab, target_vocab

REAL = REPO.parent / "shared" / "data"


def _untrained(train, seed=0, kind="glove_lstm"):
    """A seeded, untrained model with retrieval: the pointer, the grammar mask and the copy all in play."""
    pool = RetrievalPool.from_problems(train).to_dict()
    config = Seq2SeqConfig(kind, target_vocab(train), source_vocab(train), "", 16, 24, 0.0, None, True, 2, pool)
    torch.manual_seed(seed)
    return Seq2Seq(config).eval()


def _same_programs_batched_and_one_by_one(data, n, tmp_path, kind="glove_lstm"):
    model = _untrained(data.train, kind=kind)
    settings = train_parse(["--data", "generated", "--out", str(tmp_path / "unused")])
    problems = (data.test + data.train)[:n]
    tensors, problems = encode(problems, model.config, None, settings, train=False)
    for beam in (1, 3):
        one = decode(model, tensors, problems, model.config, beam=beam, max_len=24, batch=1, quiet=True)
        many = decode(model, tensors, problems, model.config, beam=beam, max_len=24, batch=64, quiet=True)
        assert one == many
        assert len(many) == n and all(1 <= len(h) <= beam for h in many)
        for hypotheses, problem in zip(many, problems):      # every decoded program parses and executes
            assert all(value_of([model.config.tgt_vocab[i] for i in ids], problem.numbers) is not None
                       for ids in hypotheses)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["glove_lstm", "glove_attention"])
def test_batched_beam_search_equals_the_per_problem_search_on_generated_problems(tmp_path, kind):
    data = load_mathqa("generated", None, seed=0, n_generated=400)
    _same_programs_batched_and_one_by_one(data, 200, tmp_path, kind)


@pytest.mark.parametrize("kind", ["glove_lstm", "glove_attention"])
def test_a_step_reads_per_example_memory_as_it_reads_a_copy_per_beam_row(tmp_path, kind):
    """Beam search keeps the encoder memory, keys, masks and retrieved programs one row per example and the
    decoder's own state one row per hypothesis: the step's logits equal those of a state copied per row."""
    data = load_mathqa("generated", None, seed=0, n_generated=200)
    model = _untrained(data.train, seed=2, kind=kind)
    settings = train_parse(["--data", "generated", "--out", str(tmp_path / "unused")])
    tensors, _ = encode(data.test[:3], model.config, None, settings, train=False)
    beam = 4
    with torch.no_grad():
        state = model.start(*tensors[:3], tensors[4])
        tokens = torch.full((3,), model.config.tgt_vocab.index(SOS))
        _, state = model.decoder.step(tokens, state)                     # a first step on one row per example
        torch.manual_seed(5)
        rows = {k: (v.repeat_interleave(beam, 0) + 0.1 * torch.randn(3 * beam, *v.shape[1:])) for k, v in
                state.items() if k in {"h", "c", "feed"}}                  # hypotheses that have gone apart
        tokens = torch.randint(FIRST_NUMBER + MAX_NUMBERS, len(model.config.tgt_vocab), (3 * beam,))
        shared_logits, _ = model.decoder.step(tokens, {**state, **rows})
        copied = {k: v.repeat_interleave(beam, 0) for k, v in state.items()}
        copied_logits, _ = model.decoder.step(tokens, {**copied, **rows})
    assert torch.allclose(shared_logits, copied_logits, atol=1e-6, equal_nan=True)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "MathQA" / "dev.json").exists(), reason="real MathQA not in ../shared/data")
def test_batched_beam_search_equals_the_per_problem_search_on_real_problems(tmp_path):
    data = load_mathqa("real", REAL, seed=0)
    _same_programs_batched_and_one_by_one(data, 200, tmp_path)


def test_candidate_log_probs_equal_the_teacher_forced_forward_of_each_program(tmp_path):
    """The problem is encoded once and shared by its candidates: the same per-token log-probabilities as the
    model's own forward pass over each candidate alone."""
    data = load_mathqa("generated", None, seed=0, n_generated=200)
    model = _untrained(data.train, seed=3)
    settings = train_parse(["--data", "generated", "--out", str(tmp_path / "unused")])
    tensors, problems = encode(data.test[:4], model.config, None, settings, train=False)
    vocab = model.config.tgt_vocab
    sos, eos = vocab.index(SOS), vocab.index(EOS)
    for row in range(len(problems)):
        programs = [[vocab.index(t) for t in p.program if t in vocab] for p in data.train[row:row + 5]]
        shared = log_probs(model, tensors, row, programs, sos, eos)
        for ids, scores in zip(programs, shared):
            tgt = torch.tensor([[sos, *ids, eos]])
            rows = [t[row:row + 1] for t in tensors]
            with torch.no_grad():
                logp = model(*rows[:3], tgt, retrieved=rows[4]).log_softmax(-1)
            alone = logp[0].gather(-1, tgt[0, 1:, None]).squeeze(-1).clamp(min=-20.0)
            assert torch.allclose(torch.tensor(scores), alone, atol=1e-5), (row, ids)


def test_neighbours_leave_one_out():
    texts = ["a train runs n0 km", "a train runs n0 km", "the area of a circle", "n0 % of n1"]
    found = neighbours(texts, texts, k=2, exclude=[0, 1, 2, 3])
    assert all(i not in [j for j, _ in row] for i, row in enumerate(found))
    assert found[0][0][0] == 1 and found[1][0][0] == 0                   # the duplicate, not itself
    assert neighbours(texts, texts[2:3], k=1)[0][0][0] == 2               # without exclusion: itself
    assert found[0][0][1] >= found[0][1][1]                               # most similar first
    every = neighbours(texts, texts, k=4, exclude=[0, 1, 2, 3])          # k reaches the pool: itself still out
    assert [sorted(j for j, _ in row) for row in every] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert all(np.isfinite(sim) for row in every for _, sim in row)
    assert len(neighbours(texts, texts, k=100, exclude=[0, 1, 2, 3])[0]) == 3
    assert len(neighbours(texts, texts, k=100)[0]) == 4


def test_rerank_with_more_neighbours_than_the_pool_holds(tmp_path):
    """rerank.py --k 1000000000 (and any k at or above the pool) raised sklearn's 'Input X contains NaN'; --k now
    stops at 1,000, still above the smoke run's pool."""
    from text2math import rerank

    run = tmp_path / "run"
    main(["--smoke", "--threads", "1", "--rerank-k", "0", "--out", str(run)])
    result = rerank.main(["--checkpoint", str(run), "--k", "1000", "--threads", "1"])
    assert 0.0 <= result["exec_acc"] <= 1.0


def _problem(answer):
    return Problem("x", [1.0], ["add", "n0", "n0", "|"], [answer], "", "", options=[[answer]])


def test_reranker_learns_which_feature_marks_the_right_candidate():
    rng = np.random.default_rng(0)
    found, problems = [], []
    column = FEATURES.index("vote_sim")
    for _ in range(60):
        features = rng.normal(size=(4, len(FEATURES)))
        right = int(rng.integers(4))
        features[right, column] += 6.0                                   # the evidence: a strong vote
        values = [float(i + 10) for i in range(4)]
        found.append(Candidates([[i] for i in range(4)], values, features))
        problems.append(_problem(values[right]))
    reranker = fit(found[:40], problems[:40], tolerance=0.02)
    assert np.argmax(np.abs(reranker.weights)) == column and reranker.weights[column] > 0
    assert reranker.fitted_on == 40
    hits = [reranker.rank(f)[0] == f.programs[int(np.argmax(f.features[:, column]))] for f in found[40:]]
    assert np.mean(hits) == 1.0


def test_reranker_without_both_classes_ranks_by_the_decoder():
    features = np.zeros((3, len(FEATURES)))
    features[:, FEATURES.index("logp_mean")] = [-3.0, -1.0, -2.0]
    found = Candidates([[0], [1], [2]], [1.0, 2.0, 3.0], features)
    reranker = fit([found], [_problem(99.0)], tolerance=0.02)             # no candidate is right
    assert reranker.rank(found) == [[1], [2], [0]] and reranker.fitted_on == 0


@pytest.fixture(scope="module")
def reranked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    train, test = root / "train.json", root / "challenge_test.json"
    train.write_text(json.dumps(generated_rows(80, seed=3)))
    test.write_text(json.dumps(generated_rows(12, seed=4)))
    out = root / "run"
    summary = main(["--smoke", "--out", str(out), "--wandb", "off", "--train-file", str(train), "--eval-file",
                    str(test), "--rerank-k", "5", "--rerank-beam", "3"])
    return summary, out, test


def test_train_fits_and_scores_the_reranker(reranked_run):
    summary, out, _ = reranked_run
    rerank = summary["rerank"]
    assert rerank["runs"] == 1.0 and rerank["k"] == 5 and rerank["beam"] == 3     # every ranked program runs
    assert rerank["option_acc"] <= rerank["oracle"] <= 1.0 and rerank["options"] is True
    assert rerank["other"]["options"] is False and rerank["other"]["exec_acc"] <= rerank["other"]["option_acc"]
    saved = json.loads((out / "reranker.json").read_text())
    assert saved["reranker"]["features"] == list(FEATURES)
    assert len(saved["pool"]["texts"]) == summary["n_train"] + summary["n_val"]     # every training problem
    assert saved["reranker"]["fitted_on"] in (0, summary["n_val"])


def test_evaluate_applies_the_runs_reranker_to_an_eval_file(reranked_run, tmp_path):
    from text2math.evaluate import main as evaluate_main

    summary, out, test = reranked_run
    result = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path)])
    assert result["rerank"]["runs"] == 1.0
    assert result["rerank"]["exec_acc"] == pytest.approx(summary["rerank"]["exec_acc"])   # the same problems
    plain = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path), "--no-rerank"])
    assert plain["rerank"] is None


def test_without_options_the_reranker_ignores_them():
    rng = np.random.default_rng(1)
    column = FEATURES.index("in_options")
    found, problems = [], []
    for _ in range(30):
        features = rng.normal(size=(3, len(FEATURES)))
        features[:, column] = [1.0, 0.0, 0.0]                             # the right one is an option
        found.append(Candidates([[0], [1], [2]], [5.0, 6.0, 7.0], features))
        problems.append(_problem(5.0))
    assert fit(found, problems, 0.02, options=True).weights[column] > 0
    blind = fit(found, problems, 0.02, options=False)
    assert blind.weights[column] == 0.0
    flipped = Candidates([[0], [1], [2]], [5.0, 6.0, 7.0], found[0].features[::-1].copy())
    assert np.allclose(blind.scores(flipped.features), blind.scores(np.where(np.arange(len(FEATURES)) == column, 0.0,
                                                                    flipped.features)))


@pytest.mark.parametrize("damage, needle", [
    ("garbage", "cannot read .*reranker.json \\(JSONDecodeError\\)"),
    ({"reranker": 3}, "is not what this project writes there \\(an object with 'reranker', 'beam', 'k', 'pool'\\)"),
    (lambda v: {**v, "beam": 10 ** 9}, "is not a reranker train.py or rerank.py wrote"),
    (lambda v: {**v, "k": "20"}, "is not a reranker train.py or rerank.py wrote"),
    (lambda v: {**v, "reranker": {**v["reranker"], "weights": v["reranker"]["weights"][:3]}}, "is not a reranker"),
    (lambda v: {**v, "reranker": {**v["reranker"], "bias": "x"}}, "is not a reranker"),
    (lambda v: {**v, "pool": {"texts": [1], "programs": [["add"]]}}, "is not a reranker"),
    (lambda v: {**v, "pool": {"texts": []}}, "is not a reranker"),
])
def test_evaluate_refuses_a_damaged_reranker_in_one_line(reranked_run, tmp_path, damage, needle):
    """A reranker.json that is no JSON, misses a key or holds a beam of 10**9 gave a JSONDecodeError / KeyError
    traceback, or a search the memory could not hold; one line now, before any decoding."""
    import shutil

    from common.errors import UserError
    from text2math.evaluate import main as evaluate_main

    _, out, test = reranked_run
    run = shutil.copytree(out, tmp_path / "run")
    values = json.loads((run / "reranker.json").read_text())
    damaged = damage(values) if callable(damage) else damage
    (run / "reranker.json").write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(UserError, match=needle) as err:
        evaluate_main(["--checkpoint", str(run), "--eval-file", str(test), "--out", str(tmp_path / "e")])
    assert "\n" not in str(err.value) and str(err.value).endswith("run text2math/rerank.py on the run to write it "
                                                                  "again")


def test_rerank_reads_the_runs_flags_through_train_pys_parser(reranked_run, tmp_path):
    """rerank.py rebuilds the run's settings by passing its saved flags through train.py's parser: the same values
    as train.py parsed, every type and range checked again; a damaged config.json is one line."""
    import shutil

    from common.errors import UserError
    from common.cli import saved_argv
    from text2math.rerank import run_settings
    from text2math.train import build_parser

    _, out, _ = reranked_run
    saved = json.loads((out / "config.json").read_text())["args"]
    parser = build_parser()
    again = vars(parser.parse_args(saved_argv(parser, saved)))
    assert again == {k: (type(again[k])(v) if v is not None and k in ("data_root", "train_file", "eval_file", "out")
                         else v) for k, v in saved.items() if k in again}
    args = type("Args", (), {"data": None, "data_root": None, "beam": 3, "k": 5, "options": True})()
    settings = run_settings(out / "best.pt", args)
    assert (settings.seed, settings.train_file, settings.max_program_len) == (saved["seed"], Path(saved["train_file"]),
                                                                             saved["max_program_len"])
    run = shutil.copytree(out, tmp_path / "run")
    for damaged, needle in (("[]", "an object with 'args'"), ('{"args": []}', "no object of train.py's flags"),
                            ('{"args": {"seed": "x"}}', "train.py refuses \\(argument --seed: invalid"),
                            ('{"args": {"beam_sizes": [1, 1000000]}}', "--beam-sizes: expected an integer"),
                            ("{", "JSONDecodeError")):
        (run / "config.json").write_text(damaged)
        with pytest.raises(UserError, match=needle) as err:
            run_settings(run / "best.pt", args)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("field_name, value, needle", [
    ("retrieve", 10 ** 12, "retrieve must be 0 to 20"), ("retrieve", -1, "retrieve must be 0 to 20"),
    ("retrieval_pool", {}, "retrieval_pool must hold"),
    ("retrieval_pool", {"texts": ["a"], "programs": "x"}, "retrieval_pool must hold"),
    ("hidden", 0, "is not a value train.py takes"), ("model", "gpt", "is not a value train.py takes"),
])
def test_a_stored_seq2seq_config_train_py_would_refuse_is_one_line(tmp_path, field_name, value, needle):
    """evaluate.py on a checkpoint whose model_config held an empty retrieval pool gave a KeyError traceback; a
    retrieve of 10**12 would have retrieved the whole pool for every problem. Checked as train.py's flags are."""
    from common.checkpoint import save_checkpoint
    from common.errors import UserError
    from text2math.evaluate import load_model

    model = _untrained(load_mathqa("generated", None, seed=0, n_generated=40).train)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model_config": {**model.config.to_dict(), field_name: value}, "model": model.state_dict()})
    with pytest.raises(UserError, match=needle) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path} does not hold a text2math/train.py model")
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model": model.state_dict()})
    assert load_model(path)[0].config == model.config
