"""One mnist_scratch training epoch, NumPy engine vs the same network in PyTorch on the CPU.

Same net (784-128-64-10 ReLU), same optimizer (SGD momentum 0.9, L2 1e-4 as weight decay), same
batch size (64), same data (real MNIST's 90% split when --data-root has it, else the embedded
digits tiled to 63,000 examples), same shuffling and indexing work per step; NumPy with the BLAS
threads train.py gives it (one at batch 64), torch with its default threads. Prints the times
(median of --repeats epochs each, interleaved) and the ratio NumPy / PyTorch (below 1: NumPy faster).

    python bench/mnist_scratch_epoch.py --data-root ../shared/data
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from common import REPO_ROOT
from common.cli import OneLineParser, positive_int
from common.errors import run_cli
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.optim import build_optimizer
from mnist_scratch.engine.training import add_l2_grads, blas_threads_for, init_states, shuffled_batches
from mnist_scratch.data import load_mnist_split
from mnist_scratch.model import MLPConfig, build_model


def numpy_epoch(x, y, batch_size, seed, l2) -> float:
    net = build_model(MLPConfig(), seed)
    optimizer = build_optimizer("momentum", 0.05, momentum=0.9)
    states, params, loss_fn = init_states(net, optimizer), net.params(), LOSSES["cross_entropy"]
    tic = time.perf_counter()
    with threadpool_limits(limits=blas_threads_for(batch_size), user_api="blas"):  # as train.py runs it
        for xb, yb in shuffled_batches(x, y, batch_size, seed=seed, epoch=0):     # train.py's steps
            logits, caches = net.forward(xb)
            _, dlogits = loss_fn(logits, yb)
            grads = net.backward(dlogits, caches)
            add_l2_grads(grads, params, l2)
            for name, w in params.items():
                optimizer.update(w, grads[name], states[name])
    return time.perf_counter() - tic


def torch_epoch(x, y, batch_size, seed, l2) -> float:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=l2)
    loss_fn = torch.nn.CrossEntropyLoss()
    tic = time.perf_counter()
    order = torch.randperm(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - tic


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data", help="real MNIST (default: <repo>/data)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="(default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="epochs timed per engine (default: %(default)s)")
    args = parser.parse_args(argv)

    data = load_mnist_split("90:10", mode="auto", root=args.data_root.resolve(), seed=0, smoke=False)
    x, y = data.x_train, data.y_train
    if len(y) < 63_000:  # the embedded digits: tile to MNIST's 90% size so an epoch has the same steps
        reps = int(np.ceil(63_000 / len(y)))
        x, y = np.tile(x, (reps, 1))[:63_000], np.tile(y, reps)[:63_000]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    ours, theirs = [], []
    for seed in range(args.repeats):  # interleaved, so drift on the machine hits both alike
        ours.append(numpy_epoch(x, y, args.batch_size, seed, 1e-4))
        theirs.append(torch_epoch(xt, yt, args.batch_size, seed, 1e-4))
    numpy_s, torch_s = statistics.median(ours), statistics.median(theirs)
    print(f"data: {data.source}; {len(y):,} examples, batch {args.batch_size}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"one epoch  numpy {numpy_s:.3f} s   pytorch {torch_s:.3f} s   (median of {args.repeats})")
    print(f"ratio numpy/pytorch = {numpy_s / torch_s:.2f}")


if __name__ == "__main__":
    run_cli(main)
