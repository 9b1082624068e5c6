"""Retrieval augmentation (--retrieve K): neighbours come from the training pool only (a training problem
never retrieves itself, evaluation problems are never in the pool), the copy mixture is a distribution,
decoded programs still all run, evaluate.py reuses the stored pool; --number-index and --fit-check."""
import json

import pytest
import torch

from common.errors import UserError
from text2math.data import Problem, generated_rows, problem_from_row
from text2math.evaluation import decode, score_predictions
from text2math.model import Seq2Seq, Seq2SeqConfig
from text2math.pointer import MAX_NUMBERS
from text2math.retrieval import RetrievalPool, RetrievedCopy, retrieved_tensor
from text2math.train import main
from text2math.vocab import encode_sources, target_vocab


def _problem(text, program):
    return Problem(text, [3.0, 4.0], program.split(), [], "", "")


POOL = [_problem("a train runs n0 km in n1 hours", "divide n0 n1 |"),
        _problem("a train runs n0 km in n1 hours", "multiply n0 n1 |"),       # the same text, another program
        _problem("find the area of a circle of radius n0", "circle_area n0 |"),
        _problem("what is n0 % of n1", "multiply n0 n1 | divide #0 const_100 |")]


def test_a_training_problem_never_retrieves_itself_but_finds_its_duplicate():
    pool = RetrievalPool.from_problems(POOL)
    found = pool.neighbours([p.text for p in POOL], k=2, exclude_self=True)
    assert all(i not in row for i, row in enumerate(found))
    assert found[0][0] == 1 and found[1][0] == 0            # the duplicate text, not itself
    assert pool.neighbours([POOL[2].text], k=1) == [[2]]     # a query outside the pool may match anything


def test_retrieved_tensor_holds_the_neighbours_programs():
    vocab = target_vocab(POOL)
    pool = RetrievalPool.from_problems(POOL)
    ids = retrieved_tensor(pool, ["the area of a circle of radius n0 ?"], vocab, k=1)
    tokens = [vocab[i] for i in ids[0].tolist() if i]
    assert tokens == ["circle_area", "n0", "|", "<eos>"]
    two = retrieved_tensor(pool, [p.text for p in POOL], vocab, k=2, exclude_self=True)
    assert two.shape[0] == 4 and (two != 0).sum(1).min() >= 2 and (two == vocab.index("<eos>")).sum(1).eq(2).all()


def test_copy_mixture_is_a_distribution_and_keeps_missing_numbers_out():
    torch.manual_seed(0)
    logits = torch.randn(3, 10)
    logits[:, 4] = float("-inf")                             # a number this problem lacks
    weights = torch.softmax(torch.randn(3, 5), -1)
    ids = torch.tensor([[5, 6, 4, 7, 5]] * 3)               # the retrieved program names that number
    gate = torch.tensor([[0.0], [0.5], [1.0]])
    mixed = RetrievedCopy.mix(logits, weights, gate, ids)
    assert torch.isneginf(mixed[:, 4]).all()
    probs = mixed.exp()
    lost = (1 - gate[:, 0]) * weights[:, 2]                   # the copy mass put on the missing number
    assert torch.allclose(probs.sum(-1) + lost, torch.ones(3), atol=1e-4)
    assert probs[0, 5] == pytest.approx(float(weights[0, 0] + weights[0, 4]), abs=1e-5)   # gate 0: pure copy
    assert torch.allclose(probs[2], logits[2].softmax(-1), atol=1e-5)                       # gate 1: pure generation


@pytest.mark.parametrize("model", ["glove_lstm", "glove_attention"])
def test_random_retrieval_models_decode_only_programs_that_run(model):
    torch.manual_seed(3)
    rows = generated_rows(24, seed=5)
    problems = [problem_from_row(r, f"row {i}") for i, r in enumerate(rows)]
    train, test = problems[:16], problems[16:]
    words = ["<pad>", "<unk>", "what", "is", "of", *(f"n{i}" for i in range(6))]
    pool = RetrievalPool.from_problems(train)
    config = Seq2SeqConfig(model, target_vocab(train), words, emb_dim=8, hidden=16, dropout=0.0, number_index=True,
                           retrieve=2, retrieval_pool=pool.to_dict())
    net = Seq2Seq(config).eval()
    with torch.no_grad():     # lean hard on copying: the retrieved programs name numbers some problems lack
        net.decoder.retrieval.gate.bias.fill_(-6.0)
    src, mask, numbers = encode_sources(test, words, None, 60)
    retrieved = retrieved_tensor(pool, [p.text for p in test], config.tgt_vocab, 2)
    tensors = (src, mask, numbers, torch.zeros(len(test), 2, dtype=torch.long), retrieved)
    for beam in (1, 3):
        found = decode(net, tensors, test, config, beam=beam, max_len=24)
        assert score_predictions(found, test, config, 0.02)["runs"] == 1.0
    with pytest.raises(ValueError, match="retrieve"):
        net.start(src, mask, numbers)


def _rows_with_marker(n, seed, marker):
    rows = generated_rows(n, seed=seed)
    for row in rows:
        row["Problem"] = f"{marker} {row['Problem']}"
    return rows


@pytest.fixture(scope="module")
def retrieval_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieve")
    train = root / "train.json"
    test = root / "test.json"
    train.write_text(json.dumps(_rows_with_marker(50, 3, "trainonly")))
    test.write_text(json.dumps(_rows_with_marker(8, 4, "evalonly")))
    out = root / "run"
    summary = main(["--smoke", "--out", str(out), "--wandb", "off", "--train-file", str(train), "--eval-file",
                    str(test), "--retrieve", "2", "--beam-sizes", "1", "2"])
    return summary, out, test


