"""The pieces a train.py's loop calls (common.training), in a loop written out as the scripts write it: it
learns, resumes to the same numbers, stops on a NaN or exploding loss keeping the last good checkpoint, and
sums its statistics on the device."""
import argparse
import time

import pytest
import torch

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import TrainingDiverged, UserError
from common.rundir import RunDir, read_metrics
from common import distributed
from common.schedules import lr_lambda
from common.training import (EpochGuard, Meter, all_finite, batch_count, checkpoint, end_epoch, finished_records,
                             follow_this_run, order_batches, prefixed, resume, tensor_batches)


def _args(out, resume=False, epochs=4):
    return argparse.Namespace(out=out, resume=resume, overwrite=not resume, wandb="off", assignment="test",
                              epochs=epochs, seed=0)


def _problem():
    torch.manual_seed(0)
    x = torch.randn(96, 5)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) > 0).long()
    return x, y


def _train(out, epochs, resumed=False, lr=0.1, model=None, blow_up_at=None):
    x, y = _problem()
    torch.manual_seed(1)
    model = model or torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    steps = []
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    run = RunDir(_args(out, resumed, epochs), data_source="generated: test")

    start, elapsed = resume(run, model, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, epochs):
        tic = time.perf_counter()
        model.train()
        meter = Meter()
        for xb, yb in tensor_batches((x, y), 16, seed=0, epoch=epoch):
            logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            steps.append(1)
            if blow_up_at is not None and len(steps) >= blow_up_at:   # a finite loss that has run away
                loss = loss * 1e9
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            meter.add(loss, len(yb), acc=(logits.argmax(1) == yb).sum())
        train = guard.check(meter, model, epoch)
        scheduler.step()
        elapsed += time.perf_counter() - tic
        model.eval()
        with torch.no_grad():
            val_acc = (model(x).argmax(1) == y).float().mean().item()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train),
                  "val_acc": val_acc, "train_seconds": elapsed}
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, {"kind": "linear"}, model, optimizer, scheduler),
                  quiet=True)
    return finished_records(run)


