"""What this NumPy engine holds in memory, checked before anything is allocated: an absurd size flag is a
one-line error, not a MemoryError traceback or a machine driven out of memory (xor.py --hidden 1000000000 once
used 22 GB and was killed)."""
from __future__ import annotations

import numpy as np

from common.errors import UserError

MAX_PARAMETERS = 100_000_000   # 400 MB of float32 weights, and as much again for each of gradients and Adam's moments
MAX_ARRAY_BYTES = 2 * 2**30    # one layer's output, or a convolution's column buffer, in one forward pass


def check_parameters(count: int, what: str) -> None:
    if count > MAX_PARAMETERS:
        raise UserError(f"{what} has {count:,} parameters, above the {MAX_PARAMETERS:,} this NumPy engine trains in "
                        "memory; pick smaller layers")


def check_array(elements: int, dtype, what: str) -> None:
    size = elements * np.dtype(dtype).itemsize
    if size > MAX_ARRAY_BYTES:
        raise UserError(f"{what} would take {size / 2**30:,.1f} GiB, above the {MAX_ARRAY_BYTES / 2**30:g} GiB this "
                        "NumPy engine allows one array; use fewer examples per pass or smaller layers")
