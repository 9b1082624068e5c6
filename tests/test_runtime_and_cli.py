"""Seeding, device choice, and the shared flags' resolution."""
import numpy as np
import pytest
import torch

from common import REPO_ROOT
from common.cli import make_parser, parse_args
from common.errors import UserError
from common.runtime import choose_device, hardware_info, seed_everything


def test_seed_everything_makes_numpy_and_torch_repeat():
    seed_everything(5)
    first = (np.random.rand(3), torch.rand(3))
    seed_everything(5)
    second = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_device_choice():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda is not available"):
            choose_device("cuda")


def test_hardware_info_names_the_machine():
    info = hardware_info("cpu")
    assert info["cpu_count"] >= 1 and info["torch"] == torch.__version__


def _parse(argv):
    parser = make_parser("demo", epochs=3, batch_size=8, lr=0.1)
    return parse_args(parser, argv, assignment="demo", run_name=lambda a: f"lr{a.lr}")


def test_defaults_resolve_out_dir_and_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    args = _parse([])
    assert args.out == REPO_ROOT / "runs" / "demo" / "lr0.1"
    assert args.wandb == "off" and args.data == "auto" and args.epochs == 3
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert _parse([]).wandb == "online"
    assert _parse(["--smoke"]).wandb == "off"  # smoke never logs unless asked


def test_smoke_forces_cpu_and_its_own_scratch_dir():
    args = _parse(["--smoke", "--device", "cuda"])
    assert args.device == "cpu" and args.overwrite
    assert args.out == REPO_ROOT / "runs" / "smoke" / "demo" / "lr0.1"


@pytest.mark.parametrize("argv,message", [(["--epochs", "0"], "positive integer"), (["--lr", "-1"], "positive number"),
                                          (["--data", "web"], "invalid choice")])
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
