"""mnist_scratch's foundation experiments: activations.py, xor.py, approximation.py, gradient_flow.py,
and the regression loss approximation.py trains with."""
import json

import numpy as np
import pytest

from mnist_scratch.engine.gradcheck import numerical_gradient, rel_error
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import REGRESSION_LOSSES
from mnist_scratch import activations, approximation, gradient_flow, xor
from tests.conftest import REPO, run_script

SCRIPTS = {"activations": activations, "xor": xor, "approximation": approximation, "gradient_flow": gradient_flow}
SHARED_FLAGS = ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-root", "--data", "--out",
                "--wandb", "--resume", "--overwrite", "--smoke")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_smoke_run_from_another_directory_writes_every_artefact(name, tmp_path):
    out = tmp_path / "run"
    done = run_script(str(REPO / "mnist_scratch" / f"{name}.py"), "--smoke", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for artefact in ("config.json", "metrics.jsonl", "summary.json"):
        assert (out / artefact).stat().st_size > 0, artefact
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"] and all((out / f).stat().st_size > 0 for f in summary["figures"])
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["smoke"] is True and summary["data_source"] == config["data_source"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_bad_flag_is_one_line_and_help_lists_the_shared_flags(name):
    done = run_script(str(REPO / "mnist_scratch" / f"{name}.py"), "--no-such-flag")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "unrecognized arguments: --no-such-flag" in done.stderr
    text = SCRIPTS[name].build_parser().format_help()
    assert all(flag in text for flag in SHARED_FLAGS)


def test_activation_derivatives_match_centred_differences():
    x = np.linspace(-6, 6, 1201)                                  # float64, 0 on the grid (skipped: kink)
    for name in ACTIVATIONS:
        value, derivative, stats = activations.check(name, x)
        assert value.shape == derivative.shape == x.shape
        assert stats["max_derivative_error"] < 1e-8 and stats["max_backward_error"] < 1e-8, name
    assert activations.check("sigmoid", x)[2]["max_derivative"] == pytest.approx(0.25)


def test_a_wide_range_checks_the_derivatives_without_calling_them_wrong(monkeypatch):
    """`activations.py --range 1e9` said the derivative check failed for relu and leaky_relu (error 1.4e-3): x + 1e-5
    at x = 1e9 is off by float64's ulp. The step grows with |x| beyond 1e3; a wrong derivative is still caught there."""
    x = np.linspace(-1e9, 1e9, 2001)
    for name in ACTIVATIONS:
        stats = activations.check(name, x)[2]
        assert stats["max_derivative_error"] < 1e-6 and stats["max_backward_error"] < 1e-6, (name, stats)
    relu = ACTIVATIONS["relu"]
    monkeypatch.setattr(relu, "derivative", lambda x: (x > 0) * 1.001)
    assert activations.check("relu", x)[2]["max_derivative_error"] == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.slow
def test_activations_command_fails_in_one_line_when_the_tolerance_is_unreachable(tmp_path):
    done = run_script(str(REPO / "mnist_scratch" / "activations.py"), "--tolerance", "1e-30",
                      "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "derivative check failed for" in done.stderr
    assert (tmp_path / "r" / "summary.json").exists(), "the measurements are kept"


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_xor_is_solved_on_all_four_points(seed, tmp_path):
    summary = xor.main(["--seed", str(seed), "--out", str(tmp_path / "r")])
    assert summary["points_acc"] == 1.0 and summary["solved"]
    assert summary["epochs_to_solve"] < summary["epochs"] / 2
    probs = list(summary["p_class1"].values())                    # (0,0), (0,1), (1,0), (1,1)
    assert probs[0] < 0.1 and probs[3] < 0.1 and probs[1] > 0.9 and probs[2] > 0.9


def test_resume_restarts_without_duplicating_records(tmp_path):
    out = tmp_path / "r"
    xor.main(["--epochs", "30", "--out", str(out)])
    first = (out / "metrics.jsonl").read_text()
    xor.main(["--epochs", "30", "--out", str(out), "--resume"])
    assert (out / "metrics.jsonl").read_text() == first and len(first.splitlines()) == 30


def test_approximation_error_falls_as_the_hidden_layer_widens(tmp_path):
    summary = approximation.main(["--widths", "1", "64", "--epochs", "1500", "--out", str(tmp_path / "r")])
    assert [r["width"] for r in summary["rows"]] == [1, 64]
    assert summary["last_grid_mse"] < summary["first_grid_mse"] / 100
    assert summary["data_source"].startswith("generated: 256 samples of sin(3x)")


def test_gradients_vanish_through_sigmoid_but_not_relu(tmp_path):
    summary = gradient_flow.main(["--smoke", "--activations", "sigmoid", "relu", "--out", str(tmp_path / "r")])
    sigmoid, relu = summary["activations"]["sigmoid"], summary["activations"]["relu"]
    assert len(sigmoid["grad_norms_init"]) == 9                   # 8 hidden Dense layers + the output layer
    assert sigmoid["ratio_first_last_init"] < 1e-3 < 0.1 < relu["ratio_first_last_init"]
    assert sigmoid["ratio_first_last_init"] < relu["ratio_first_last_init"] / 1e3
    assert sigmoid["init"] == "xavier" and relu["init"] == "he"
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert {r["activation"] for r in records} == {"sigmoid", "relu"}


def test_mse_gradient_matches_centred_differences_and_torch():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    loss, dpred = REGRESSION_LOSSES["mse"](pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2))
    assert rel_error(dpred, numerical_gradient(lambda: REGRESSION_LOSSES["mse"](pred, target)[0], pred)) < 1e-7
    torch = pytest.importorskip("torch")
    p = torch.tensor(pred, requires_grad=True)
    expected = torch.nn.functional.mse_loss(p, torch.tensor(target))
    expected.backward()
    assert loss == pytest.approx(expected.item()) and np.allclose(dpred, p.grad.numpy())


def test_the_numpy_scripts_do_not_load_torch():
    """The from-scratch assignments are NumPy only: importing their scripts loads no torch (it came in through the
    progress bar's rank check and end_epoch, about 2 s of every --help). torch.save still writes their checkpoints,
    imported when the first one is saved."""
    import subprocess
    import sys

    modules = ["mnist_scratch.train", "mnist_scratch.activations", "mnist_scratch.xor", "mnist_scratch.approximation",
               "mnist_scratch.gradient_flow", "fashion_mnist_ffn.train", "fashion_mnist_ffn.sweep"]
    code = ("import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
