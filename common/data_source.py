"""`--data auto|real|generated` for any data set, in one place, and the short data-source label.

Every loader answers the same questions: is the real set present under --data-root, how to download
it, how to read it, how to make the embedded stand-in, and where its files go. `resolve_data` applies
the flag's meaning to those answers (CONVENTIONS.md, "One flag vocabulary"):

- `generated` (and every --smoke run): the stand-in; the network is never touched.
- `auto`: the real set when present, else downloaded when that works, else the stand-in, announced
  in one line ("note: X is unavailable (why); using the embedded stand-in: <source>").
- `real`: the real set when present or downloadable, else one UserError naming the folder, the files
  it needs and the fix. Nothing is created on disk when the download cannot start.
- `auto` and `real` with a --data-root (or a folder under it) that is a file: one UserError.

The source string (recorded in config.json) starts with "real:", "generated:" or "embedded:" and is
shortened for titles and report tables by `short_source`.

A loader built on it, e.g. a data set of json files under <root>/MySet::

    def load_myset(mode, root, *, seed, smoke=False, announce=print):
        folder = Path(root) / "MySet"
        return resolve_data(
            mode, smoke=smoke, announce=announce, name="MySet", where=folder, needs="train.json",
            present=lambda: (folder / "train.json").exists(),
            download=lambda: fetch([URL], lambda: download_file(URL, folder / "train.json")),
            read=lambda: (rows := read_json(folder / "train.json"), f"real: MySet ({len(rows):,}) from {folder}"),
            stand_in=lambda: (make_rows(64 if smoke else 3000, seed), f"generated: MySet-like rows (seed {seed})"))
        # -> (rows, source)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from common.cli import DATA_MODES
from common.download import DownloadUnavailable
from common.errors import UserError

T = TypeVar("T")
DEFAULT_HINT = "put the files there or point --data-root at them"


def resolve_data(mode: str, *, name: str, where: Path | str | None, needs: str,
                 present: Callable[[], bool], read: Callable[[], tuple[T, str]],
                 stand_in: Callable[[], tuple[T, str]], download: Callable[[], None] | None = None,
                 hint: str = DEFAULT_HINT, smoke: bool = False,
                 announce: Callable[[str], None] = print) -> tuple[T, str]:
    """Resolve `--data` (`mode`) for one data set; returns (data, source string).

    name      the set's name in messages ("CIFAR-10", "MathQA", "Quick, Draw!")
    where     the folder its files go in (shown in the real-mode error)
    needs     the files it needs there, in words ("train.json or dev.json")
    present   () -> bool: are the real files there? Asked again after a download.
    read      () -> (data, source): read the real files (their own problems are UserErrors)
    stand_in  () -> (data, source): the embedded stand-in, deterministic from the caller's seed; the
              caller decides its size (tiny under --smoke)
    download  () -> None, or None when the set has no public download: fetch the files into `where`
              through common.download.fetch, raising DownloadUnavailable when it cannot; it creates
              folders only once the transfer starts (fetch probes the host first)
    hint      the fix that ends the real-mode error (where to put the files, or another flag)
    smoke     a --smoke run: the stand-in whatever `mode` says
    announce  where the one-line notice of an `auto` fallback goes
    """
    if mode not in DATA_MODES:
        raise UserError(f"unknown --data '{mode}'; choose one of {', '.join(DATA_MODES)}")
    if mode == "generated" or smoke:
        return stand_in()
    if isinstance(where, Path):
        _check_folder(where, name)
    if not present():
        try:
            if download is None:
                raise DownloadUnavailable("it has no public download")
            download()
        except DownloadUnavailable as why:
            if mode == "real":
                raise UserError(f"{name} not found under {where} (needs {needs}) and it cannot be downloaded "
                                f"({why}); {hint}") from None
            data, source = stand_in()
            announce(f"note: {name} is unavailable ({why}); using the embedded stand-in: {source}")
            return data, source
        if not present():
            raise UserError(f"the download of {name} finished but {where} still lacks {needs}; delete what it "
                            f"left there and try again, or {hint}")
    return read()


def _check_folder(where: Path, name: str) -> None:
    """`where` (the set's folder under --data-root) can be a folder: neither it nor the nearest of its
    parents that exists is a file (a --data-root pointing at a file). Nothing is created."""
    for folder in (where, *where.parents):
        if os.path.isdir(folder):
            return
        if os.path.lexists(folder):
            raise UserError(f"{folder} is a file, not a folder, so {name} cannot be read from or downloaded into "
                            f"{where}; point --data-root at a folder")


def with_source(data: T) -> tuple[T, str]:
    """(data, data.source): `read` and `stand_in` for data that carry their own source string."""
    return data, data.source


def short_source(source: str) -> str:
    """The short data-source label of titles and report tables: the source string up to where its
    details begin (a parenthesis, ' from <path>', or a comma before a count), brackets respected.

    'real: MNIST (60,000 train / 10,000 test) from data/MNIST/raw' -> 'real: MNIST'
    'generated: hierarchical CIFAR-100 stand-in, 100 fine classes in ...' -> 'generated: hierarchical
    CIFAR-100 stand-in'; 'real: Quick, Draw! (apple 100, ...)' -> 'real: Quick, Draw!'"""
    depth = 0
    for i, char in enumerate(source):
        if depth == 0 and (source.startswith((" (", " from "), i)
                           or (source.startswith(", ", i) and source[i + 2:i + 3].isdigit())):
            return source[:i]
        depth += (char in "([{") - (char in ")]}")
    return source
