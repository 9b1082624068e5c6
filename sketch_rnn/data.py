"""Quick, Draw! loaders (simplified and RAW ndjson, sketch-rnn's .npz), the download of the public
simplified files, the generated stand-in, and the stroke-5 tensors the model trains on.

Under --data-root: quickdraw/simplified/<class>.ndjson (the download cache), quickdraw/raw/<class>.ndjson,
quickdraw/sketchrnn/<class>.npz; the first present per class is read."""
from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from common.data_source import resolve_data
from common.download import download_file, fetch
from common.errors import UserError
from common.formats import read_npz as read_npz_arrays
from common.formats import bounded_lines, regular_file
from sketch_rnn.shapes import SHAPES, generated_lines
from sketch_rnn.strokes import normalise_raw, stroke3_to_stroke5, strokes_to_stroke3

REAL_CLASSES = ("apple", "cat", "clock", "flower", "house")  # the five in ../shared/data/quickdraw/raw
SIMPLIFIED_URL = "https://storage.googleapis.com/quickdraw_dataset/full/simplified/{}.ndjson"
SPLIT_FRACTIONS = {"val": 0.1, "test": 0.1}                   # per class; the rest is train
SMOKE_PER_CLASS = 16
MAX_POINTS = 100_000             # a stroke-3 drawing read from an .npz (sketch-rnn's have at most a few hundred)
MAX_GENERATED_PER_CLASS = 20_000   # --max-per-class when the stand-in is generated
MAX_TOTAL_POINTS = 50_000_000    # all drawings of one .npz read (600 MB as float32)
MAX_LINE = 1 << 24               # characters of one ndjson drawing (MAX_POINTS RAW points are about 3 MB)


def parse_ndjson_line(line: str, where: str) -> np.ndarray:
    """One ndjson drawing -> stroke-3 in pixel units. RAW strokes ([x], [y], [t]) get Quick, Draw!'s
    simplification (align, scale to 0-255, RDP 2.0); simplified strokes ([x], [y]) are used as they are."""
    try:
        drawing = json.loads(line)["drawing"]  # json reads NaN / Infinity as floats: checked below
        strokes = [np.column_stack([np.asarray(s[0], float), np.asarray(s[1], float)]) for s in drawing]
        raw = any(len(s) == 3 for s in drawing)
    except (ValueError, KeyError, TypeError, IndexError, OverflowError) as err:
        raise UserError(f"{where}: not a Quick, Draw! ndjson drawing ({type(err).__name__}: {err}); "
                        f"delete the file and fetch it again") from None
    strokes = [s for s in strokes if len(s)]
    if not strokes or sum(map(len, strokes)) < 2:
        raise UserError(f"{where}: a drawing with fewer than two points; delete the file and fetch it again")
    points = _check_finite(np.concatenate(strokes), where)
    with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates overflow: caught here
        _check_finite(points.max(axis=0) - points.min(axis=0), where)
        stroke3 = strokes_to_stroke3(normalise_raw(strokes) if raw else strokes)
    return _check_finite(stroke3, where)


def parse_ndjson(lines, limit: int, name: str) -> list[np.ndarray]:
    drawings = []
    for number, line in enumerate(lines, 1):
        if len(drawings) >= limit:
            break
        if line.strip():
            drawings.append(parse_ndjson_line(line, f"{name}:{number}"))
    return drawings


def read_ndjson(path: Path, limit: int) -> list[np.ndarray]:
    try:
        with open(regular_file(path, "delete it and fetch it again"), encoding="utf-8") as handle:
            return parse_ndjson(bounded_lines(handle, path, MAX_LINE, "delete it and fetch it again"), limit, str(path))
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err}); delete it and fetch it again") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (not a Quick, Draw! ndjson file); delete it and fetch it "
                        f"again") from None


