"""tqdm progress bars for every long loop: shown on a terminal, quiet under --smoke or in logs."""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable, *, desc: str, total: int | None = None, quiet: bool = False,
             leave: bool = False) -> Iterable:
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=leave, dynamic_ncols=True)
