"""fashion_mnist_ffn's sweep modules (sweep_config, sweep_runner, sweep_analysis, sweep_plots): wandb-format
configs validated, grid/random trials, the local runner end to end (resume, divergence, a changed config
refused), the analysis against numpy, the plots and table, and the wandb.sweep/agent wiring through a fake
wandb module."""
from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import yaml

from common.errors import TrainingDiverged, UserError
from fashion_mnist_ffn.sweep_analysis import analyse, describe_findings, levels, runs_table
from fashion_mnist_ffn.sweep_config import (METHODS, grid_trials, load_sweep_config, make_trials, random_trials,
                                            sample_params)
from fashion_mnist_ffn.sweep_plots import plot_importance, plot_metric_by_param, plot_parallel_coordinates
from fashion_mnist_ffn.sweep_runner import TrialResult, load_sweep, load_trials, run_local_sweep, run_wandb_sweep

PNG = b"\x89PNG\r\n\x1a\n"


def config(method="grid", **parameters):
    return {"method": method, "metric": {"name": "val_acc", "goal": "maximize"},
            "parameters": parameters or {"optimizer": {"values": ["sgd", "adam"]},
                                         "hidden": {"values": [[64], [128, 64]]},
                                         "epochs": {"value": 2}}}


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
BAD = {
    "unknown method": ({**config(), "method": "hyperband"}, "method"),
    "missing metric name": ({**config(), "metric": {"goal": "maximize"}}, "metric"),
    "bad goal": ({**config(), "metric": {"name": "val_acc", "goal": "up"}}, "goal"),
    "no spec keys": (config(lr={"vals": [1, 2]}), "'lr'"),
    "empty values": (config(lr={"values": []}), "'lr'"),
    "distribution without max": (config("random", lr={"distribution": "uniform", "min": 0.1}), "'lr'"),
    "min > max": (config("random", lr={"distribution": "uniform", "min": 1.0, "max": 0.1}), "'lr'"),
    "unknown distribution": (config("random", lr={"distribution": "gamma", "min": 0, "max": 1}), "'lr'"),
    "log of zero": (config("random", lr={"distribution": "log_uniform_values", "min": 0, "max": 1}), "'lr'"),
    "int_uniform of floats": (config("random", n={"distribution": "int_uniform", "min": 1.5, "max": 3}), "'n'"),
    "grid of continuous": (config("grid", lr={"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}),
                           "'lr'"),
    "grid with probabilities": (config("grid", opt={"values": ["a", "b"], "probabilities": [0.5, 0.5]}), "'opt'"),
    "probabilities not summing to 1": (config("random", opt={"values": ["a", "b"], "probabilities": [0.5, 0.7]}),
                                       "'opt'"),
    "no parameters": ({**config(), "parameters": {}}, "parameters"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_configs_name_the_file_and_parameter(tmp_path, case):
    bad, named = BAD[case]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(UserError) as err:
        load_sweep_config(path)
    message = str(err.value)
    assert str(path) in message and named in message and "\n" not in message


def test_yaml_and_json_load_the_same(tmp_path):
    cfg = config("random", lr={"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
                 opt={"values": ["sgd", "adam"], "probabilities": [0.25, 0.75]}, epochs={"value": 3},
                 hidden={"values": [[32], [64, 32]]}, size={"min": 16, "max": 64})
    cfg["run_cap"] = 5
    (tmp_path / "s.yml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "s.json").write_text(json.dumps(cfg))
    assert load_sweep_config(tmp_path / "s.yml") == load_sweep_config(tmp_path / "s.json") == cfg
    with pytest.raises(UserError, match="unknown file type"):
        (tmp_path / "s.txt").write_text("{}")
        load_sweep_config(tmp_path / "s.txt")
    (tmp_path / "sci.yaml").write_text("method: random\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
                                       "  lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-2}\n"
                                       "  wd: {values: [0, 5e-4, 0.5]}\n")
    sci = load_sweep_config(tmp_path / "sci.yaml")["parameters"]  # PyYAML alone reads 1e-4 as a string
    assert sci["lr"]["min"] == 1e-4 and sci["wd"]["values"] == [0, 5e-4, 0.5]
    (tmp_path / "broken.yaml").write_text("method: [grid\n")
    with pytest.raises(UserError, match="could not be parsed"):
        load_sweep_config(tmp_path / "broken.yaml")


# ------------------------------------------------------------------------------------------------
# trials
# ------------------------------------------------------------------------------------------------
def test_grid_is_the_ordered_product_with_fixed_values_and_caps():
    cfg = config("grid", a={"values": [1, 2, 3]}, b={"value": "x"}, c={"values": [True, False]},
                 n={"distribution": "int_uniform", "min": 4, "max": 5})
    trials = grid_trials(cfg)
    assert [tuple(t.params.values()) for t in trials] == [
        (a, "x", c, n) for a in (1, 2, 3) for c in (True, False) for n in (4, 5)]  # last varies fastest
    assert [t.name for t in trials[:2]] == ["trial-000", "trial-001"]
    assert grid_trials(cfg) == trials  # deterministic
    assert [t.params for t in grid_trials(cfg, count=5)] == [t.params for t in trials[:5]]
    assert len(grid_trials({**cfg, "run_cap": 4})) == 4
    assert len(grid_trials({**cfg, "run_cap": 4}, count=3)) == 3  # the smaller cap wins
    assert set(METHODS) == {"grid", "random"}


def test_random_is_seeded_in_bounds_and_log_spread():
    cfg = config("random", lr={"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
                 drop={"distribution": "uniform", "min": 0.1, "max": 0.5},
                 n={"distribution": "int_uniform", "min": 1, "max": 3},
                 q={"distribution": "q_uniform", "min": 0, "max": 100, "q": 25},
                 opt={"values": ["sgd", "adam"], "probabilities": [0.2, 0.8]}, fixed={"value": 7})
    trials = random_trials(cfg, count=400, seed=3)
    assert [t.params for t in trials] == [t.params for t in random_trials(cfg, count=400, seed=3)]
    assert [t.params for t in trials[:10]] == [t.params for t in random_trials(cfg, count=10, seed=3)]
    assert [t.params for t in trials[:10]] != [t.params for t in random_trials(cfg, count=10, seed=4)]
    col = {k: np.array([t.params[k] for t in trials]) for k in ("lr", "drop", "n", "q", "opt", "fixed")}
    assert ((col["lr"] >= 1e-5) & (col["lr"] <= 1e-1)).all()
    decades = np.histogram(np.log10(col["lr"]), bins=[-5, -4, -3, -2, -1])[0]
    assert decades.min() > 60  # ~100 per decade: uniform in log space, not piled up near max
    assert ((col["drop"] >= 0.1) & (col["drop"] <= 0.5)).all()
    assert set(col["n"].tolist()) == {1, 2, 3} and all(type(t.params["n"]) is int for t in trials)
    assert set(col["q"].tolist()) <= {0, 25, 50, 75, 100}
    assert 0.7 < (col["opt"] == "adam").mean() < 0.9
    assert (col["fixed"] == 7).all()
    assert len(make_trials({**cfg, "run_cap": 6})) == 6


def test_offline_bayes_and_endless_random_are_refused():
    with pytest.raises(UserError, match="--wandb online"):
        make_trials(config("bayes", lr={"distribution": "uniform", "min": 0.1, "max": 1.0}), count=3)
    with pytest.raises(UserError, match="count"):
        make_trials(config("random", lr={"distribution": "uniform", "min": 0.1, "max": 1.0}))


# ------------------------------------------------------------------------------------------------
# the local runner
# ------------------------------------------------------------------------------------------------
class FakeTrainer:
    """val_acc is a known function of the params; sgd with lr 1.0 diverges."""

    def __init__(self, stop_after: int | None = None):
        self.calls: list[tuple[dict, str]] = []
        self.stop_after = stop_after

    def __call__(self, params: dict, name: str) -> dict:
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        self.calls.append((params, name))
        if params["optimizer"] == "sgd" and params["lr"] == 1.0:
            raise TrainingDiverged("loss became NaN at step 3")
        acc = 0.5 + 0.3 * (params["optimizer"] == "adam") + 0.1 * math.log10(params["lr"]) / -3
        return {"val_acc": acc, "val_loss": 1 - acc, "epochs_run": params["epochs"], "note": np.float32(1.5)}


def tiny_grid():
    return config("grid", optimizer={"values": ["sgd", "adam"]}, lr={"values": [1e-3, 1.0]}, epochs={"value": 2})


def test_local_sweep_end_to_end_resumes_and_survives_divergence(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trainer = FakeTrainer(stop_after=2)
    with pytest.raises(KeyboardInterrupt):  # interrupted after two trials
        run_local_sweep(tiny_grid(), trainer, sweep_dir, quiet=True)
    assert [name for _, name in trainer.calls] == ["trial-000", "trial-001"]
    assert len(load_trials(sweep_dir)) == 2

    trainer = FakeTrainer()
    results = run_local_sweep(tiny_grid(), trainer, sweep_dir, quiet=True)
    assert [name for _, name in trainer.calls] == ["trial-002", "trial-003"]  # the first two are skipped
    assert [r.status for r in results] == ["ok", "diverged", "ok", "ok"]  # trial-001 is sgd, lr 1.0
    assert math.isnan(results[1].value) and "NaN at step 3" in results[1].error
    assert trainer.calls[0][0] == {"optimizer": "adam", "lr": 1e-3, "epochs": 2}

    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["trial-000", "trial-001", "trial-002", "trial-003"]
    assert set(records[0]) == {"name", "index", "params", "status", "metric", "value", "seconds",
                               "summary", "error"}
    assert records[0]["value"] == pytest.approx(0.5 + 0.1) and records[0]["metric"] == "val_acc"
    assert records[0]["summary"]["note"] == 1.5 and records[1]["value"] is None
    saved, trials = load_sweep(sweep_dir)
    assert saved["config"] == tiny_grid() and saved["method"] == "grid"
    assert [t.params for t in trials] == [r.params for r in results]

    trainer = FakeTrainer()
    again = run_local_sweep(tiny_grid(), trainer, sweep_dir, quiet=True)
    assert trainer.calls == [] and [r.name for r in again] == [r.name for r in results]

    changed = tiny_grid()
    changed["parameters"]["epochs"] = {"value": 3}
    with pytest.raises(UserError, match="another config"):
        run_local_sweep(changed, FakeTrainer(), sweep_dir, quiet=True)
    trainer = FakeTrainer()
    run_local_sweep(changed, trainer, sweep_dir, quiet=True, overwrite=True)
    assert len(trainer.calls) == 4 and len(load_trials(sweep_dir)) == 4


def test_random_sweep_extends_with_count_and_refuses_other_seed(tmp_path, capsys):
    cfg = config("random", optimizer={"values": ["sgd", "adam"]},
                 lr={"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, epochs={"value": 1})
    first = run_local_sweep(cfg, FakeTrainer(), tmp_path, count=3, seed=1, quiet=True)
    trainer = FakeTrainer()
    more = run_local_sweep(cfg, trainer, tmp_path, count=5, seed=1)
    assert [n for _, n in trainer.calls] == ["trial-003", "trial-004"] and more[:3] == first
    out = capsys.readouterr().out
    assert "3 of 5 trials already done; running 2" in out and "trial-004 val_acc=" in out
    assert [r.params for r in more] == [t.params for t in random_trials(cfg, count=5, seed=1)]
    with pytest.raises(UserError, match="seed"):
        run_local_sweep(cfg, FakeTrainer(), tmp_path, count=5, seed=2, quiet=True)


def test_summary_without_the_metric_and_corrupt_records_are_user_errors(tmp_path):
    def broken(params, name):
        raise UserError("data root missing")

    with pytest.raises(UserError, match="data root missing"):  # not a divergence: the sweep stops
        run_local_sweep(tiny_grid(), broken, tmp_path / "c", quiet=True)
    assert load_trials(tmp_path / "c") == []
    with pytest.raises(UserError, match="'val_acc'"):
        run_local_sweep(tiny_grid(), lambda params, name: {"acc": 1.0}, tmp_path / "a", quiet=True)
    run_local_sweep(tiny_grid(), FakeTrainer(), tmp_path / "b", quiet=True)
    trials_file = tmp_path / "b" / "trials.jsonl"
    lines = trials_file.read_text().splitlines()
    trials_file.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # a write cut off at the end
    trainer = FakeTrainer()
    run_local_sweep(tiny_grid(), trainer, tmp_path / "b", quiet=True)
    assert [n for _, n in trainer.calls] == ["trial-003"]
    trials_file.write_text("not json\n" + trials_file.read_text())
    with pytest.raises(UserError, match="line 1"):
        load_trials(tmp_path / "b")


@pytest.mark.parametrize("damage", ["[" * 100_000, "[1, 2]", '"trial"', "null", {"name": "x"},
                                    ("params", [1]), ("index", "3"), ("index", True), ("name", ["x"]),
                                    ("value", "high"), ("summary", 5)])
def test_a_trials_file_damaged_otherwise_is_one_line_and_kept(tmp_path, damage):
    """A trials.jsonl line nested too deep was a RecursionError traceback, a line that is a list an AttributeError,
    a name that is a list a TypeError (unhashable); every line that is no trial record is one line now, naming it,
    and the file is left as it was. load_trials and read_metrics share common.rundir.read_jsonl."""
    run_local_sweep(tiny_grid(), FakeTrainer(), tmp_path, quiet=True)
    trials_file = tmp_path / "trials.jsonl"
    lines = trials_file.read_text().splitlines()
    if isinstance(damage, tuple):                      # a field of another kind in a real record
        damage = json.dumps({**json.loads(lines[0]), damage[0]: damage[1]})
    elif isinstance(damage, dict):
        damage = json.dumps(damage)
    trials_file.write_text("\n".join([lines[0], damage, *lines[1:]]) + "\n")
    before = trials_file.read_bytes()
    with pytest.raises(UserError, match=r"trials.jsonl line 2 is not a trial record; fix or delete that line") as err:
        load_trials(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="line 2"):
        run_local_sweep(tiny_grid(), FakeTrainer(), tmp_path, quiet=True)
    assert trials_file.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# analysis, plots, table
# ------------------------------------------------------------------------------------------------
def synthetic_trials(n=24, seed=0) -> list[TrialResult]:
    """val_acc falls with log10(lr) only; optimizer, hidden and batch size are noise."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        params = {"lr": float(10 ** rng.uniform(-4, -1)), "optimizer": ["sgd", "adam", "nadam"][i % 3],
                  "hidden": [[64], [128, 64]][i % 2], "batch_size": int(rng.choice([16, 32, 64])), "epochs": 5}
        acc = 0.9 - 0.1 * (math.log10(params["lr"]) + 4) + rng.normal(0, 0.002)
        trials.append(TrialResult(f"trial-{i:03d}", i, params, "ok", "val_acc", acc, 1.0 + i,
                                  {"val_acc": acc}))
    trials.append(TrialResult("trial-099", 99, {**trials[0].params, "lr": 0.5}, "diverged", "val_acc",
                              math.nan, 0.5, {}, "NaN loss"))
    return trials


def test_analyse_finds_the_param_that_matters_and_matches_numpy():
    trials = synthetic_trials()
    result = analyse(trials, "val_acc", "maximize")
    names = [f.name for f in result.features]
    assert names[0] == "log10(lr)"  # lr spans > 2 decades: analysed in log space
    assert {"optimizer=sgd", "optimizer=adam", "hidden=128-64", "batch_size"} <= set(names)
    assert "epochs" not in names  # never changes
    lr = result.feature("log10(lr)")
    assert lr.correlation < -0.95 and lr.importance > 0.8
    assert sum(f.importance for f in result.features) == pytest.approx(1.0)
    finished = trials[:-1]
    y = [t.value for t in finished]
    expected = np.corrcoef(np.log10([t.params["lr"] for t in finished]), y)[0, 1]
    assert lr.correlation == pytest.approx(expected)
    adam = [float(t.params["optimizer"] == "adam") for t in finished]
    assert result.feature("optimizer=adam").correlation == pytest.approx(np.corrcoef(adam, y)[0, 1])
    assert result.diverged == ["trial-099"] and result.n_finished == 24
    assert result.best.name == "trial-" + f"{int(np.argmax(y)):03d}"


def test_analyse_few_trials_gives_correlations_only():
    trials = synthetic_trials(n=2)
    trials.append(TrialResult("trial-100", 100, {**trials[1].params, "optimizer": "nadam"}, "diverged",
                              "val_acc", math.nan, 0.5))
    result = analyse(trials, "val_acc", "maximize")
    assert result.n_finished == 2 and not result.has_importance and len(result.diverged) == 2
    assert all(math.isnan(f.importance) and math.isfinite(f.correlation) for f in result.features)
    assert result.feature("optimizer=nadam").correlation == 0.0  # constant over the finished trials
    assert abs(result.feature("optimizer=adam").correlation) == pytest.approx(1.0)  # two points
    assert any("at least 3 finished" in line for line in describe_findings(result, trials, "val_acc"))
    assert analyse([], "val_acc").features == []


def test_plots_table_and_findings(tmp_path):
    trials = synthetic_trials(n=12)
    params = ["lr", "optimizer", "hidden", "batch_size"]
    result = analyse(trials, "val_acc", "maximize")
    paths = [plot_parallel_coordinates(trials, params, "val_acc", tmp_path / "pc.png"),
             plot_importance(result, tmp_path / "imp.png"),
             plot_importance(analyse(trials[:2], "val_acc"), tmp_path / "imp2.png"),
             plot_metric_by_param(trials, params, "val_acc", tmp_path / "by.png")]
    for path in paths:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000

    table = runs_table(trials, params, "val_acc").splitlines()
    assert table[0] == "| rank | name | lr | optimizer | hidden | batch_size | val_acc | seconds |"
    shown = [float(row.split("|")[7].strip().rstrip("%")) for row in table[2:-1]]
    assert shown == sorted(shown, reverse=True) and table[2].startswith("| 1 | ")
    assert "| diverged |" in table[-1] and "trial-099" in table[-1]
    assert len(runs_table(trials, params, "val_acc", top=3).splitlines()) == 5
    loss_first = runs_table(trials, params, "val_loss_like", goal="minimize")  # absent metric: n/a, no crash
    assert loss_first.count("n/a") == 12

    findings = describe_findings(result, trials, "val_acc")
    text = "\n".join(findings)
    assert "12 finished, 1 diverged (trial-099)" in text
    assert "log10(lr): correlation with val_acc -" in text and "strong negative" in text
    line = next(line for line in findings if line.startswith("optimizer"))
    means = [float(part.split()[1].rstrip("%")) for part in line.split(": ", 1)[1].split(" > ")]
    assert means == sorted(means, reverse=True) and "(n=4)" in line
    assert "Most important features" in text and "log10(lr)" in findings[-1]


def test_discrete_axes_and_minimised_findings():
    trials = [TrialResult(f"t{i}", i, {"wd": [0, 5e-4, 0.5][i % 3], "hidden": [[256], [128, 64], [64]][i % 3],
                                       "act": ["tanh", "relu"][i % 2]},
                          "ok", "val_loss", 1.0 + 0.1 * (i % 3) + 0.01 * i, 1.0) for i in range(9)]
    assert levels([t.params["hidden"] for t in trials]) == ["64", "128-64", "256"]
    assert levels([t.params["wd"] for t in trials]) == ["0", "0.0005", "0.5"]  # a grid: ordered values
    assert levels([float(i) for i in range(20)]) is None  # continuous
    result = analyse(trials, "val_loss", "minimize")
    assert result.best.name == "t0" and result.feature("wd").correlation > 0.8
    line = next(line for line in describe_findings(result, trials, "val_loss") if line.startswith("act"))
    means = [float(part.split()[1]) for part in line.split(": ", 1)[1].rstrip(".").split(" < ")]
    assert means == sorted(means)  # lower is better: best first
    assert runs_table(trials, ["wd"], "val_loss", goal="minimize").splitlines()[2].startswith("| 1 | t0 |")


# ------------------------------------------------------------------------------------------------
# wandb wiring, through a fake wandb module
# ------------------------------------------------------------------------------------------------
class FakeRun:
    def __init__(self, config: dict, name: str):
        self.config, self.name, self.id = config, name, name
        self.summary: dict = {}
        self.finished = False

    def finish(self):
        self.finished = True


def fake_wandb() -> types.ModuleType:
    wandb = types.ModuleType("wandb")
    wandb.calls, wandb.runs = {}, []

    def sweep(sweep, project=None, entity=None):
        wandb.calls["sweep"] = {"sweep": sweep, "project": project, "entity": entity}
        return "abc123"

    def agent(sweep_id, function=None, count=None, project=None, entity=None):
        wandb.calls["agent"] = {"sweep_id": sweep_id, "count": count, "project": project}
        rng = np.random.default_rng(0)
        for i in range(count):
            wandb.pending = FakeRun(sample_params(wandb.calls["sweep"]["sweep"], rng), f"run-{i}")
            function()

    def init(**kwargs):
        wandb.runs.append(wandb.pending)
        return wandb.pending

    wandb.sweep, wandb.agent, wandb.init = sweep, agent, init
    return wandb


def test_wandb_sweep_wiring(monkeypatch):
    wandb = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    cfg = config("bayes", optimizer={"values": ["sgd", "adam"]}, epochs={"value": 2},
                 lr={"distribution": "log_uniform_values", "min": 1e-3, "max": 1.0})
    original = json.loads(json.dumps(cfg))
    trainer = FakeTrainer()
    sweep_id = run_wandb_sweep(cfg, trainer, project="fashion-ffn", count=3)
    assert sweep_id == "abc123"
    assert wandb.calls["sweep"] == {"sweep": original, "project": "fashion-ffn", "entity": None}
    assert wandb.calls["agent"] == {"sweep_id": "abc123", "count": 3, "project": "fashion-ffn"}
    assert [name for _, name in trainer.calls] == ["run-0", "run-1", "run-2"]
    for run, (params, _) in zip(wandb.runs, trainer.calls):
        assert params == run.config and run.finished
        assert run.summary["val_acc"] == pytest.approx(FakeTrainer()(params, "again")["val_acc"])
        assert run.summary["status"] == "ok" and "note" in run.summary
    assert cfg == original  # the caller's config is not touched

    wandb = fake_wandb()  # a diverging trial: recorded as such, the run still finished
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    run_wandb_sweep(config("grid", optimizer={"value": "sgd"}, lr={"value": 1.0}, epochs={"value": 1}),
                    FakeTrainer(), project="p", count=1)
    assert wandb.runs[0].summary == {"status": "diverged", "error": "loss became NaN at step 3"}
    assert wandb.runs[0].finished


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine nested lists of nine aliases each parse into little; the sweep grew to 11 GB in a minute using it."""
    import time

    lines = ["method: grid", "metric: {name: val_acc, goal: maximize}", 'l0: &l0 ["lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines + ["parameters:", "  lr: {values: *l9}"]) + "\n")
    start = time.perf_counter()
    with pytest.raises(UserError, match="holds more than 100,000 values \\(YAML aliases counted where they are used"):
        load_sweep_config(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 5
    (tmp_path / "ok.yaml").write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\nlrs: &lrs [0.1, 0.01]\n"
                                      "parameters:\n  lr: {values: *lrs}\n")   # an alias as such is fine
    assert load_sweep_config(tmp_path / "ok.yaml")["parameters"]["lr"]["values"] == [0.1, 0.01]


@pytest.mark.parametrize("spec, count", [({"min": 1, "max": 10 ** 12}, "1,000,000,000,000"),
                                         ({"min": 1, "max": 10 ** 21}, "1,000,000,000,000,000,000,000"),
                                         ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 1e-12},
                                          "1,000,000,000,001")])
def test_a_grid_parameter_too_wide_to_list_is_refused(tmp_path, spec, count):
    """An int_uniform of 1 .. 10**12 ran out of memory listing its grid, a q_uniform with q 1e-12 ran for ever."""
    (tmp_path / "wide.json").write_text(json.dumps(config(lr=spec)))
    with pytest.raises(UserError, match=f"parameter 'lr' spans {count} grid values, more than 100,000; narrow"):
        load_sweep_config(tmp_path / "wide.json")


def test_a_grid_too_large_to_run_to_its_end_needs_a_count():
    """A product of grids listed every trial before the first ran (1,000 x 1,000 here; 10**20 would never end)."""
    wide = config(hidden_size={"min": 1, "max": 1000}, batch_size={"min": 1, "max": 1000})
    with pytest.raises(UserError, match="the grid holds 1,000,000 trials, more than 100,000 run to the end; pass "
                                        "--count N"):
        grid_trials(wide)
    assert [t.params for t in grid_trials(wide, count=2)] == [{"hidden_size": 1, "batch_size": 1},
                                                                {"hidden_size": 1, "batch_size": 2}]
    assert len(grid_trials({**wide, "run_cap": 3})) == 3
