"""Checkpoints: written atomically (temp file, fsync, rename) and read with weights_only=True.
NumPy arrays are stored as tensors, so NumPy models use the same safe format as PyTorch ones."""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.formats import regular_file


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


TEMP_PATTERN = ".?*.*.tmp"   # what temp_file names: .<name>.<random>.tmp


def temp_file(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temp file beside `path` for an atomic write (write it, then os.replace it onto
    `path`); named .<name>.<random>.tmp, so that remove_stale_temp_files finds one a killed write left."""
    return tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files that atomic writes killed mid-way left in `folder` (checkpoint.pt, best.pt,
    recognizer.pt, config.json, metrics.jsonl, ...); returns them. Call it where one process owns the folder."""
    removed = [p for p in Path(folder).glob(TEMP_PATTERN) if p.is_file()]
    for stale in removed:
        stale.unlink(missing_ok=True)
    return removed


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` so that a crash at any moment leaves the old file or the new one."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
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


# lines of PyTorch's weights_only messages that advise loading unsafely or point elsewhere: never repeated
_TORCH_ADVICE = ("weights only load failed", "weights_only", "file an issue", "check the documentation",
                 "do it only if", "trust the source")


def _torch_detail(err: Exception) -> str:
    """What went wrong in one line, from a torch.load error, without PyTorch's advice to load unsafely."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if not any(advice in line.lower() for advice in _TORCH_ADVICE)]
    return (kept[0] if kept else type(err).__name__)[:200]


def torch_load(path: Path, *, map_location: str = "cpu", fix: str = "delete it or start over with --overwrite"):
    """torch.load(path, weights_only=True) with every failure one UserError naming `path` and `fix`: a file that
    asks for any global beyond tensors and plain containers is refused (nothing of it runs), a damaged one is
    called corrupt; PyTorch's warnings (e.g. about a raw pickle's protocol) and its advice to load with
    weights_only=False are never shown."""
    import torch

    path = regular_file(path, fix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"unsupported global:?\s*(?:GLOBAL\s+)?([^\s,]+)", text, re.IGNORECASE)
        if found:
            raise UserError(f"refused checkpoint {path}: it holds {found.group(1)[:120]}, not only tensors and plain "
                            f"containers (this project never writes that), and nothing of it was run; {fix}") from None
        raise UserError(f"corrupt checkpoint {path} ({_torch_detail(err)}); {fix}") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError, KeyError, IndexError,
            MemoryError, RecursionError) as err:
        raise UserError(f"corrupt checkpoint {path} ({_torch_detail(err)}); {fix}") from None


def load_checkpoint(path: Path, *, as_numpy: bool = False, map_location: str = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; a damaged file is a UserError, not a traceback."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}")
    state = torch_load(path, map_location=map_location)
    return _to_numpy(state) if as_numpy else state


def check_finite(tree: Any, path: Path | str, fix: str = "the file is damaged: train it again or fetch it again"
                 ) -> Any:
    """`tree` (weights: a state_dict, or any nest of dicts / lists holding tensors or arrays) unchanged when every
    floating-point value in it is finite; else a UserError naming `path` and the first bad entry. NaN weights
    in a loaded model are corrupt input (exit 2), not a run that diverged (exit 3)."""
    import torch

    def walk(node: Any, name: str):
        if isinstance(node, torch.Tensor):
            if node.is_floating_point() and not bool(torch.isfinite(node).all()):
                return name
        elif isinstance(node, np.ndarray):
            if node.dtype.kind == "f" and not np.isfinite(node).all():
                return name
        elif isinstance(node, dict):
            return next((bad for k, v in node.items() if (bad := walk(v, f"{name}.{k}" if name else str(k)))), None)
        elif isinstance(node, (list, tuple)):
            return next((bad for i, v in enumerate(node) if (bad := walk(v, f"{name}[{i}]"))), None)
        return None

    bad = walk(tree, "")
    if bad is not None:
        raise UserError(f"{path}: the weights hold NaN or infinite values (first in {bad[:120]}); {fix}")
    return tree
