"""tqdm progress bars for every long loop: shown on a terminal, quiet under --smoke, in logs and on torchrun's
ranks other than 0."""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm

from common.runtime import adapt_threads, is_rank0


class _Progress(tqdm):
    """A tqdm bar whose every step also lets `--threads auto` follow the machine's load."""

    def __iter__(self):
        for item in super().__iter__():
            adapt_threads()
            yield item


def progress(iterable: Iterable, *, desc: str, total: int | None = None, quiet: bool = False,
             leave: bool = False) -> Iterable:
    disable = quiet or not sys.stderr.isatty() or not is_rank0()
    return _Progress(iterable, desc=desc, total=total, disable=disable, leave=leave, dynamic_ncols=True)