def test_the_loop_learns_and_resumes_to_the_same_numbers(tmp_path):
    whole = _train(tmp_path / "whole", 4)
    assert whole[-1]["val_acc"] > 0.9 and whole[-1]["train_loss"] < whole[0]["train_loss"]
    _train(tmp_path / "split", 2)
    resumed = _train(tmp_path / "split", 4, resumed=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(whole, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["lr"] == pytest.approx(b["lr"])


def test_nan_loss_stops_with_the_epoch_named(tmp_path):
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        _train(tmp_path / "nan", 2, lr=float("nan"))


def test_tensor_batches_cover_every_example_once_in_a_seeded_order():
    x = torch.arange(10)
    first = torch.cat([b for (b,) in tensor_batches((x,), 3, seed=0, epoch=0)])
    again = torch.cat([b for (b,) in tensor_batches((x,), 3, seed=0, epoch=0)])
    other = torch.cat([b for (b,) in tensor_batches((x,), 3, seed=0, epoch=1)])
    assert sorted(first.tolist()) == list(range(10)) and torch.equal(first, again)
    assert not torch.equal(first, other)
    assert batch_count(10, 3) == 4 and len(list(tensor_batches((x,), 3, seed=0, epoch=0, drop_last=True))) == 3


def test_order_batches_keep_a_sampler_order_in_one_process():
    x = torch.arange(10) * 10
    assert [b.tolist() for (b,) in order_batches((x,), torch.tensor([3, 3, 7, 1, 0]), 2)] == [[30, 30], [70, 10], [0]]


def test_one_process_launch_and_helpers_are_plain(tmp_path, capsys):
    """Without torchrun's variables, launch() joins no group and the helpers pass their input through
    (tests/test_torchrun_scripts.py runs them in two processes)."""
    args = _args(tmp_path / "run", epochs=2)
    args.device, args.batch_size, args.sync_bn = "cpu", 6, True
    with distributed.launch(args) as info:
        print("rank 0 prints")
        assert (info.rank, info.world_size, info.device, info.is_main) == (0, 1, "cpu", True)
        assert distributed.reduce_means({"acc": 0.25}, 8) == {"acc": 0.25}
        assert torch.equal(distributed.gather(torch.arange(3)), torch.arange(3))
        assert distributed.shard([1, 2, 3]) == [1, 2, 3] and distributed.rank_seed(7) == 7
        assert distributed.on_rank0(lambda a, b=0: a + b, 1, b=2) == 3
        run = distributed.run_dir(args, data_source="generated: test", device="cpu")
        assert isinstance(run, RunDir)
    assert "rank 0 prints" in capsys.readouterr().out and not distributed.is_distributed()


def test_follower_reads_rank0s_metrics_and_checkpoint(tmp_path):
    records = _train(tmp_path / "run", 2)
    follower = distributed.FollowerRun(tmp_path / "run", resume=True)
    assert follower.metrics() == records and follower.resume_state()["epoch"] == 2
    assert distributed.FollowerRun(tmp_path / "run", resume=False).resume_state() is None


def test_nan_before_any_checkpoint_claims_none_is_kept(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint was written") as info:
        _train(tmp_path / "nan", 2, lr=float("nan"))
    assert "kept" not in str(info.value) and not (tmp_path / "nan" / "checkpoint.pt").exists()


def test_a_finite_loss_that_explodes_stops_and_keeps_the_finite_checkpoint(tmp_path):
    """Issue 17, defect 7: loss 3e18 with exit 0 is a divergence; the kept checkpoint is finite everywhere."""
    with pytest.raises(TrainingDiverged, match=r"exploded to .* in epoch 2; the last good checkpoint \(epoch 1\)"):
        _train(tmp_path / "boom", 4, blow_up_at=8)          # 6 steps an epoch: step 8 is in epoch 2
    state = load_checkpoint(tmp_path / "boom" / "checkpoint.pt")
    assert state["epoch"] == 1 and all_finite(state["model"])
    assert [r["epoch"] for r in read_metrics(tmp_path / "boom")] == [1]


def test_non_finite_buffers_stop_the_run_before_they_reach_a_checkpoint(tmp_path):
    class InfBuffer(torch.nn.Module):          # a BatchNorm whose running variance overflowed, loss still finite
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(5, 2)
            self.register_buffer("running_var", torch.ones(2))

        def forward(self, x):
            if self.training:
                self.running_var.mul_(1e30)
            return self.linear(x)

    with pytest.raises(TrainingDiverged, match="parameters or buffers became NaN or infinite in epoch 1; no "
                                               "checkpoint"):
        _train(tmp_path / "buf", 2, model=InfBuffer())
    assert not (tmp_path / "buf" / "checkpoint.pt").exists()


@pytest.mark.parametrize("foreign", [{"foo": 1}, "model"])
def test_resume_from_a_foreign_checkpoint_is_one_line_and_touches_nothing(tmp_path, foreign):
    """Defect 3: a checkpoint without the keys, or of another model, fails before metrics or config change."""
    _train(tmp_path / "r", 2)
    if foreign == "model":     # a valid checkpoint of a different network
        other = torch.nn.Linear(3, 3)
        state = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
        save_checkpoint(tmp_path / "r" / "checkpoint.pt", {**state, "model": other.state_dict()})
    else:
        save_checkpoint(tmp_path / "r" / "checkpoint.pt", foreign)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(UserError, match="not a checkpoint of this script|does not fit this run's model") as info:
        _train(tmp_path / "r", 4, resumed=True)
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_meter_means_are_the_epochs_sums_over_its_examples():
    meter = Meter()
    meter.add(torch.tensor(2.0), 4, acc=torch.tensor(3))
    meter.add(torch.tensor(5.0), 2, acc=torch.tensor(1), penalty=torch.tensor(0.5))
    means = meter.means()
    assert means == pytest.approx({"loss": (2 * 4 + 5 * 2) / 6, "acc": 4 / 6, "penalty": 0.5 / 6})
    assert meter.first_and_peak() == (2.0, 5.0)


def test_a_loss_entry_replaces_the_recorded_loss_but_the_step_loss_is_watched():
    meter = Meter()
    meter.add(torch.tensor(float("nan")), 2, loss=torch.tensor(1.0))
    assert meter.means()["loss"] == 0.5
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1"):
        EpochGuard(None).check(meter, torch.nn.Linear(1, 1), 0)


def test_an_epoch_without_batches_is_one_clear_error():
    with pytest.raises(UserError, match="no batches") as err:
        Meter().means()
    assert not isinstance(err.value, TrainingDiverged)   # a user error (exit 2), not a divergence (exit 3)


def test_an_epoch_moves_its_statistics_to_the_host_once(monkeypatch):
    """Meter.add never syncs; EpochGuard.check syncs once (sums, first / peak loss and the model's finiteness)."""
    syncs = []
    for name in ("tolist", "item", "__bool__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            syncs.append(_name)
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    model, meter = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)), Meter()
    for step in range(5):
        loss = model(torch.randn(4, 3)).pow(2).mean()
        meter.add(loss, 4, acc=torch.tensor(step))
    assert syncs == []
    means = EpochGuard(None).check(meter, model, 0)
    assert syncs == ["tolist"] and means["acc"] == pytest.approx(10 / 20)


def test_a_resumed_lambda_schedule_follows_this_runs_curve(tmp_path):
    """--resume may change --epochs (a schedule's total): the resumed step's LR is this run's curve, not the
    saved optimizer's."""
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda("cosine", 4))
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    saved = optimizer.param_groups[0]["lr"]
    longer = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda("cosine", 8))
    longer.load_state_dict(scheduler.state_dict())
    follow_this_run(longer)
    assert saved == pytest.approx(0.5) and optimizer.param_groups[0]["lr"] == pytest.approx(lr_lambda("cosine", 8)(2))
