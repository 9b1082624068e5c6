"""Issue 17's run-level probes over every train.py (in-process, --smoke): a foreign or mismatched checkpoint,
a kill between the first metrics line and the first checkpoint, an --out that cannot be a folder, a negative
seed. Each is one clear error with nothing of the earlier run touched, or a clean continuation."""
from __future__ import annotations

import importlib
import json
import shutil

import pytest

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import UserError
from common.rundir import read_metrics
from tests.conftest import REPO

SCRIPTS = sorted(p.parent.name for p in REPO.glob("*/train.py"))


def _main(folder: str):
    return importlib.import_module(f"{folder}.train").main


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def _first_run(folder: str, out) -> None:
    """A finished two-epoch smoke run to resume from."""
    _main(folder)(["--smoke", "--epochs", "2", "--out", str(out)])
    assert (out / "checkpoint.pt").exists()


def _foreign(out) -> None:
    save_checkpoint(out / "checkpoint.pt", {"foo": 1})


def _other_model(out) -> None:
    state = load_checkpoint(out / "checkpoint.pt")
    weights = {f"other.{i}": value for i, value in enumerate(state["model"].values())}  # same data, other names
    save_checkpoint(out / "checkpoint.pt", {**state, "model": weights})


def _spoiled(**fields):
    """A spoiler that overwrites the checkpoint's `fields` (its bookkeeping, not its weights)."""
    def spoil(out) -> None:
        save_checkpoint(out / "checkpoint.pt", {**load_checkpoint(out / "checkpoint.pt"), **fields})
    return spoil


@pytest.mark.slow
@pytest.mark.parametrize("folder", SCRIPTS)
def test_resume_probes(folder, tmp_path):
    """From one finished two-epoch run, on copies of it: (a) a foreign checkpoint and (b) another model's
    checkpoint are one line each with every file untouched (defect 3), and so are a negative epoch, a training
    time that is text and an optimizer state that is a number or another optimizer's (each gave a ValueError,
    TypeError or AttributeError traceback); (c) killed after the first metrics line and before the first
    checkpoint, --resume holds each epoch once: 1, 2, not 1, 1, 2 (defect 2)."""
    first = tmp_path / "first"
    _first_run(folder, first)
    for name, spoil, message in (("foreign", _foreign, "not a checkpoint of this script"),
                                 ("other_model", _other_model, "does not fit"),
                                 ("negative_epoch", _spoiled(epoch=-5), "holds no valid epoch number \\(-5\\)"),
                                 ("text_time", _spoiled(elapsed="x"), "holds no valid training time \\(x\\)"),
                                 ("number_optimizer", _spoiled(optimizer=5), "optimizer: not a state dict"),
                                 ("other_optimizer", _spoiled(optimizer={"foo": 1}), "does not fit")):
        out = tmp_path / name
        shutil.copytree(first, out)
        spoil(out)
        before = _snapshot(out)
        with pytest.raises(UserError, match=message) as info:
            _main(folder)(["--smoke", "--epochs", "3", "--resume", "--out", str(out)])
        assert "\n" not in str(info.value), name
        assert _snapshot(out) == before, name
    out = tmp_path / "killed"
    shutil.copytree(first, out)
    (out / "checkpoint.pt").unlink()
    (out / "summary.json").unlink()
    (out / "metrics.jsonl").write_text(json.dumps(read_metrics(first)[0]) + "\n")
    _main(folder)(["--smoke", "--epochs", "2", "--resume", "--out", str(out)])
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


@pytest.mark.parametrize("folder", SCRIPTS)
@pytest.mark.parametrize("argv, message", [(["--seed", "-1"], "a seed from 0 to"), (["--threads", "0"], "positive")])
def test_bad_shared_flags_are_one_line(folder, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        _main(folder)(["--smoke", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("folder", SCRIPTS)
def test_an_out_that_is_a_file_is_one_line(folder, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        _main(folder)(["--smoke", "--out", str(tmp_path / "taken" / "run")])
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_sample_script_out_that_is_a_file_is_one_line(tmp_path):
    from sketch_rnn import sample

    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        sample.main(["--smoke", "--out", str(tmp_path / "taken")])
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_a_stale_or_damaged_recognizer_cache_is_retrained(tmp_path):
    """sketch_rnn keeps its recognizer in the run folder as a cache: an old-format or damaged file is replaced."""
    from sketch_rnn import train

    out = tmp_path / "run"
    train.main(["--smoke", "--out", str(out)])
    save_checkpoint(out / "recognizer.pt", {"config": {"classes": []}, "model": {}})   # the format before 2026-12
    train.main(["--smoke", "--epochs", "3", "--resume", "--out", str(out)])
    assert "model_config" in load_checkpoint(out / "recognizer.pt")
