"""Parsers (and writers, for tests) of the real data sets' on-disk formats: MNIST's IDX files,
CIFAR's python pickles and NumPy's .npz archives. Every malformed file raises a UserError naming the
file and the fix, and so does a path that is no regular file (`regular_file`: a FIFO or a device where a
data file should be would hang the reader or never end), and a file that would fill the memory: a text file
read whole is refused over its size (`read_text`), a line over its format's length (`bounded_lines`), an
.npz whose arrays unpack past MAX_NPZ_BYTES (a zip bomb).

Pickles (CIFAR's batches, the object arrays of an .npz) are read by a restricted unpickler that
builds only what those files hold (dicts, lists, tuples, bytes, str, numbers and NumPy arrays): a
pickle that asks for anything else (a function, a class) is refused before anything runs."""
from __future__ import annotations

import gzip
import numbers
import os
import pickle
import stat
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from common.errors import BAD_PATHS, UserError

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> big-endian dtype
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
REDOWNLOAD = "delete it and fetch it again (--data auto while online)"
MAX_IDX_BYTES = 1 << 32   # 4 GiB: a larger IDX body (or a .gz that expands past it) is refused, not read
MAX_NPZ_BYTES = 1 << 32   # 4 GiB: the arrays of an .npz, unpacked (a zip bomb is refused before it expands)
MAX_TEXT_BYTES = 1 << 28  # 256 MiB: a json or text file read whole (MathQA's train.json is about 20 MB)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path: Path, fix: str = REDOWNLOAD) -> Path:
    """`path` when it is a regular file (symlinks followed) or missing (the caller's open() says so). Anything
    else is a one-line UserError naming it and `fix`: opening a named pipe waits for a writer for ever, and a
    device such as /dev/zero never ends (read as a GloVe or IDX file it filled the machine's memory)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err}); {fix}") from None
    if stat.S_ISREG(mode):
        return path
    raise UserError(f"{path} is {_kind(mode)}, not a data file; {fix}")


def is_whole(value: Any) -> bool:
    """An integer (Python's or NumPy's), not a bool (True is an int to Python): what a count, an epoch or an index
    read from a file must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (int, float or NumPy's), not a bool; NaN and infinities included (math.isfinite tells)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def given_file(path: Path | str, flag: str, fix: str) -> Path:
    """The file a flag names (--train-file, --pretrained), `~` expanded: a regular file (symlinks followed), or a
    one-line UserError naming the flag, the path and `fix` that says what is there instead: nothing, a
    directory, a named pipe, a device (/dev/null was "no such file")."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{flag} {path}: no such file; {fix}") from None
    except OSError as err:
        why = BAD_PATHS.get(err.errno) or f"cannot read it ({err.strerror or err})"
        raise UserError(f"{flag} {path}: {why}; {fix}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{flag} {path} is {_kind(mode)}, not a file; {fix}")
    return path


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_text(path: Path, fix: str, limit: int | None = None) -> str:
    """The UTF-8 text of a file read whole (a json file, a run's metrics). What is no regular file is refused
    (`regular_file`), and so is one over `limit` bytes (default MAX_TEXT_BYTES), before it fills the memory.
    OSError and UnicodeDecodeError are the caller's to word."""
    limit = MAX_TEXT_BYTES if limit is None else limit
    with open(regular_file(path, fix), "rb") as handle:
        too_large = os.fstat(handle.fileno()).st_size > limit
        data = b"" if too_large else handle.read(limit + 1)   # + 1: the file may have grown since
    if too_large or len(data) > limit:
        raise UserError(f"{path} is over {limit:,} bytes, more than this file ever holds; {fix}")
    return data.decode("utf-8")


def bounded_lines(handle: IO[str], where: Path | str, limit: int, fix: str):
    """The lines of a text file opened for reading, each up to `limit` characters: a longer one (a file that
    is one enormous line would be read whole) is a one-line UserError naming the line and `fix`."""
    number = 0
    while line := handle.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise UserError(f"{where} line {number} is over {limit:,} characters, longer than any line of this "
                            f"format; {fix}")
        yield line


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally .gz) into an array of its declared shape and type. No more than the
    header declares is read (and at most MAX_IDX_BYTES), so a .gz that would expand without end is refused."""
    path = regular_file(path)
    packed = path.suffix == ".gz"
    try:
        with (gzip.open if packed else open)(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
                raise UserError(f"corrupt IDX file {path}: bad magic number; {REDOWNLOAD}")
            dims = handle.read(4 * magic[3])
            if len(dims) < 4 * magic[3]:
                raise UserError(f"corrupt IDX file {path}: truncated header; {REDOWNLOAD}")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
            dtype = np.dtype(IDX_DTYPES[magic[2]])
            expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if expected > MAX_IDX_BYTES:
                raise UserError(f"corrupt IDX file {path}: its header declares shape {shape}, {expected:,} bytes "
                                f"of data, above the {MAX_IDX_BYTES:,} this reader takes; {REDOWNLOAD}")
            if packed:   # the data and one byte past it (expected + 1: there is more than declared)
                raw = handle.read(expected)
                found = len(raw) + len(handle.read(1))
            else:
                found = os.fstat(handle.fileno()).st_size - 4 - len(dims)
                raw = handle.read(expected) if found == expected else b""
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read IDX file {path}: {err}; {REDOWNLOAD}") from None
    if found != expected:
        raise UserError(f"corrupt IDX file {path}: expected {expected} data bytes for shape {shape}, "
                        f"found {'more' if packed and found > expected else found}; {REDOWNLOAD}")
    array = np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"corrupt IDX file {path}: it holds NaN or infinite values; {REDOWNLOAD}")
    return array


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
    """One CIFAR python batch -> images (N, 32, 32, 3) uint8 and labels (N,) int64. The fields are checked
    for the types CIFAR's files hold before any array is built: `data` a (N, 3072) uint8 array, the labels
    N integers (a nested list that reuses one sub-list at every level is a few KB on disk and terabytes
    once converted: refused, never converted)."""
    entry = _unpickle(path)
    missing = [key for key in (b"data", label_key.encode()) if key not in entry]
    if missing:
        raise UserError(f"corrupt CIFAR batch {path}: missing key {missing[0]!r}; {REDOWNLOAD}")
    data, labels = entry[b"data"], entry[label_key.encode()]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        found = f"a {data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise UserError(f"corrupt CIFAR batch {path}: 'data' is {found}, not an (N, 3072) uint8 array; {REDOWNLOAD}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), \
        _cifar_labels(labels, len(data), f"{path} '{label_key}'")   # images (N, 32, 32, 3)


def _cifar_labels(labels: Any, count: int, where: str) -> np.ndarray:
    """`count` integer labels (a list or an integer array) as int64, checked before conversion."""
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
    else:
        ok = isinstance(labels, (list, tuple)) and all(is_whole(v) for v in labels[:count + 1])
    if not ok:
        raise UserError(f"corrupt CIFAR batch {where}: the labels are not a list of integers; {REDOWNLOAD}")
    if len(labels) != count:
        raise UserError(f"corrupt CIFAR batch {where}: {len(labels)} labels for {count} images; {REDOWNLOAD}")
    try:
        return np.asarray(labels, dtype=np.int64)
    except OverflowError:
        raise UserError(f"corrupt CIFAR batch {where}: a label is out of range; {REDOWNLOAD}") from None


def read_cifar_meta(path: Path, key: str = "label_names") -> list[str]:
    """Class names from CIFAR's batches.meta (CIFAR-10) or meta (CIFAR-100): a list of byte strings."""
    entry = _unpickle(path)
    if key.encode() not in entry:
        raise UserError(f"corrupt CIFAR meta file {path}: no '{key}'; {REDOWNLOAD}")
    names = entry[key.encode()]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise UserError(f"corrupt CIFAR meta file {path}: '{key}' is not a list of class names; {REDOWNLOAD}")
    try:
        return [name.decode() if isinstance(name, bytes) else name for name in names]
    except UnicodeDecodeError:
        raise UserError(f"corrupt CIFAR meta file {path}: a class name is not UTF-8 text; {REDOWNLOAD}") from None


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str = "labels") -> None:
    """Write images (N, 32, 32, 3) uint8 as a CIFAR python batch (used by tests)."""
    data = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    entry = {b"batch_label": b"test", label_key.encode(): [int(v) for v in labels], b"data": data}
    with open(path, "wb") as handle:
        pickle.dump(entry, handle)