def test_retrieval_pool_is_the_training_part_only(retrieval_run):
    summary, out, _ = retrieval_run
    config = torch.load(out / "best.pt", weights_only=True)["model_config"]
    pool = config["retrieval_pool"]
    assert config["retrieve"] == 2 and len(pool["texts"]) == summary["n_train"]       # validation not in it
    assert all(t.startswith("trainonly") for t in pool["texts"])                     # nothing from the eval file
    assert summary["beams"]["1"]["runs"] == 1.0 == summary["beams"]["2"]["runs"]
    assert "retrieval_pool" not in summary["model_config"]


def test_evaluate_command_uses_the_stored_pool(retrieval_run, tmp_path):
    from text2math.evaluate import main as evaluate_main

    summary, out, test = retrieval_run
    result = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path)])
    assert result["beams"]["1"]["exec_acc"] == pytest.approx(summary["beams"]["1"]["exec_acc"])
    assert result["beams"]["1"]["runs"] == 1.0


def test_rerank_command_refits_the_runs_reranker(retrieval_run, tmp_path):
    from text2math.rerank import main as rerank_main

    summary, out, _ = retrieval_run
    result = rerank_main(["--checkpoint", str(out), "--out", str(tmp_path / "rerank.json")])
    assert summary["rerank"] is not None and result["runs"] == 1.0
    for key in ("exec_acc", "option_acc", "oracle", "candidates"):            # the same split, model and fit
        assert result[key] == pytest.approx(summary["rerank"][key])
    assert result["reranker"]["weights"] == pytest.approx(
        json.loads((out / "reranker.json").read_text())["reranker"]["weights"])


def test_rerank_command_keeps_the_runs_reranker_and_evaluate_applies_either(retrieval_run, tmp_path):
    """rerank.py replaced the run's reranker.json (train.py's), so `rerank.py --no-options` changed what evaluate.py
    applied from then on, silently. It writes its reranker to its --out only; evaluate.py --reranker applies it."""
    from text2math.evaluate import main as evaluate_main
    from text2math.rerank import main as rerank_main

    summary, out, test = retrieval_run
    before = (out / "reranker.json").read_bytes()
    other = rerank_main(["--checkpoint", str(out), "--out", str(tmp_path / "other.json"), "--no-options"])
    assert (out / "reranker.json").read_bytes() == before and other["options"] is False
    runs = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path)])
    refit = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path),
                           "--reranker", str(tmp_path / "other.json")])
    assert runs["rerank"]["options"] is True and refit["rerank"]["options"] is False
    for argv, needle in ((["--reranker", str(tmp_path)], "is a directory, not a file"),
                         (["--reranker", str(tmp_path / "none.json")], "no such file"),
                         (["--reranker", str(tmp_path / "other.json"), "--no-rerank"], "drop one")):
        with pytest.raises(UserError, match=needle):
            evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), *argv])
    with pytest.raises(UserError, match="must end in .json"):
        rerank_main(["--checkpoint", str(out), "--out", str(tmp_path)])


@pytest.mark.slow
def test_number_index_flag_and_fit_check(tmp_path):
    main(["--smoke", "--out", str(tmp_path / "on"), "--wandb", "off", "--model", "glove_attention"])
    main(["--smoke", "--out", str(tmp_path / "off"), "--wandb", "off", "--model", "glove_attention",
          "--no-number-index", "--fit-check", "0"])
    on = torch.load(tmp_path / "on" / "best.pt", weights_only=True)["model"]
    off = torch.load(tmp_path / "off" / "best.pt", weights_only=True)["model"]
    assert on["decoder.pointer.index.weight"].shape[0] == MAX_NUMBERS and "decoder.pointer.index.weight" not in off
    records = [json.loads(line) for line in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["fit_exec_acc"] <= 1 and 0 <= r["fit_exact_match"] <= 1 for r in records)
    records = [json.loads(line) for line in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert all("fit_exec_acc" not in r for r in records)


def test_evaluate_says_how_many_problems_the_run_trained_on(retrieval_run, tmp_path, capsys):
    """evaluate.py on a file holding the run's own training problems (dev.json whole, say) reported their figures as
    if held out. It counts them (the texts of the model's retrieval pool), says so, and records n_seen."""
    from text2math.evaluate import main as evaluate_main

    _, out, test = retrieval_run
    train = test.parent / "train.json"
    held_out = evaluate_main(["--checkpoint", str(out), "--eval-file", str(test), "--out", str(tmp_path)])
    assert held_out["n_seen"] == 0 and "note:" not in capsys.readouterr().out
    rows = json.loads(train.read_text())[:5]
    pool = set(torch.load(out / "best.pt", weights_only=True)["model_config"]["retrieval_pool"]["texts"])
    trained_on = sum(problem_from_row(row, "row").text in pool for row in rows)   # the validation part is not
    assert trained_on >= 3
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(rows + json.loads(test.read_text())))
    result = evaluate_main(["--checkpoint", str(out), "--eval-file", str(mixed), "--out", str(tmp_path)])
    assert result["n_seen"] == trained_on and result["n"] == 13
    assert (f"note: {trained_on} of the 13 problems in {mixed} are among this run's training problems"
            in capsys.readouterr().out)