def read_npz(path: Path, limit: int) -> list[np.ndarray]:
    """sketch-rnn's .npz: keys train / valid / test, each an object array of (L, 3) int16 stroke-3.
    The three splits are pooled (and re-split like every other source). The object arrays are pickles:
    they are read without running code (common.formats.read_npz), and anything but arrays is refused."""
    archive = read_npz_arrays(path, "sketch-rnn .npz")
    parts = [archive[key] for key in ("train", "valid", "test") if key in archive]
    if any(part.ndim == 0 for part in parts):
        raise UserError(f"{path}: expected keys train/valid/test holding (L, 3) stroke-3 arrays")
    found = [d for part in parts for d in part][:limit]
    # each drawing is checked as it is before any conversion: a nested list that reuses one sub-list at every
    # level (a "memo bomb", a few KB in the file) would grow to gigabytes in np.asarray
    total = 0
    for number, drawing in enumerate(found):
        if not isinstance(drawing, np.ndarray) or drawing.dtype.kind not in "iuf" or drawing.ndim != 2 \
                or drawing.shape[1] != 3:
            what = f"a {drawing.dtype} array {drawing.shape}" if isinstance(drawing, np.ndarray) else \
                f"a {type(drawing).__name__}"
            raise UserError(f"{path} drawing {number}: {what}, not an (L, 3) numeric stroke-3 array; delete the "
                            f"file and fetch it again")
        total += len(drawing)
        if len(drawing) > MAX_POINTS or total > MAX_TOTAL_POINTS:
            raise UserError(f"{path} drawing {number}: {len(drawing):,} points ({total:,} so far), above the "
                            f"{MAX_POINTS:,} a drawing / {MAX_TOTAL_POINTS:,} a file this loader reads; delete the "
                            f"file and fetch it again")
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: caught below
        drawings = [np.asarray(d, dtype=np.float32) for d in found]
    if not drawings:
        raise UserError(f"{path}: expected keys train/valid/test holding (L, 3) stroke-3 arrays")
    for number, drawing in enumerate(drawings):
        _check_finite(drawing, f"{path} drawing {number}")
    return drawings


def _check_finite(points: np.ndarray, where: str) -> np.ndarray:
    """Non-finite data stops at load time (not later as a NaN loss)."""
    if not np.isfinite(points).all():
        raise UserError(f"{where}: a coordinate is NaN or infinite (or too large to use); delete the file and "
                        f"fetch it again")
    return points


READERS: dict[str, Callable[[Path, int], list[np.ndarray]]] = {
    "simplified/{}.ndjson": read_ndjson, "raw/{}.ndjson": read_ndjson, "sketchrnn/{}.npz": read_npz,
}


def find_class_file(root: Path, name: str) -> Path | None:
    for pattern in READERS:
        path = root / "quickdraw" / pattern.format(name)
        if path.exists():
            return path
    return None


def download_simplified(root: Path, names: list[str], limit: int, announce: Callable[[str], None]) -> None:
    """Stream the first `limit` drawings of each class from the public bucket into
    quickdraw/simplified/<class>.ndjson (the cache; delete it to fetch a larger cap)."""
    folder = root / "quickdraw" / "simplified"
    urls = [SIMPLIFIED_URL.format(urllib.parse.quote(name)) for name in names]

    def run() -> None:
        for name, url in zip(names, urls):
            download_file(url, folder / f"{name}.ndjson", max_lines=limit, desc=f"quickdraw {name}")

    fetch(urls[:1], run, lambda: announce(f"downloading Quick, Draw! ({', '.join(names)}, first {limit:,} "
                                          f"drawings each) into {folder} ..."))


@dataclass
class SketchData:
    """Stroke-3 drawings (pixel units) and labels per split, and the offsets' scale (train std)."""
    classes: list[str]
    source: str
    drawings: dict[str, list[np.ndarray]]
    labels: dict[str, np.ndarray]
    scale: float = 1.0

    def longest(self) -> int:
        return max(len(d) for split in self.drawings.values() for d in split)

    def tensors(self, split: str, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """stroke-5 (N, max_len + 1, 5) float32 in scale units, kept lengths (N,), labels (N,)."""
        pairs = [stroke3_to_stroke5(self.normalised(d), max_len) for d in self.drawings[split]]
        stroke5 = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.float32))
        lengths = torch.tensor([p[1] for p in pairs])
        return stroke5, lengths, torch.from_numpy(self.labels[split])

    def normalised(self, drawing: np.ndarray) -> np.ndarray:
        return np.column_stack([drawing[:, :2] / self.scale, drawing[:, 2]])


