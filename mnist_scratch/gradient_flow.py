"""Gradient flow in a deep MLP on MNIST: per-layer weight-gradient norms for sigmoid, tanh and ReLU.

    python mnist_scratch/gradient_flow.py --data real --data-root ../shared/data
    python mnist_scratch/gradient_flow.py --activations sigmoid relu --depth 12 --init xavier

For each activation, a 784 -> 64 x depth -> 10 network (init per activation: Xavier for sigmoid and
tanh, He for ReLU, unless --init names one) is probed on the same first --probe-batches mini-batches:
||dL/dW|| of every Dense layer, averaged over the batches, with no update. It is then trained for
--epochs (momentum SGD, the same lr and data order for every activation) and probed again. The ratio
of the first layer's norm to the output layer's shows the vanishing: sigmoid's derivative is at most
1/4, so each layer scales the backward signal down. gradient_flow.png: norm vs depth (log scale) at
init and after training, and the training loss; summary.json: the norms and ratios per activation."""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from common.cli import decay_rate, layer_count, parse_args, positive_int
from common.data_source import short_source
from common.errors import TrainingDiverged, run_cli
from common.metrics import accuracy
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.network import Dense, mlp
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer
from mnist_scratch.engine.training import evaluate, init_states, loss_and_grads
from mnist_scratch.data import SPLITS, load_mnist_split
from mnist_scratch.experiment import ASSIGNMENT, experiment_parser, small_blas, start_run
from mnist_scratch.plots import plot_gradient_flow

INIT_FOR = {"sigmoid": "xavier", "tanh": "xavier", "relu": "he", "leaky_relu": "he"}  # --init auto
LOG_WINDOWS_PER_EPOCH = 20  # training-loss records per epoch (mean over each window of steps)


