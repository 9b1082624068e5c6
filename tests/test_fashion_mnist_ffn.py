"""fashion_mnist_ffn: loaders on files in the real formats, the hold-out, the model's flags, every
optimizer through train.py, resume, and the artefacts questions 1, 7 and 8 need."""
import json
import os

import numpy as np
import pytest

from common.errors import UserError
from mnist_scratch.engine.losses import LOSSES
from fashion_mnist_ffn import train
from fashion_mnist_ffn.data import hold_out, load_fashion, one_per_class
from fashion_mnist_ffn.model import FFNConfig, build_model, hidden_sizes
from tests.conftest import REPO, run_script, write_mnist_layout


@pytest.fixture
def fashion_root(tmp_path):
    write_mnist_layout(tmp_path / "data", n_train=200, n_test=60, folder="FashionMNIST/raw")
    return tmp_path / "data"


def test_common_loader_reads_the_torchvision_layout_and_holds_out_ten_percent(fashion_root):
    data = load_fashion(loader="common", mode="real", root=fashion_root, seed=0, smoke=False)
    assert data.source.startswith("real: FashionMNIST (200 train / 60 test)")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (180, 20, 60)
    assert data.x_train.shape == (180, 784) and data.x_train.dtype == np.float32
    assert abs(data.x_train.mean()) < 1e-4 and abs(data.x_train.std() - 1) < 1e-3  # standardised on train
    assert data.classes[0] == "T-shirt/top" and data.train_images.shape == (180, 28, 28)


def test_hold_out_is_disjoint_seeded_and_complete():
    train_idx, val_idx = hold_out(1000, 0.1, seed=3)
    assert len(val_idx) == 100 and not set(train_idx) & set(val_idx)
    assert sorted(np.concatenate([train_idx, val_idx])) == list(range(1000))
    assert np.array_equal(hold_out(1000, 0.1, seed=3)[1], val_idx)
    assert not np.array_equal(hold_out(1000, 0.1, seed=4)[1], val_idx)


@pytest.mark.slow
def test_real_mode_without_files_names_the_folder(tmp_path):
    done = run_script(str(REPO / "fashion_mnist_ffn/train.py"), "--data", "real", "--data-root",
                      str(tmp_path / "empty"), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "FashionMNIST not found under" in done.stderr and "FashionMNIST/raw" in done.stderr


@pytest.mark.slow
def test_keras_loader_reads_keras_cache_of_gz_files(tmp_path):
    """keras.datasets.fashion_mnist.load_data() on its cache ($KERAS_HOME/datasets/fashion-mnist)."""
    keras_home = tmp_path / "keras_home"
    write_mnist_layout(keras_home, n_train=100, n_test=30, folder="datasets/fashion-mnist", gz=True)
    out = tmp_path / "run"
    env_before = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(keras_home)
    try:
        done = run_script(str(REPO / "fashion_mnist_ffn/train.py"), "--loader", "keras", "--data", "real",
                          "--epochs", "1", "--hidden", "8", "--out", str(out), cwd=tmp_path)
    finally:
        os.environ.pop("KERAS_HOME") if env_before is None else os.environ.__setitem__("KERAS_HOME", env_before)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_source"].startswith("real: Fashion-MNIST via keras.datasets (100 train / 30 test)")


def test_keras_loader_real_mode_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    from common import download

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras"))
    monkeypatch.setattr(download, "reachable", lambda url, timeout=5.0: False)
    with pytest.raises(UserError, match="Fashion-MNIST not found under keras's cache"):
        load_fashion(loader="keras", mode="real", root=tmp_path, seed=0, smoke=False)
    data = load_fashion(loader="keras", mode="auto", root=tmp_path, seed=0, smoke=False)
    assert data.source.startswith("generated")


def test_hidden_layer_flags_build_the_network():
    assert hidden_sizes(3, 64, None) == (64, 64, 64)
    assert hidden_sizes(3, 64, [128, 32]) == (128, 32)
    config = FFNConfig(hidden=(32, 16), activation="tanh", init="xavier")
    net = build_model(config, seed=0)
    shapes = [w.shape for w in net.params().values()]
    assert shapes == [(784, 32), (32,), (32, 16), (16,), (16, 10), (10,)]
    assert config.parameter_count() == sum(int(np.prod(s)) for s in shapes)
    assert FFNConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_defaults_are_the_recipe_and_build_the_readme_network():
    args = train.parse(["--wandb", "off"])
    actions = {a.dest: a for a in train.build_parser()._actions}
    for name, value in train.RECIPE.items():
        assert actions[name].default == getattr(args, name) == value, name
    assert hidden_sizes(args.num_layers, args.hidden_size, args.hidden) == FFNConfig().hidden == (256, 256)
    smoke = train.parse(["--wandb", "off", "--smoke", "--hidden", "64", "64"])
    assert (smoke.epochs, smoke.num_layers, smoke.hidden_size, smoke.hidden) == (2, 1, 16, None)


def test_one_image_per_class_in_class_order():
    labels = np.array([3, 1, 1, 0, 2, 3])
    images = np.arange(6)[:, None, None] * np.ones((6, 2, 2))
    grid, found = one_per_class(images, labels, 4)
    assert found == [0, 1, 2, 3] and [int(g[0, 0]) for g in grid] == [3, 1, 4, 0]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam"])
def test_every_optimizer_learns_the_embedded_set(optimizer, tmp_path):
    lr = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01}.get(optimizer, 1e-3)
    summary = train.main(["--data", "generated", "--optimizer", optimizer, "--lr", str(lr), "--epochs", "3",
                          "--hidden", "32", "--batch-size", "32", "--out", str(tmp_path / optimizer)])
    assert summary["val_acc"] > 0.5, summary  # ten classes: chance is 10%
    assert summary["optimizer"] == optimizer


