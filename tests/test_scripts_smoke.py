"""Every train.py, launched as a user launches it, with --smoke: it must write every artefact."""
import json

import pytest

from tests.conftest import REPO, run_script

TRAIN_SCRIPTS = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("*/train.py"))
ARTEFACTS = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt")


def test_there_are_scripts_to_check():
    assert "mnist_scratch/train.py" in TRAIN_SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_smoke_run_writes_every_artefact_from_another_directory(script, tmp_path):
    out = tmp_path / "run"
    done = run_script(str(REPO / script), "--smoke", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ARTEFACTS:
        assert (out / name).stat().st_size > 0, name
    assert list(out.glob("*.png")), "a smoke run writes its plots too"
    config = json.loads((out / "config.json").read_text())
    assert config["data_source"] and config["args"]["smoke"] is True
    assert json.loads((out / "summary.json").read_text())["data_source"] == config["data_source"]


@pytest.mark.slow
@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_unknown_flag_is_one_line(script):
    done = run_script(script, "--no-such-flag")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unrecognized arguments: --no-such-flag" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_help_lists_the_shared_flags(script):
    done = run_script(script, "--help")
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-root", "--data", "--out",
                 "--wandb", "--resume", "--smoke"):
        assert flag in done.stdout, flag
