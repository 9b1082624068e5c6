"""Checkpoints (atomic, weights_only) and the run directory's rules."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import UserError
from common.rundir import RunDir, read_metrics


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
    with pytest.raises(UserError, match="refused checkpoint .* holds argparse.Namespace, not only tensors") as info:
        load_checkpoint(tmp_path / "unsafe.pt")
    assert "weights_only=False" not in str(info.value) and "trust" not in str(info.value)


def test_a_file_that_is_no_checkpoint_is_called_corrupt_without_torchs_advice(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"corrupt checkpoint .*bad.pt \(Unsupported operand") as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


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
    assert not (tmp_path / "r").exists()                      # nothing written before the run's first write
    run.log({"epoch": 1, "loss": 2.0})
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["data_source"] == "generated: x" and config["args"]["lr"] == 0.1
    assert {"git_commit", "hardware", "command"} <= set(config)
    with pytest.raises(UserError, match="already holds a run: add --resume"):
        RunDir(_args(tmp_path / "r"), data_source="generated: x")
    assert run.metrics() == [{"epoch": 1, "loss": 2.0}]  # nothing lost


def test_a_smoke_run_replaces_an_earlier_smoke_run_and_never_a_real_one(tmp_path):
    """--smoke set --overwrite, so `--smoke --out <a finished real run>` deleted that run's checkpoint, metrics and
    summary and wrote the smoke run's over its plots. A --smoke run now replaces only an earlier --smoke run (or
    an empty folder); a real run, or files of something else, are refused in one line and kept."""
    smoke = RunDir(_args(tmp_path / "s", smoke=True), data_source="g")
    smoke.log({"epoch": 1})
    again = RunDir(_args(tmp_path / "s", smoke=True), data_source="g")      # the smoke command run again
    again.log({"epoch": 1, "again": True})
    assert read_metrics(tmp_path / "s") == [{"epoch": 1, "again": True}]
    real = RunDir(_args(tmp_path / "r"), data_source="g")
    real.log({"epoch": 1})
    real.save_checkpoint({"epoch": 1, "model": {}})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for out, needle in ((tmp_path / "r", "holds a run that is not a --smoke run"),
                        (tmp_path / "mine", "holds files but no run of this project")):
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        with pytest.raises(UserError, match=needle + "; a --smoke run replaces only an earlier --smoke run"):
            RunDir(_args(out, smoke=True), data_source="g")
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    forced = RunDir(_args(tmp_path / "r", smoke=True, overwrite=True), data_source="g")   # asked for: replaced
    forced.log({"epoch": 1, "smoke": True})
    assert read_metrics(tmp_path / "r") == [{"epoch": 1, "smoke": True}]


def test_resume_on_other_data_is_refused_and_a_moved_data_folder_is_not(tmp_path):
    """--data auto reads the real data once --data-root holds them: a run begun on the embedded stand-in and resumed
    with the real data beside it went on training there, its config.json then naming the real data for the whole
    run (measured: mnist_scratch epoch 1 on the digits, epoch 2 on MNIST). Refused now, naming both."""
    real = "real: MNIST (60,000 train / 10,000 test) from /data/MNIST/raw"
    run = RunDir(_args(tmp_path / "r"), data_source="embedded: scikit-learn digits (1,797 scans)")
    run.log({"epoch": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(UserError, match="it was trained on embedded: scikit-learn digits and would go on with "
                                        "real: MNIST .*start over with --overwrite"):
        RunDir(_args(tmp_path / "r", resume=True), data_source=real)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    moved = RunDir(_args(tmp_path / "m"), data_source=real)
    moved.log({"epoch": 1})
    RunDir(_args(tmp_path / "m", resume=True), data_source=real.replace("/data/", "/elsewhere/data/"))   # fine
    with pytest.raises(UserError, match=r"trained on real: MNIST \(60,000 train / 10,000 test\) and would go on "
                                        r"with real: MNIST \(6,000 train"):
        RunDir(_args(tmp_path / "m", resume=True), data_source="real: MNIST (6,000 train / 1,000 test) from /d")


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    """`--resume --epochs 1` on a run of 2 epochs trained nothing, evaluated the run again and rewrote config.json
    with epochs 1 beside 2 epochs of metrics. Refused now; the same or more epochs resume as before."""
    run = RunDir(_args(tmp_path / "r", epochs=2), data_source="g")
    run.log({"epoch": 1})
    run.log({"epoch": 2})
    run.save_checkpoint({"epoch": 2, "model": {}})
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(UserError, match="has done 2 epochs, more than --epochs 1: give --epochs 2"):
        RunDir(_args(tmp_path / "r", resume=True, epochs=1), data_source="g").resume_state()
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    for epochs in (2, 3):
        assert RunDir(_args(tmp_path / "r", resume=True, epochs=epochs), data_source="g").resume_state()["epoch"] == 2


def test_resume_with_other_flags_is_refused(tmp_path):
    RunDir(_args(tmp_path / "r"), data_source="g").log({"epoch": 1})
    with pytest.raises(UserError, match=r"--lr 0.1 \(now 0.5\)"):
        RunDir(_args(tmp_path / "r", lr=0.5, resume=True), data_source="g")


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    run = RunDir(_args(tmp_path / "r"), data_source="g")
    for epoch in (1, 2, 3):
        run.log({"epoch": epoch})
    run.save_checkpoint({"epoch": 2, "model": {}})
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    assert resumed.resume_state()["epoch"] == 2
    assert [r["epoch"] for r in resumed.metrics()] == [1, 2]
    resumed.log({"epoch": 3})
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3]


def test_resume_without_a_checkpoint_clears_the_metrics_it_would_repeat(tmp_path):
    """Killed after the first metrics line and before the first checkpoint: --resume restarts at epoch 1
    and metrics.jsonl must not hold epochs 1, 1, 2 (issue 17, defect 2)."""
    RunDir(_args(tmp_path / "r"), data_source="g").log({"epoch": 1})
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    assert resumed.resume_state() is None and resumed.metrics() == []
    resumed.log({"epoch": 1})
    assert read_metrics(tmp_path / "r") == [{"epoch": 1}]


def test_a_foreign_checkpoint_fails_before_anything_changes(tmp_path):
    """torch.save({'foo': 1}) in --out: one line, and metrics.jsonl and config.json untouched (defect 3)."""
    run = RunDir(_args(tmp_path / "r"), data_source="g")
    run.log({"epoch": 1})
    run.save_checkpoint({"foo": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    resumed = RunDir(_args(tmp_path / "r", resume=True, epochs=5), data_source="g")
    with pytest.raises(UserError, match="not a checkpoint of this script.*no epoch, model"):
        resumed.resume_state()
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_overwrite_clears_the_old_run_only_at_the_new_runs_first_write(tmp_path):
    """--overwrite whose data or model fail to load leaves the previous run whole (defect 9)."""
    old = RunDir(_args(tmp_path / "r"), data_source="g")
    old.log({"epoch": 1})
    old.save_checkpoint({"epoch": 1, "model": {}})
    RunDir(_args(tmp_path / "r", overwrite=True), data_source="g")       # ... and the new run fails here
    assert read_metrics(tmp_path / "r") == [{"epoch": 1}] and (tmp_path / "r" / "checkpoint.pt").exists()
    new = RunDir(_args(tmp_path / "r", overwrite=True), data_source="g")
    new.log({"epoch": 1, "new": True})
    assert read_metrics(tmp_path / "r") == [{"epoch": 1, "new": True}]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_start_removes_temp_files_of_a_killed_checkpoint_write(tmp_path):
    run = RunDir(_args(tmp_path / "r"), data_source="g")
    run.save_checkpoint({"epoch": 1, "model": {}})
    (tmp_path / "r" / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    resumed.resume_state()
    resumed.log({"epoch": 2})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".lock", "checkpoint.pt", "config.json",
                                                                  "metrics.jsonl"]


@pytest.mark.parametrize("make_out", [lambda tmp: (tmp / "afile").write_text("x") and tmp / "afile",
                                      lambda tmp: (tmp / "afile").write_text("x") and tmp / "afile" / "run",
                                      lambda tmp: Path("/proc/x/run")])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, make_out):
    with pytest.raises(UserError, match="--out"):
        RunDir(_args(make_out(tmp_path)), data_source="g").log({"epoch": 1})


def test_finish_fills_the_fields_every_training_summary_shares(tmp_path):
    run = RunDir(_args(tmp_path / "r"), data_source="real: MNIST (60,000 train / 10,000 test) from /x/MNIST/raw")
    records = [{"epoch": 1, "train_loss": 2.0, "train_seconds": 1.5},
               {"epoch": 2, "train_loss": 1.0, "train_seconds": 3.0}]
    summary = run.finish({"test_acc": 0.9, "epochs": 7}, records)
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert saved == summary
    assert summary["data_label"] == "real: MNIST" and summary["data_source"].startswith("real: MNIST (60,000")
    assert summary["train_seconds"] == 3.0 and summary["loss_trend"].startswith("2→1 ↓")
    assert summary["epochs"] == 7 and summary["test_acc"] == 0.9   # the caller's entries win
    bare = RunDir(_args(tmp_path / "s"), data_source="generated: x").finish({"a": 1})
    assert bare == {"data_source": "generated: x", "data_label": "generated: x", "a": 1}


def test_a_second_process_on_a_run_folder_in_use_is_refused(tmp_path):
    """The same command started twice (or with --overwrite while the first runs) wrote into one folder: the second's
    start deleted the first's checkpoint writes in flight and both appended to metrics.jsonl. The process writing a
    run folder holds its lock; another is refused in one line, and may go on once the first has ended."""
    import subprocess
    import sys

    out = tmp_path / "r"
    RunDir(_args(out), data_source="g").log({"epoch": 1})
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (out / "metrics.jsonl").read_text()
        with pytest.raises(UserError, match="is in use by another running process; wait for it to end") as err:
            RunDir(_args(out, overwrite=True), data_source="g").log({"epoch": 1})
        assert "\n" not in str(err.value) and (out / "metrics.jsonl").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    first = RunDir(_args(out, overwrite=True), data_source="g")            # the holder has ended: free again
    first.log({"epoch": 1})
    again = RunDir(_args(out, overwrite=True), data_source="g")            # one process may reopen its own run
    again.log({"epoch": 1})
    assert [r["epoch"] for r in again.metrics()] == [1] and first.path == again.path
