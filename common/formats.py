"""Parsers (and writers, for tests) of the real data sets' on-disk formats: MNIST's IDX files and
CIFAR's python pickles. Every malformed file raises a UserError naming the file and the fix."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from common.errors import UserError

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> big-endian dtype
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
REDOWNLOAD = "delete it and fetch it again (--data auto while online)"


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally .gz) into an array of its declared shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read IDX file {path}: {err}; {REDOWNLOAD}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"corrupt IDX file {path}: bad magic number; {REDOWNLOAD}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"corrupt IDX file {path}: truncated header; {REDOWNLOAD}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise UserError(f"corrupt IDX file {path}: expected {expected} data bytes for shape {shape}, "
                        f"found {found}; {REDOWNLOAD}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in IDX format, gzipped when the name ends in .gz (tests make files in the real
    format with it)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    array = np.asarray(array)
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(IDX_DTYPES[code]).tobytes()
    Path(path).write_bytes(gzip.compress(payload) if str(path).endswith(".gz") else payload)


def read_cifar_batch(path: Path, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch -> images (N, 32, 32, 3) uint8 and labels (N,) int64."""
    entry = _unpickle(path)
    try:
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key.encode()], dtype=np.int64)
    except KeyError as err:
        raise UserError(f"corrupt CIFAR batch {path}: missing key {err}; {REDOWNLOAD}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise UserError(f"corrupt CIFAR batch {path}: data {data.shape} and {len(labels)} labels do not "
                        f"fit (N, 3072); {REDOWNLOAD}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def read_cifar_meta(path: Path, key: str = "label_names") -> list[str]:
    """Class names from CIFAR's batches.meta (CIFAR-10) or meta (CIFAR-100)."""
    entry = _unpickle(path)
    try:
        return [name.decode() for name in entry[key.encode()]]
    except KeyError:
        raise UserError(f"corrupt CIFAR meta file {path}: no '{key}'; {REDOWNLOAD}") from None


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str = "labels") -> None:
    """Write images (N, 32, 32, 3) uint8 as a CIFAR python batch (used by tests)."""
    data = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    entry = {b"batch_label": b"test", label_key.encode(): [int(v) for v in labels], b"data": data}
    with open(path, "wb") as handle:
        pickle.dump(entry, handle)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")
    except FileNotFoundError:
        raise UserError(f"missing file {path}; {REDOWNLOAD}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise UserError(f"corrupt CIFAR file {path} ({type(err).__name__}); {REDOWNLOAD}") from None
    if not isinstance(entry, dict):
        raise UserError(f"corrupt CIFAR file {path}: not a CIFAR batch; {REDOWNLOAD}")
    return entry
