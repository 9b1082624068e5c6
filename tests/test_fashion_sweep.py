"""fashion_mnist_ffn/sweep.py offline end to end on a tiny config, its resume, its errors, and the
fashion report reproduced from smoke runs."""
import json

import pytest

from fashion_mnist_ffn import sweep
from fashion_mnist_ffn.sweep_runner import load_trials
from tests.conftest import REPO, run_script

TINY = """
method: grid
metric: {name: val_acc, goal: maximize}
parameters:
  optimizer: {values: [adam, sgd]}
  lr: {values: [1.0e-3, 0.05]}
  hidden: {value: [8, 8]}
  epochs: {value: 1}
"""


@pytest.mark.slow
def test_tiny_grid_sweep_end_to_end_then_resume(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "sweep"
    flags = ["--config", str(config), "--data", "generated", "--batch-size", "256", "--out", str(out)]
    summary = sweep.main(flags)
    trials = load_trials(out)
    assert [t.params["optimizer"] for t in trials] == ["adam", "adam", "sgd", "sgd"]
    assert all(t.params["batch_size"] == 256 and t.params["hidden"] == [8, 8] for t in trials)  # --batch-size fixes it
    for name in ("parallel_coordinates.png", "importance.png", "metric_by_param.png", "runs_table.md"):
        assert (out / name).stat().st_size > 0, name
    for trial in trials:
        trial_summary = json.loads((out / "trials" / trial.name / "summary.json").read_text())
        assert trial_summary["val_acc"] == trial.value
        assert trial_summary["model_config"]["hidden"] == [8, 8]
    best = max(trials, key=lambda t: t.value)
    assert summary["best_trial"] == best.name and summary["best_val_acc"] == best.value
    assert summary["data_source"].startswith("generated") and summary["trials"] == 4
    table = (out / "runs_table.md").read_text().splitlines()
    assert table[2].startswith(f"| 1 | {best.name} |")

    stamp = (out / "trials" / "trial-000" / "summary.json").stat().st_mtime_ns
    again = sweep.main([*flags, "--resume"])
    assert again["best_trial"] == summary["best_trial"]
    assert (out / "trials" / "trial-000" / "summary.json").stat().st_mtime_ns == stamp, "finished trials are kept"


@pytest.mark.slow
def test_smoke_sweep_script_from_another_directory(tmp_path):
    out = tmp_path / "run"
    done = run_script(str(REPO / "fashion_mnist_ffn/sweep.py"), "--smoke", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == sweep.SMOKE_TRIALS and len(summary["importance"]) > 0
    assert (out / "config.json").exists() and (out / "metrics.jsonl").read_text().count("\n") == sweep.SMOKE_TRIALS


@pytest.mark.slow
def test_a_parameter_that_is_not_a_train_flag_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(TINY.replace("optimizer:", "optimiser:"))
    done = run_script(str(REPO / "fashion_mnist_ffn/sweep.py"), "--config", str(config), "--smoke",
                      "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "sweep parameter optimiser is not a train.py flag" in done.stderr


@pytest.mark.slow
def test_offline_bayes_is_refused_with_the_way_out(tmp_path):
    done = run_script(str(REPO / "fashion_mnist_ffn/sweep.py"), "--method", "bayes", "--smoke",
                      "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "wandb" in done.stderr


def test_trial_argv_maps_params_to_flags():
    argv = sweep.trial_argv({"num_layers": 3, "hidden": [64, 32], "lr": 0.001}, ["--smoke"])
    assert argv == ["--num-layers", "3", "--hidden", "64", "32", "--lr", "0.001", "--smoke"]


@pytest.mark.slow
def test_smoke_reproduction_writes_the_fashion_report(tmp_path):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    done = run_script(str(REPO / "reproduce.py"), "fashion_mnist_ffn", "--smoke", "--runs-dir", str(runs),
                      "--reports-dir", str(reports), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    report = (reports / "fashion_mnist_ffn.md").read_text()
    for heading in ("## 1. One image per class", "## 4. The sweep", "## 5-6. The best runs",
                    "## 7. The best model on the test set", "## 8. Cross-entropy vs squared error"):
        assert heading in report, heading
    assert "| cross_entropy |" in report and "| squared_error |" in report
    for line in report.splitlines():
        for part in line.split("](")[1:]:
            assert (reports / part.split(")")[0]).exists(), line
