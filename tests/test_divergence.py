"""Issue 17, defect 7: a diverging run stops, in every training script, whether its loss becomes NaN or
explodes while staying finite; it never claims a checkpoint it did not write, and what it keeps is finite."""
from __future__ import annotations

import argparse
import importlib

import pytest

from common.checkpoint import load_checkpoint
from common.divergence import CHANCE_FACTOR, advice_for, check_chance, diverged, explosion_limit
from common.errors import TrainingDiverged
from common.training import all_finite

# text2math is not here: its loss is a mixture of vocabulary and pointer probabilities with a floor, so a huge
# learning rate leaves a useless model at a finite loss (about 20) rather than an explosion; it stops on a mean
# loss far above a uniform guess's instead, and its NaN stop is tested below with a poisoned loss
SCRIPTS = ["fashion_mnist_ffn.train", "mnist_scratch.train", "sketch_rnn.train", "kd_cifar10.train",
           "cifar100_multitask.train"]


def test_the_explosion_limit_scales_with_the_reference_and_handles_negative_losses():
    assert explosion_limit(2.3) == pytest.approx(2.3 + 230)
    assert explosion_limit(-5.0) == pytest.approx(-5.0 + 500)     # a mixture NLL can be negative
    assert explosion_limit(0.001) == pytest.approx(100.001)       # near-zero losses: an absolute floor
    assert "no checkpoint was written" in diverged("x", 1, 0, None)
    assert "(epoch 3) is kept in /r" in diverged("x", 4, 3, "/r")


@pytest.mark.parametrize("module", SCRIPTS)
def test_a_huge_learning_rate_stops_the_run_in_one_line(module, tmp_path):
    script = importlib.import_module(module)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"(exploded to|became) .* in epoch|at epoch") as info:
        script.main(["--smoke", "--lr", "1e6", "--out", str(out)])
    message = str(info.value)
    assert "\n" not in message and "lower --lr" in message
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        assert "is kept in" in message and all_finite(load_checkpoint(checkpoint)["model"])
    else:
        assert "no checkpoint was written" in message


def test_a_mean_loss_far_above_a_uniform_guess_is_divergence():
    check_chance(2 * 4.0, 4.0, 1, 0, None)                       # twice a uniform guess: still a run
    check_chance(1e6, None, 1, 0, None)                          # no chance level given: no check
    with pytest.raises(TrainingDiverged, match=r"^the training loss averaged 8\.01, over 2x that of a uniform guess "
                                               r"\(4\) in epoch 3; the last good checkpoint \(epoch 2\) is kept in /r; "
                                               r"lower --lr$"):
        check_chance(8.01, 4.0, 3, 2, "/r")
    assert CHANCE_FACTOR == 2


def test_text2math_with_a_huge_learning_rate_stops_at_a_loss_far_above_chance(tmp_path):
    """--lr 1e9 averaged 14, then 20 a token (a uniform guess: ln 87 = 4.47) and ran to the end at chance."""
    from text2math import train

    with pytest.raises(TrainingDiverged, match=r"^the training loss averaged 1\d\.\d, over 2x that of a uniform "
                                               r"guess \(4\.47\) in epoch 1; no checkpoint was written") as info:
        train.main(["--smoke", "--threads", "1", "--lr", "1e9", "--out", str(tmp_path / "run")])
    assert "\n" not in str(info.value) and not (tmp_path / "run" / "checkpoint.pt").exists()
    assert train.main(["--smoke", "--threads", "1", "--out", str(tmp_path / "ok")])   # the default rate trains on


def test_text2math_stops_when_its_loss_turns_nan(tmp_path, monkeypatch):
    from text2math import train

    original, calls = train.sequence_loss, []

    def poisoned(*args, **kwargs):
        loss_sum, tokens, correct = original(*args, **kwargs)
        calls.append(1)
        return (loss_sum * float("nan") if len(calls) >= 3 else loss_sum), tokens, correct

    monkeypatch.setattr(train, "sequence_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1; no checkpoint was written") as info:
        train.main(["--smoke", "--out", str(tmp_path / "run")])
    assert "\n" not in str(info.value) and not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("value", ["inf", "1e38", "nan", "0"])
def test_a_learning_rate_that_would_overflow_is_refused_by_the_parser(value):
    from common.cli import positive_float

    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number up to 1e"):
        positive_float(value)


def test_the_advice_names_a_decay_flag_only_when_the_run_sets_it():
    """--weight-decay / --l2 1e30 diverged with "lower --lr" alone; a run without decay is not sent to one."""
    assert advice_for(argparse.Namespace(lr=0.1, weight_decay=5e-4)) == "lower --lr or --weight-decay"
    assert advice_for(argparse.Namespace(lr=0.1, l2=1e30)) == "lower --lr or --l2"
    assert advice_for(argparse.Namespace(lr=0.1, weight_decay=0.0)) == "lower --lr"
    assert advice_for(None) == "lower --lr"
