"""NumPy Conv2D forward + backward vs torch.nn.functional.conv2d on the same shapes (CPU, float32).

The shapes are those of a small MNIST CNN at batch 64. Prints each layer's time per forward+backward
(median over 3 interleaved blocks of --repeats calls each) and the ratio NumPy / PyTorch (the target is at most 3).

    python bench/scratch_conv.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F

from common.cli import OneLineParser, positive_int
from common.errors import run_cli
from mnist_scratch.engine.conv import conv2d_backward, conv2d_forward

# (name, N, C, H, W, F, K, stride, pad)
SHAPES = [("conv1 1->32 28x28", 64, 1, 28, 28, 32, 3, 1, 1),
          ("conv2 32->64 14x14", 64, 32, 14, 14, 64, 3, 1, 1)]
ROUNDS = 3


def time_numpy(x, w, b, stride, pad, first_layer) -> float:
    tic = time.perf_counter()
    out, cache = conv2d_forward(x, w, b, stride, pad)
    conv2d_backward(np.ones_like(out), cache, need_dx=not first_layer)
    return time.perf_counter() - tic


def time_torch(x, w, b, stride, pad) -> float:
    tic = time.perf_counter()
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    out.backward(torch.ones_like(out))
    return time.perf_counter() - tic


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=10, help="calls per block (default: %(default)s)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}, float32, CPU")
    total_numpy = total_torch = 0.0
    for name, n, c, h, width, f, k, stride, pad in SHAPES:
        x = rng.standard_normal((n, c, h, width)).astype(np.float32)
        w = (rng.standard_normal((f, c, k, k)) * 0.1).astype(np.float32)
        b = np.zeros(f, np.float32)
        first_layer = c == 1  # like torch below: no input gradient for the network's input
        xt = torch.from_numpy(x).requires_grad_(not first_layer)
        wt, bt = torch.from_numpy(w.copy()).requires_grad_(), torch.from_numpy(b.copy()).requires_grad_()
        ours, theirs = [], []
        for _ in range(ROUNDS):  # interleaved in blocks: torch's OpenMP threads spin for a while after
            # each call, and would steal the cores from an OpenBLAS call made right after it
            ours += [time_numpy(x, w, b, stride, pad, first_layer) for _ in range(args.repeats)]
            theirs += [time_torch(xt, wt, bt, stride, pad) for _ in range(args.repeats)]
        numpy_s, torch_s = statistics.median(ours), statistics.median(theirs)
        total_numpy, total_torch = total_numpy + numpy_s, total_torch + torch_s
        print(f"{name:<20} numpy {1e3 * numpy_s:7.2f} ms   torch {1e3 * torch_s:7.2f} ms   "
              f"ratio {numpy_s / torch_s:.2f}")
    print(f"ratio numpy/pytorch (both layers, forward+backward) = {total_numpy / total_torch:.2f}")


if __name__ == "__main__":
    run_cli(main)
