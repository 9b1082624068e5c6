"""The pieces a NumPy train.py's loop calls: the epoch's batches, the divergence guard, checkpoint and resume."""
import argparse

import numpy as np
import pytest

from common.errors import TrainingDiverged, UserError
from common.rundir import RunDir
from mnist_scratch.engine.network import mlp
from mnist_scratch.engine.optim import build_optimizer
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.training import LossGuard, checkpoint, evaluate, init_states, resume, shuffled_batches


def run_dir(path, resume_flag=False) -> RunDir:
    args = argparse.Namespace(out=path, resume=resume_flag, overwrite=True, assignment="test", wandb="off", smoke=True)
    return RunDir(args, data_source="generated: test")


def test_batches_cover_the_epoch_once_in_an_order_set_by_seed_and_epoch():
    x, y = np.arange(10)[:, None] * np.ones((10, 2)), np.arange(10)
    first = list(shuffled_batches(x, y, 4, seed=0, epoch=0))
    assert [len(yb) for _, yb in first] == [4, 4, 2]
    assert sorted(np.concatenate([yb for _, yb in first])) == list(range(10))
    assert all(np.array_equal(xb[:, 0], yb) for xb, yb in first)
    again = list(shuffled_batches(x, y, 4, seed=0, epoch=0))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    other = np.concatenate([yb for _, yb in shuffled_batches(x, y, 4, seed=0, epoch=1)])
    assert not np.array_equal(other, np.concatenate([yb for _, yb in first]))
    ((xb, yb),) = shuffled_batches(x, y, 10, seed=0, epoch=0)
    assert xb is x and yb is y   # one full batch: the arrays themselves, unshuffled


def test_guard_stops_at_a_nan_or_exploding_step_and_names_the_kept_checkpoint(tmp_path):
    guard = LossGuard(run_dir(tmp_path / "r"))
    guard.check(2.3, epoch=0, step=0)
    guard.check(50.0, epoch=0, step=1)          # noisy, within 2.3 + 100 * 2.3
    with pytest.raises(TrainingDiverged, match=r"exploded to 1e\+03 \(from 2.3\) at step 2 in epoch 1; no checkpoint"):
        guard.check(1e3, epoch=0, step=2)
    guard.end_epoch(0.5)                         # the next epochs compare with this epoch's mean
    with pytest.raises(TrainingDiverged, match=r"became nan at step 7 in epoch 3; the last good checkpoint "
                                               r"\(epoch 2\) is kept in .*; lower --lr"):
        guard.check(float("nan"), epoch=2, step=7)


def test_checkpoint_then_resume_restores_weights_and_optimizer_state(tmp_path):
    rng = np.random.default_rng(0)
    net, optimizer = mlp((3, 4, 2), "relu", "he", rng), build_optimizer("adam", 0.1)
    states = init_states(net, optimizer)
    for name, w in net.params().items():
        optimizer.update(w, np.ones_like(w), states[name])
    run = run_dir(tmp_path / "r")
    run.save_checkpoint(checkpoint(2, 1.5, {"hidden": [4]}, net, states))

    fresh = mlp((3, 4, 2), "relu", "he", np.random.default_rng(1))
    fresh_states = init_states(fresh, optimizer)
    assert resume(run_dir(tmp_path / "r", resume_flag=True), fresh, fresh_states) == (2, 1.5)
    for name, w in net.params().items():
        np.testing.assert_array_equal(fresh.params()[name], w)
        np.testing.assert_array_equal(fresh_states[name]["m"], states[name]["m"])
    assert resume(run_dir(tmp_path / "other", resume_flag=True), fresh, fresh_states) == (0, 0.0)

    wider = mlp((3, 5, 2), "relu", "he", rng)
    with pytest.raises(UserError, match="does not fit this network"):
        resume(run_dir(tmp_path / "r", resume_flag=True), wider, init_states(wider, optimizer))


def test_an_mlp_evaluates_to_the_same_bits_whatever_blas_threads_it_is_given(tmp_path):
    """OpenBLAS's float32 product differs in the last bit between one thread and two, and the thread count it used
    changed with the machine's load: two identical mnist_scratch runs logged different train losses (a flaky resume
    test). evaluate() runs an MLP on one thread. (On these digits the loss differed: 2.68696165 vs 2.68696189.)"""
    from threadpoolctl import threadpool_limits

    from mnist_scratch.data import load_mnist_split
    from mnist_scratch.model import MLPConfig, build_model

    data = load_mnist_split("90:10", mode="generated", root=tmp_path, seed=3, smoke=False)
    net = build_model(MLPConfig(hidden=(16,)), 3)
    losses = set()
    for threads in (1, 2, 1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            losses.add(evaluate(net, data.x_train, data.y_train, LOSSES["cross_entropy"]).loss)
    assert len(losses) == 1