def build_parser():
    parser = experiment_parser(__doc__, epochs=3, batch_size=64, lr=0.01)
    add = parser.add_argument
    add("--activations", choices=list(ACTIVATIONS), nargs="+", default=["sigmoid", "tanh", "relu"],
        help="activations to compare, one network each (default: %(default)s)")
    add("--depth", type=layer_count, default=8, help="hidden layers (default: %(default)s)")
    add("--width", type=positive_int, default=64, help="units per hidden layer (default: %(default)s)")
    add("--init", choices=["auto", *INITS], default="auto",
        help="weight initialisation; auto: " + ", ".join(f"{a} {i}" for a, i in INIT_FOR.items())
             + " (default: %(default)s)")
    add("--probe-batches", type=positive_int, default=10,
        help="mini-batches the gradient norms are averaged over (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default="momentum", help="update rule (default: %(default)s)")
    add("--momentum", type=decay_rate, default=0.9,
        help="momentum for momentum/nesterov (default: %(default)s)")
    add("--split", choices=list(SPLITS), default="90:10",
        help="train:test split of the pooled set (default: %(default)s)")
    return parser


def gradient_norms(net, x: np.ndarray, y: np.ndarray, batches: list[np.ndarray]) -> list[float]:
    """||dL/dW|| per Dense layer (input side first), averaged over the index batches; no update."""
    dense = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    total = np.zeros(len(dense))                                          # (layers,)
    for idx in batches:
        _, grads = loss_and_grads(net, x[idx], y[idx], LOSSES["cross_entropy"])
        total += [np.linalg.norm(grads[f"{i}.w"]) for i in dense]
    return (total / len(batches)).tolist()


def train(net, data, args, activation: str, run) -> tuple[list[int], list[float]]:
    """--epochs of mini-batch training; logs the mean loss of each window of steps. Returns (steps, losses)."""
    optimizer = build_optimizer(args.optimizer, args.lr, momentum=args.momentum)
    states, params = init_states(net, optimizer), net.params()
    n = len(data.y_train)
    window = max(1, -(-n // args.batch_size) // LOG_WINDOWS_PER_EPOCH)
    steps, losses, pending, step = [], [], [], 0
    for epoch in range(1, args.epochs + 1):
        order = np.random.default_rng([args.seed, 4, epoch]).permutation(n)   # the same for every activation
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            loss, grads = loss_and_grads(net, data.x_train[idx], data.y_train[idx], LOSSES["cross_entropy"])
            if not np.isfinite(loss):
                raise TrainingDiverged(f"{activation}: the loss became {loss} at epoch {epoch}, step {step}; "
                                       "lower --lr")
            for name, w in params.items():
                optimizer.update(w, grads[name], states[name])
            step += 1
            pending.append(loss)
            if len(pending) == window:
                steps.append(step)
                losses.append(float(np.mean(pending)))
                run.log({"activation": activation, "epoch": epoch, "step": step, "train_loss": losses[-1]})
                pending = []
    return steps, losses


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT,
                      run_name=lambda a: f"gradient_flow_depth{a.depth}_{a.init}init_seed{a.seed}")
    if args.smoke:
        args.epochs, args.probe_batches = 1, min(args.probe_batches, 3)
    data = load_mnist_split(args.split, mode=args.data, root=args.data_root, seed=args.seed, smoke=args.smoke)
    run = start_run(args, data_source=data.source)
    order = np.random.default_rng([args.seed, 7]).permutation(len(data.y_train))
    probes = [order[k * args.batch_size:(k + 1) * args.batch_size] for k in range(args.probe_batches)]
    probes = [idx for idx in probes if len(idx)]
    sizes = (data.x_train.shape[1], *[args.width] * args.depth, len(data.classes))
    shape = f"{sizes[0]}→{args.width}×{args.depth}→{sizes[-1]}"
    print(f"{ASSIGNMENT}: gradient flow in {shape}, {len(data.y_train):,} train / {len(data.y_test):,} test, "
          f"data: {data.source}")
    results, norms, curves = {}, {}, {}
    for activation in dict.fromkeys(args.activations):
        init = INIT_FOR[activation] if args.init == "auto" else args.init
        net = mlp(sizes, activation, init, np.random.default_rng([args.seed, 3]))
        at_init = gradient_norms(net, data.x_train, data.y_train, probes)
        tic = time.perf_counter()
        with small_blas(args.batch_size):
            curves[activation] = train(net, data, args, activation, run)
        seconds = time.perf_counter() - tic
        trained = gradient_norms(net, data.x_train, data.y_train, probes)
        test = evaluate(net, data.x_test, data.y_test, LOSSES["cross_entropy"])
        norms[activation] = {"init": at_init, "trained": trained}
        results[activation] = {
            "init": init, "grad_norms_init": at_init, "grad_norms_trained": trained,
            "ratio_first_last_init": at_init[0] / at_init[-1], "ratio_first_last_trained": trained[0] / trained[-1],
            "first_train_loss": curves[activation][1][0], "last_train_loss": curves[activation][1][-1],
            "test_loss": test.loss, "test_acc": accuracy(data.y_test, test.predictions), "train_seconds": seconds,
        }
        r = results[activation]
        print(f"{activation:>10} ({init}): ||dW1|| / ||dW_out|| = {r['ratio_first_last_init']:.1e} at init, "
              f"{r['ratio_first_last_trained']:.1e} after {args.epochs} epochs; train loss "
              f"{r['first_train_loss']:.3f} -> {r['last_train_loss']:.3f}; test accuracy {r['test_acc']:.2%}",
              flush=True)
    title = (f"{shape} MLP, {args.optimizer} lr {args.lr}, batch {args.batch_size}, "
             f"{args.epochs} epochs, seed {args.seed} ({short_source(data.source)})")
    plot_gradient_flow(norms, curves, run.file("gradient_flow.png"), title=title)
    summary = run.finish({"activations": results, "sizes": list(sizes), "epochs": args.epochs,
                          "probe_batches": len(probes), "batch_size": args.batch_size, "lr": args.lr,
                          "figures": ["gradient_flow.png"]})
    print(f"run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
