"""The NumPy CNN in mnist_scratch: artefacts, rebuilding from a checkpoint, receptive fields."""
import json

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from mnist_scratch.engine.network import AvgPool2D, Conv2D
from mnist_scratch import train
from mnist_scratch.model import CNNConfig, MLPConfig, build_model, config_from_dict


def test_cnn_smoke_writes_filters_and_receptive_fields(tmp_path):
    summary = train.main(["--smoke", "--model", "cnn", "--out", str(tmp_path / "r")])
    assert (tmp_path / "r" / "filters_conv1.png").stat().st_size > 0
    assert summary["filter_figures"] == ["filters_conv1.png"]
    assert summary["receptive_fields"][-1] == {"layer": "pool1", "field": 4, "jump": 2}


@pytest.mark.slow
def test_cnn_learns_on_the_embedded_digits(tmp_path):
    summary = train.main(["--data", "generated", "--model", "cnn", "--channels", "8", "--hidden", "32",
                          "--epochs", "3", "--out", str(tmp_path / "r")])
    assert summary["test_acc"] > 0.85


def test_batch_gd_is_refused_for_the_cnn(tmp_path):
    from common.errors import UserError
    with pytest.raises(UserError, match="--gd batch does not support --model cnn; use --gd sgd or --gd minibatch"):
        train.main(["--smoke", "--model", "cnn", "--gd", "batch", "--out", str(tmp_path / "r")])


@pytest.mark.parametrize("flags", [["--model", "mlp"], ["--model", "cnn", "--pool", "avg"]])
def test_checkpoint_alone_rebuilds_the_model(flags, tmp_path):
    out = tmp_path / "r"
    train.main(["--smoke", *flags, "--out", str(out)])
    state = load_checkpoint(out / "checkpoint.pt", as_numpy=True)
    config = config_from_dict(state["model_config"])
    net = build_model(config, seed=123)  # other seed: the weights come from the checkpoint
    net.load_state_dict(state["model"])
    x = np.random.default_rng(0).standard_normal((4, 784)).astype(np.float32)
    again = build_model(config, seed=456)
    again.load_state_dict(state["model"])
    np.testing.assert_array_equal(net.logits(x), again.logits(x))


def _footprint(layers: list, image: int = 32) -> int:
    """Width of the input region that one central output unit of `layers` depends on, measured by
    back-propagating a one-hot gradient through the real NumPy layers (all-ones filters, so no
    cancellation hides a dependency)."""
    x = np.ones((1, 1, image, image))
    caches = []
    for layer in layers:
        x, cache = layer.forward(x)
        caches.append(cache)
    dout = np.zeros_like(x)
    dout[0, 0, x.shape[2] // 2, x.shape[3] // 2] = 1.0
    for layer, cache in zip(reversed(layers), reversed(caches)):
        dout, _ = layer.backward(dout, cache)
    cols = np.nonzero(np.abs(dout[0, 0]).sum(axis=0))[0]
    return int(cols.max() - cols.min() + 1)


def test_receptive_fields_match_the_gradient_footprint():
    config = CNNConfig(channels=(2, 2), pool="avg")
    stack = [layer for layer in build_model(config, 0).layers if isinstance(layer, (Conv2D, AvgPool2D))]
    for layer in stack:
        for name, value in layer.params.items():
            layer.params[name] = (np.ones_like if name == "w" else np.zeros_like)(value, dtype=np.float64)
    expected = config.receptive_fields()
    assert [field for _, field, _ in expected] == [3, 4, 8, 10]
    for depth, (name, field, _) in enumerate(expected, 1):
        assert _footprint(stack[:depth]) == field, name


def test_mlp_config_round_trips():
    config = MLPConfig(hidden=(7, 5))
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
