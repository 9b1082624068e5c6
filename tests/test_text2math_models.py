"""Every text2math model variant end to end under --smoke (the BERT ones through a tiny, randomly
initialised BertConfig and a WordPiece vocabulary written here), GloVe loading, and --resume."""
import json

import pytest
import torch

from common.errors import UserError
from common.schedules import SCHEDULES
from text2math.model import MODELS, Seq2SeqConfig
from text2math.program import ExecutionError, canonical, execute, matches
from text2math.train import RECIPE, build_parser, main, parse

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "of", "a", "the", "n", "##0", "##1", "##2",
         "%", "?", ".", "train", "speed", "area", "find", "km", "in", "hours", "rs", "and", "##s"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=160)).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def _run(tmp_path, *flags):
    out = tmp_path / "run"
    summary = main(["--smoke", "--out", str(out), "--wandb", "off", *flags])
    return summary, out


def _check_scores_against_predictions(summary: dict, path) -> None:
    """The summary's beam-1 scores, recomputed from predictions.jsonl with the executor alone."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == summary["n_test"] > 0
    exact = sum(canonical(r["predicted"]) == canonical(r["gold"]) for r in rows)
    runs = correct = 0
    for r in rows:
        try:
            value = execute(r["predicted"], r["numbers"])
        except ExecutionError:
            continue
        runs += 1
        correct += matches(value, [execute(r["gold"], r["numbers"])], summary["tolerance"])
    beam1 = summary["beams"]["1"]
    assert summary["exact_match"] == beam1["exact_match"] == pytest.approx(exact / len(rows))
    assert beam1["runs"] == pytest.approx(runs / len(rows))
    assert summary["exec_acc"] == beam1["exec_acc"] == pytest.approx(correct / len(rows))


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_variant_smoke(model, tmp_path, tiny_bert):
    flags = ["--model", model, "--beam-sizes", "1", "3"]
    flags += ["--bert", str(tiny_bert)] if "bert" in model else []
    flags += ["--bert-lr", "1e-2"] if model == "bert_finetuned" else []
    summary, out = _run(tmp_path, *flags)
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png", "predictions.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert set(summary["beams"]) == {"1", "3"}
    _check_scores_against_predictions(summary, out / "predictions.jsonl")
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["model_config"]["model"] == model and checkpoint["model_config"]["tgt_vocab"][:4] == [
        "<pad>", "<sos>", "<eos>", "<unk>"]
    if "bert" in model:  # the frozen encoder is not saved (its package rebuilds it); the fine-tuned one moves
        from transformers import AutoModel

        trunk_keys = [k for k in checkpoint["model"] if k.startswith("encoder.trunk.")]
        if MODELS[model].freeze_encoder:
            assert trunk_keys == [] and (out / "best.pt").exists()
        else:
            original = AutoModel.from_pretrained(tiny_bert).state_dict()["encoder.layer.0.attention.self.query.weight"]
            trained = checkpoint["model"]["encoder.trunk.encoder.layer.0.attention.self.query.weight"]
            assert not torch.equal(trained, original)


def test_glove_file_initialises_the_embeddings(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("what " + " ".join(["0.5"] * 6) + "\nis " + " ".join(["-0.25"] * 6) + "\n")
    _, out = _run(tmp_path, "--model", "glove_lstm", "--glove", str(glove), "--lr", "1e-9")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    words = state["model_config"]["src_vocab"]
    embedding = state["model"]["encoder.embedding.weight"]
    assert embedding.shape[1] == 6 and state["model_config"]["emb_dim"] == 6
    assert torch.allclose(embedding[words.index("what")], torch.full((6,), 0.5), atol=1e-4)


@pytest.mark.slow
def test_resume_gives_the_same_metrics_as_one_run(tmp_path):
    flags = ["--model", "glove_attention", "--teacher-forcing", "0.5"]
    whole, whole_out = _run(tmp_path / "whole", *flags, "--epochs", "2")
    _run(tmp_path / "split", *flags, "--epochs", "1")
    resumed, split_out = _run(tmp_path / "split", *flags, "--epochs", "2", "--resume")
    records = [[json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
               for out in (whole_out, split_out)]
    for a, b in zip(*records):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
    assert whole["exec_acc"] == resumed["exec_acc"]
    # the LR after each epoch (cosine_floor over --epochs); the resumed epoch follows this run's 2-epoch curve,
    # not the 1-epoch run's, whose LR had reached its floor
    lr = RECIPE["lr"]
    assert [r["lr"] for r in records[0]] == pytest.approx([lr * SCHEDULES["cosine_floor"](e, 2) for e in (1, 2)])
    assert records[1][0]["lr"] == pytest.approx(lr * 0.05) and records[1][1]["lr"] == records[0][1]["lr"]


def test_bad_teacher_forcing_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(tmp_path, "--teacher-forcing", "1.5")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--teacher-forcing: expected a number from 0 to 1, got 1.5" in err


def test_model_flags_default_to_the_config_dataclass(tmp_path):
    """One source of defaults: --hidden-size, --emb-dim, --dropout and --number-index read Seq2SeqConfig's, the
    rest of the headline recipe (model, epochs, batch, lr, teacher forcing, --retrieve, the reranker) RECIPE's;
    --smoke shrinks the model in parse()."""
    parser = build_parser()
    defaults = Seq2SeqConfig.__dataclass_fields__
    for flag, field in [("hidden_size", "hidden"), ("emb_dim", "emb_dim"), ("dropout", "dropout"),
                        ("number_index", "number_index")]:
        assert parser.get_default(flag) == defaults[field].default
    assert all(parser.get_default(flag) == value for flag, value in RECIPE.items())
    args = parse(["--smoke", "--out", str(tmp_path / "run"), "--wandb", "off"])
    assert (args.epochs, args.hidden_size, args.emb_dim, args.glove, args.bert) == (2, 16, 16, None, None)


@pytest.mark.parametrize("flags, named", [
    (["--model", "bert_frozen", "--glove", "glove.txt"], "--glove"),
    (["--model", "glove_lstm", "--bert-layers", "2"], "--bert-layers"),
    (["--model", "glove_attention", "--bert", "bert-base-uncased"], "--bert"),
])
def test_a_flag_of_the_other_encoder_is_refused(tmp_path, flags, named):
    with pytest.raises(UserError, match=named):
        parse(["--smoke", "--out", str(tmp_path / "run"), "--wandb", "off", *flags])


@pytest.mark.parametrize("model", ["glove_lstm", "glove_attention", "bert_frozen"])
def test_bert_lr_is_refused_where_no_bert_is_fine_tuned(model, tmp_path):
    """--bert-lr was accepted, recorded and ignored by the three models that fine-tune no BERT."""
    from common.errors import UserError
    from text2math.train import parse

    with pytest.raises(UserError, match=f"--bert-lr: --model {model} fine-tunes no BERT"):
        parse(["--model", model, "--bert-lr", "1e-3", "--out", str(tmp_path / "r")])
    assert parse(["--model", model, "--out", str(tmp_path / "r")]).bert_lr is None


def test_bert_lr_of_the_fine_tuned_model(tmp_path):
    from text2math.train import BERT_LR, parse

    out = ["--model", "bert_finetuned", "--out", str(tmp_path / "r")]
    assert (parse(out).bert_lr, parse([*out, "--bert-lr", "1e-3"]).bert_lr) == (BERT_LR, 1e-3)


def test_a_run_recorded_with_bert_lr_before_it_was_refused_still_resumes(tmp_path):
    """Runs written before --bert-lr applied to bert_finetuned only recorded 5e-05 for every model; resuming one
    must not ask for a flag that is now refused."""
    import json

    from text2math.train import main

    out = tmp_path / "run"
    main(["--smoke", "--epochs", "1", "--out", str(out), "--threads", "1"])
    config = json.loads((out / "config.json").read_text())
    config["args"]["bert_lr"] = 5e-05
    (out / "config.json").write_text(json.dumps(config))
    summary = main(["--smoke", "--epochs", "2", "--resume", "--out", str(out), "--threads", "1"])
    assert summary["epochs"] == 2


def test_a_damaged_feature_cache_is_computed_again(tmp_path, capsys):
    """runs/text2math/feature_cache keeps a frozen encoder's outputs between runs: a cache file cut short was a
    'corrupt checkpoint' error that stopped the run, one without its tensor a KeyError traceback, one of another
    shape broke training later. Each is computed again now (and replaced); a sound one is reused."""
    from types import SimpleNamespace

    from common.checkpoint import save_checkpoint
    from text2math.train import cache_features

    calls = []

    def features(ids, mask):
        calls.append(len(ids))
        return torch.ones(*ids.shape, 4)

    model = SimpleNamespace(config=SimpleNamespace(bert="tiny", bert_layers=None), eval=lambda: None,
                            encoder=SimpleNamespace(out_dim=4, features=features))
    ids, mask = torch.arange(12).reshape(3, 4), torch.ones(3, 4, dtype=torch.long)
    first = cache_features(model, ids, mask, "cpu", quiet=True, cache_dir=tmp_path)
    (path,) = tmp_path.glob("features_*.pt")
    assert first.shape == (3, 4, 4) and calls == [3]
    assert torch.equal(cache_features(model, ids, mask, "cpu", quiet=True, cache_dir=tmp_path), first)
    assert calls == [3]                                          # reused
    for damage in (lambda: path.write_bytes(path.read_bytes()[:50]), lambda: save_checkpoint(path, {"x": 1}),
                   lambda: save_checkpoint(path, {"features": torch.zeros(2, 4, 4, dtype=torch.float16)})):
        damage()
        again = cache_features(model, ids, mask, "cpu", quiet=True, cache_dir=tmp_path)
        assert torch.equal(again, first) and "computing them again" in capsys.readouterr().out
    assert len(calls) == 4
    assert torch.equal(cache_features(model, ids, mask, "cpu", quiet=True, cache_dir=tmp_path), first)   # replaced
    assert len(calls) == 4