def test_squared_error_run_and_artefacts(tmp_path):
    out = tmp_path / "se"
    summary = train.main(["--smoke", "--loss", "squared_error", "--out", str(out)])
    for name in ("curves.png", "samples.png", "confusion.png", "confusion_normalised.png"):
        assert (out / name).stat().st_size > 0, name
    matrix = np.array(summary["confusion"])
    assert matrix.sum() == 128 and summary["loss"] == "squared_error"
    assert abs(np.trace(matrix) / matrix.sum() - summary["test_acc"]) < 1e-12


@pytest.mark.slow
def test_interrupted_then_resumed_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    flags = ["--data", "generated", "--hidden", "16", "--batch-size", "128", "--seed", "1", "--epochs", "3"]
    full = train.main([*flags, "--out", str(tmp_path / "full")])
    metrics, real_loss, calls_in_epoch_3 = tmp_path / "cut" / "metrics.jsonl", LOSSES["cross_entropy"], []

    def interrupted_in_epoch_3(logits, y):   # at its 5th step, after 4 updates in memory only
        if metrics.exists() and metrics.read_text().count("\n") == 2:
            calls_in_epoch_3.append(1)
            if len(calls_in_epoch_3) == 5:
                raise KeyboardInterrupt
        return real_loss(logits, y)

    monkeypatch.setitem(LOSSES, "cross_entropy", interrupted_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train.main([*flags, "--out", str(tmp_path / "cut")])
    monkeypatch.setitem(LOSSES, "cross_entropy", real_loss)
    resumed = train.main([*flags, "--out", str(tmp_path / "cut"), "--resume"])
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
    records = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [(["--val-fraction", "1.5"], "strictly between 0 and 1"),
                                           (["--optimizer", "adagrad"], "invalid choice: 'adagrad'"),
                                           (["--num-layers", "0"], "expected an integer from 1 to 1,000")])
def test_bad_flags_are_one_line(flags, message):
    done = run_script(str(REPO / "fashion_mnist_ffn/train.py"), *flags)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("optimizer, flag, users", [("sgd", "--beta1", "adam, nadam"), ("adam", "--alpha", "rmsprop"),
                                                    ("rmsprop", "--momentum", "momentum, nesterov")])
def test_an_optimizer_option_the_optimizer_does_not_use_is_refused(optimizer, flag, users):
    with pytest.raises(UserError, match=f"{flag} is not used by --optimizer {optimizer}; it applies to {users}"):
        train.parse(["--wandb", "off", "--threads", "1", "--optimizer", optimizer, flag, "0.5"])
    args = train.parse(["--wandb", "off", "--threads", "1", "--optimizer", "rmsprop", "--alpha", "0.5",
                        "--eps", "1e-6"])
    assert (args.alpha, args.eps) == (0.5, 1e-6)
