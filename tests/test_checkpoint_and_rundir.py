"""Checkpoints (atomic, weights_only) and the run directory's rules."""
import argparse
import json

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import UserError
from common.rundir import RunDir


def test_numpy_state_round_trips_exactly(tmp_path):
    state = {"epoch": 3, "model": {"0.w": np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)},
             "optimizer": {"0.w": {"m": np.ones(2), "t": 5, "mu_product": 0.81}}}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt", as_numpy=True)
    np.testing.assert_array_equal(back["model"]["0.w"], state["model"]["0.w"])
    assert back["optimizer"]["0.w"]["t"] == 5 and back["epoch"] == 3


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})

    def crash(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_load_uses_weights_only(tmp_path):
    torch.save({"model": argparse.Namespace(a=1)}, tmp_path / "unsafe.pt")  # an arbitrary object
    with pytest.raises(UserError, match="corrupt checkpoint"):
        load_checkpoint(tmp_path / "unsafe.pt")


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(100)})
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="corrupt checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def _args(out, **overrides):
    values = dict(out=out, assignment="demo", wandb="off", resume=False, overwrite=False, lr=0.1, epochs=3,
                  seed=0, device="cpu", data_root=out, smoke=False)
    return argparse.Namespace(**{**values, **overrides})


def test_rundir_writes_config_and_refuses_to_clobber(tmp_path):
    run = RunDir(_args(tmp_path / "r"), data_source="generated: x")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["data_source"] == "generated: x" and config["args"]["lr"] == 0.1
    assert {"git_commit", "hardware", "command"} <= set(config)
    run.log({"epoch": 1, "loss": 2.0})
    with pytest.raises(UserError, match="already holds a run: add --resume"):
        RunDir(_args(tmp_path / "r"), data_source="generated: x")
    assert run.metrics() == [{"epoch": 1, "loss": 2.0}]  # nothing lost


def test_resume_with_other_flags_is_refused(tmp_path):
    RunDir(_args(tmp_path / "r"), data_source="g")
    with pytest.raises(UserError, match=r"--lr 0.1 \(now 0.5\)"):
        RunDir(_args(tmp_path / "r", lr=0.5, resume=True), data_source="g")


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    run = RunDir(_args(tmp_path / "r"), data_source="g")
    for epoch in (1, 2, 3):
        run.log({"epoch": epoch})
    run.save_checkpoint({"epoch": 2})
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    assert resumed.resume_state()["epoch"] == 2
    assert [r["epoch"] for r in resumed.metrics()] == [1, 2]
