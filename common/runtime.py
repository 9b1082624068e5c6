"""Seeding, device choice and a description of the machine a run used."""
from __future__ import annotations

import os
import platform
import random
import subprocess

import numpy as np

from common import REPO_ROOT
from common.errors import UserError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when it is already imported) torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch = _torch_if_loaded()
    if torch is not None:
        torch.manual_seed(seed)


def choose_device(name: str) -> str:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if name == "auto":
        return next(dev for dev in ("cuda", "mps", "cpu") if available[dev])
    if not available.get(name, False):
        raise UserError(f"--device {name} is not available on this machine; use --device auto or cpu")
    return name


def git_commit() -> str:
    """The repository's HEAD commit (with '+dirty' for uncommitted changes), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware_info(device: str = "cpu") -> dict:
    """What ran the job: enough to say where a figure came from."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "device": device,
    }
    torch = _torch_if_loaded()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")