def split_per_class(per_class: list[list[np.ndarray]], seed: int) -> tuple[dict, dict]:
    drawings = {"train": [], "val": [], "test": []}
    labels = {k: [] for k in drawings}
    rng = np.random.default_rng([seed, 1])
    for label, items in enumerate(per_class):
        order = rng.permutation(len(items))
        sizes = {k: max(1, round(f * len(items))) for k, f in SPLIT_FRACTIONS.items()}
        bounds = {"val": (0, sizes["val"]), "test": (sizes["val"], sizes["val"] + sizes["test"]),
                  "train": (sizes["val"] + sizes["test"], len(items))}
        for split, (lo, hi) in bounds.items():
            drawings[split] += [items[i] for i in order[lo:hi]]
            labels[split] += [label] * (hi - lo)
    return drawings, {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()}


def _generated(count: int, seed: int) -> tuple[tuple[list[str], list[list[np.ndarray]]], str]:
    if count > MAX_GENERATED_PER_CLASS:   # 1e9 generated for ever, filling the memory
        raise UserError(f"--max-per-class {count:,}: the generated stand-in draws at most {MAX_GENERATED_PER_CLASS:,} "
                        "sketches a class (about 45 s); real Quick, Draw! files take any cap")
    names = list(SHAPES)
    per_class = [parse_ndjson(generated_lines(name, count, seed), count, f"generated {name}") for name in names]
    return (names, per_class), (f"generated: {len(names)} stroke classes ({', '.join(names)}), {count:,} "
                                f"each, RAW ndjson format (seed {seed})")


def _real(root: Path, names: list[str], limit: int) -> tuple[tuple[list[str], list[list[np.ndarray]]], str]:
    paths = [find_class_file(root, name) for name in names]
    per_class = [READERS[_pattern(path)](path, limit) for path in paths]
    counts = ", ".join(f"{n} {len(d)}" for n, d in zip(names, per_class))
    return (names, per_class), f"real: Quick, Draw! ({counts}) from {paths[0].parent}"


def _pattern(path: Path) -> str:
    return f"{path.parent.name}/{{}}{path.suffix}"


def load_sketches(mode: str, root: Path, classes: list[str], max_per_class: int, seed: int = 0,
                  smoke: bool = False, announce: Callable[[str], None] = print) -> SketchData:
    """Resolve --data for Quick, Draw!; the generated stand-in has its own five classes."""
    root = Path(root)
    missing = [name for name in classes if find_class_file(root, name) is None]
    (names, per_class), source = resolve_data(
        mode, name="Quick, Draw!", where=root / "quickdraw",
        needs=f"{', '.join(missing)} as raw/<class>.ndjson, simplified/<class>.ndjson or sketchrnn/<class>.npz",
        present=lambda: all(find_class_file(root, name) for name in classes),
        download=lambda: download_simplified(root, missing, max_per_class, announce),
        read=lambda: _real(root, classes, max_per_class),
        stand_in=lambda: _generated(SMOKE_PER_CLASS if smoke else max_per_class, seed),
        smoke=smoke, announce=announce)
    return _finish(names, per_class, source, seed)


def _finish(names: list[str], per_class: list[list[np.ndarray]], source: str, seed: int) -> SketchData:
    too_few = [n for n, d in zip(names, per_class) if len(d) < 3]
    if too_few:
        raise UserError(f"class {', '.join(too_few)} has fewer than 3 drawings (one each for train, val and "
                        f"test); raise --max-per-class or add drawings")
    drawings, labels = split_per_class(per_class, seed)
    offsets = np.concatenate([d[:, :2] for d in drawings["train"]])
    scale = float(offsets.std()) or 1.0
    return SketchData(names, source, drawings, labels, scale)