def _unpickle(path: Path) -> dict:
    try:
        with open(regular_file(path), "rb") as handle:
            entry = safe_unpickle(handle, path, "CIFAR file", encoding="bytes")
    except FileNotFoundError:
        raise UserError(f"missing file {path}; {REDOWNLOAD}") from None
    except OSError as err:
        raise UserError(f"cannot read CIFAR file {path} ({err.strerror or err}); {REDOWNLOAD}") from None
    if not isinstance(entry, dict):
        raise UserError(f"corrupt CIFAR file {path}: not a CIFAR batch; {REDOWNLOAD}")
    return entry


# --- pickles without running code -----------------------------------------------------------------
LATIN1_NAMES = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global (function or class) outside the allowed few."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """_codecs.encode as protocol-2 pickles use it for bytes, for the latin-1 codec only."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in LATIN1_NAMES:
        raise RefusedGlobal(f"_codecs.encode with {str(encoding)[:40]!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals NumPy's pickles of arrays, dtypes and scalars name, under the module names of
    NumPy 1 (numpy.core) and NumPy 2 (numpy._core), resolved from NumPy itself (not imported by name)."""
    reconstruct = np.zeros(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(repr(f"{module}.{name}")[1:-1][:120]) from None  # one line, even if hostile

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("a persistent id")


# what a truncated or garbled pickle raises (besides a refused global)
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, KeyError,
                  IndexError, OverflowError, MemoryError, RecursionError)


def safe_unpickle(handle: IO[bytes], path: Path, what: str, encoding: str = "bytes") -> Any:
    """Unpickle data (dicts, lists, tuples, bytes, str, numbers, NumPy arrays) from `handle`, running
    no code: a pickle naming any other global is a one-line UserError naming `path`, and so is a
    corrupt one. `encoding` decodes Python 2 str ("bytes" keeps them bytes, as CIFAR's readers expect)."""
    try:
        return _RestrictedUnpickler(handle, encoding=encoding).load()
    except RefusedGlobal as refused:
        raise UserError(f"refusing {path}: a {what} holds only data, but its pickle asks for {refused}, which "
                        f"could run code; nothing was run; delete the file and fetch it from the original "
                        f"source") from None
    except _PICKLE_ERRORS as err:
        raise UserError(f"corrupt {what} {path} ({type(err).__name__}); {REDOWNLOAD}") from None


def read_npz(path: Path, what: str = ".npz archive") -> dict[str, np.ndarray]:
    """Every array of an .npz archive (name -> array), running no code: numeric arrays as NumPy reads
    them with allow_pickle=False; object arrays (e.g. sketch-rnn's list of stroke arrays, pickled
    inside the archive) through the restricted unpickler, with Python 2 str read as latin-1."""
    path = regular_file(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist() if info.filename.endswith(".npy"))
            if unpacked > MAX_NPZ_BYTES:   # zipfile never unpacks a member past its declared size
                raise UserError(f"{path}: its arrays unpack to {unpacked:,} bytes, above the {MAX_NPZ_BYTES:,} this "
                                f"reader takes; {REDOWNLOAD}")
            for member in archive.namelist():
                if member.endswith(".npy"):
                    arrays[member[:-len(".npy")]] = _read_npy_member(archive, member, path, what)
    except FileNotFoundError:
        raise UserError(f"missing file {path}; {REDOWNLOAD}") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: not a readable {what} ({why}); {REDOWNLOAD}") from None
    return arrays


def _read_npy_member(archive: zipfile.ZipFile, member: str, path: Path, what: str) -> np.ndarray:
    with archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        if dtype.hasobject:
            if dtype != np.dtype(object):
                raise UserError(f"{path}: array {member!r} has a structured dtype with objects ({dtype}), which a "
                                f"{what} never holds; {REDOWNLOAD}")
            array = safe_unpickle(handle, path, what, encoding="latin1")
            if not isinstance(array, np.ndarray) or array.shape != shape:
                raise UserError(f"{path}: array {member!r} does not hold the {shape} array its header declares; "
                                f"{REDOWNLOAD}")
            return array
    with archive.open(member) as handle:  # numeric: NumPy's own reader, pickles refused
        return np.lib.format.read_array(handle, allow_pickle=False)
