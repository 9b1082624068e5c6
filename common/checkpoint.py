"""Checkpoints: written atomically (temp file, fsync, rename) and read with weights_only=True.
NumPy arrays are stored as tensors, so NumPy models use the same safe format as PyTorch ones."""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError


def _to_torch(tree: Any) -> Any:
    import torch

    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    if isinstance(tree, dict):
        return {k: _to_torch(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_torch(v) for v in tree)
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _to_numpy(tree: Any) -> Any:
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.numpy()
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy(v) for v in tree)
    return tree


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` so that a crash at any moment leaves the old file or the new one."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(_to_torch(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def load_checkpoint(path: Path, *, as_numpy: bool = False, map_location: str = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; a damaged file is a UserError, not a traceback."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:     # PyTorch's text advises loading unsafely: we never repeat it
        text = str(err)
        if "Unsupported global" in text:
            found = re.search(r"GLOBAL (\S+)", text)
            raise UserError(f"refused checkpoint {path}: it holds {found.group(1) if found else 'an object'}, not only "
                            f"tensors and plain containers (this project never writes that); delete it or start "
                            f"over with --overwrite") from None
        detail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
        detail = next((line.strip() for line in detail.splitlines() if line.strip()), type(err).__name__)
        raise UserError(f"corrupt checkpoint {path} ({detail[:200]}); delete it or start over with "
                        f"--overwrite") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise UserError(f"corrupt checkpoint {path} ({_first_line(err)}); delete it or start over with "
                        f"--overwrite") from None
    return _to_numpy(state) if as_numpy else state
