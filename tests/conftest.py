"""Shared fixtures. Nothing here touches the network or a GPU; wandb stays off."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.formats import write_idx
from common.rundir import RunDir

REPO = Path(__file__).resolve().parent.parent
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make check` / `make test` run one pytest worker per core (pytest-xdist): each worker and the scripts it
    # launches take one thread, so two workers never fight over a core (the spin-and-wait cliff of
    # bench/cpu_threads.py). Set before torch is imported; a script's own --threads still applies.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
os.environ.pop("WANDB_API_KEY", None)
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"


@pytest.fixture(autouse=True)
def no_thread_governor_across_tests():
    """A test's own `--threads auto` run may leave common.runtime's ThreadGovernor installed; the next test
    must not have its thread count changed by it."""
    yield
    from common import runtime

    runtime._governor = None


def run_script(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a repo script as a user would: `python <script> <args>`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def write_mnist_layout(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0,
                       folder: str = "MNIST/raw", gz: bool = False) -> Path:
    """Tiny MNIST-format IDX files under root/<folder> (torchvision's layout by default; `gz` writes
    the .gz files keras and the original site serve)."""
    rng = np.random.default_rng(seed)
    raw = root / folder
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):  # a learnable bright bar whose row encodes the label
            images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
        suffix = ".gz" if gz else ""
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return raw


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    write_mnist_layout(tmp_path / "data")
    return tmp_path / "data"


def kill_after_first_checkpoint(main, argv: list[str], monkeypatch) -> None:
    """Runs `main(argv)` with a Ctrl-C right after its first checkpoint is written (the run must stop there),
    then undoes the test's monkeypatches, so that a `--resume` run can follow."""
    save = RunDir.save_checkpoint

    def save_then_interrupt(self, state):
        save(self, state)
        raise KeyboardInterrupt
    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    monkeypatch.undo()
