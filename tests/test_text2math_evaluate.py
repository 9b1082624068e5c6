"""--train-file / --eval-file, early stopping's bookkeeping, the frozen encoder's small checkpoint, and
the evaluate-only command on a saved checkpoint."""
import json

import pytest
import torch

from common.errors import UserError
from tests.conftest import REPO, run_script
from text2math.data import generated_rows
from text2math.train import is_best, main, stale_epochs


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke run trained on one file and evaluated on another."""
    root = tmp_path_factory.mktemp("evalfile")
    train = _write(root / "mine_train.json", generated_rows(60, seed=3))
    test = _write(root / "challenge_test.json", generated_rows(9, seed=4))
    out = root / "run"
    summary = main(["--smoke", "--out", str(out), "--train-file", str(train), "--eval-file", str(test),
                    "--beam-sizes", "1", "2"])
    return summary, out, test


def test_train_on_one_file_and_evaluate_on_another(trained):
    summary, out, _ = trained
    assert summary["n_test"] == 9 and summary["n_train"] + summary["n_val"] == 60
    assert "challenge_test.json" in summary["data_source"]
    for name in ("best.pt", "checkpoint.pt", "predictions.jsonl"):
        assert (out / name).stat().st_size > 0
    assert {"exec_acc", "exec_gold", "option_acc", "runs"} <= set(summary["beams"]["2"])
    assert summary["beams"]["1"]["runs"] == 1.0 == summary["beams"]["2"]["runs"]   # every program runs


@pytest.mark.parametrize("content, needle", [(None, "no such file"), ("{\"a\": 1}", "no list of problems"),
                                             ("[{\"Problem\": \"x\"}]", "missing field")])
def test_a_bad_eval_file_is_one_user_error(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=needle) as caught:
        main(["--smoke", "--out", str(tmp_path / "run"), "--eval-file", str(path)])
    assert "\n" not in str(caught.value)


def test_without_a_validation_part_the_last_epoch_is_evaluated(tmp_path, capsys):
    """--val-fraction 0 trained every epoch but evaluated epoch 1's weights: with no validation figure every epoch
    tied and the first stayed 'best'. The last epoch's weights are evaluated now, and no best.pt is written."""
    summary = main(["--smoke", "--out", str(tmp_path / "run"), "--val-fraction", "0", "--epochs", "2",
                    "--patience", "1"])
    assert summary["n_val"] == 0 and summary["best_epoch"] == 2 and summary["rerank"] is None
    assert not (tmp_path / "run" / "best.pt").exists()
    assert "(weights of epoch 2, the last: no validation part)" in capsys.readouterr().out


def test_early_stopping_bookkeeping():
    records = [{"val_exec_acc": 0.1, "val_loss": 2.0}, {"val_exec_acc": 0.3, "val_loss": 1.5},
               {"val_exec_acc": 0.3, "val_loss": 1.6}, {"val_exec_acc": 0.2, "val_loss": 1.0}]
    assert stale_epochs(records) == 2 and stale_epochs(records[:2]) == 0 and stale_epochs([]) == 0
    assert is_best(records, {"val_exec_acc": 0.3, "val_loss": 1.4})      # ties broken by the lower loss
    assert not is_best(records, {"val_exec_acc": 0.3, "val_loss": 1.5})


@pytest.mark.slow
def test_evaluate_command_on_a_saved_checkpoint(trained, tmp_path):
    _, out, test = trained
    done = run_script(str(REPO / "text2math/evaluate.py"), "--checkpoint", str(out), "--eval-file", str(test),
                      "--beam-sizes", "1", "2", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "evaluation_challenge_test.json").read_text())
    assert result["n"] == 9 and result["beams"]["1"]["runs"] == 1.0
    assert (tmp_path / "predictions_challenge_test.jsonl").read_text().count("\n") == 9
    bad = run_script(str(REPO / "text2math/evaluate.py"), "--checkpoint", str(out), "--eval-file",
                     str(tmp_path / "missing.json"), cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr


def test_frozen_encoder_checkpoint_holds_only_trained_parts():
    from transformers import BertConfig, BertModel

    from text2math.model import SPECIALS, Seq2Seq, Seq2SeqConfig
    from text2math.pointer import MAX_NUMBERS

    vocab = [*SPECIALS, *(f"n{i}" for i in range(MAX_NUMBERS)), "add", "|"]
    trunk = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    config = Seq2SeqConfig("bert_frozen", vocab, bert="tiny", emb_dim=8, hidden=12)
    model = Seq2Seq(config, trunk)
    state = model.state_dict()
    assert state and not any(k.startswith("encoder.trunk.") for k in state)
    other = Seq2Seq(config, trunk)
    other.load_state_dict(state)                                   # strict: the trunk comes from the package
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())


def test_nearest_neighbour_reference_on_two_files(tmp_path):
    from text2math.knn import main as knn_main

    train = _write(tmp_path / "train.json", generated_rows(80, seed=5))
    test = _write(tmp_path / "test.json", generated_rows(20, seed=6))
    scores = knn_main(["--train-file", str(train), "--eval-file", str(test), "--k", "5",
                       "--out", str(tmp_path / "knn")])
    assert scores["n_test"] == 20 and scores["option_acc"] >= scores["exec_acc"] > 0.5   # templates repeat
    assert json.loads((tmp_path / "knn" / "summary.json").read_text())["k"] == 5


@pytest.mark.slow
def test_rerank_with_retrieved_programs(trained, tmp_path):
    from text2math.rerank import main as rerank_main

    _, out, _ = trained
    result = rerank_main(["--checkpoint", str(out), "--beam", "2", "--k", "2", "--out", str(tmp_path / "rerank.json")])
    assert result["n"] > 0 and result["runs"] == 1.0 and 0 <= result["exec_acc"] <= result["option_acc"] + 1
    assert json.loads((tmp_path / "rerank.json").read_text())["k"] == 2


def test_a_checkpoint_from_before_number_index_still_loads(tmp_path):
    """Checkpoints written before --number-index existed have no such config field: they load without it."""
    from common.checkpoint import save_checkpoint
    from text2math.evaluate import load_model
    from text2math.model import SPECIALS, Seq2Seq, Seq2SeqConfig
    from text2math.pointer import MAX_NUMBERS

    vocab = [*SPECIALS, *(f"n{i}" for i in range(MAX_NUMBERS)), "add", "|"]
    config = Seq2SeqConfig("glove_lstm", vocab, ["<pad>", "<unk>", "a"], emb_dim=8, hidden=12, number_index=False)
    values = {k: v for k, v in config.to_dict().items() if k != "number_index"}
    save_checkpoint(tmp_path / "best.pt", {"model": Seq2Seq(config).state_dict(), "model_config": values})
    model, tokenizer = load_model(tmp_path / "best.pt")
    assert model.config.number_index is False and tokenizer is None
