"""Solve XOR with a 2 -> H -> 2 network on the NumPy engine and plot its decision boundary.

    python mnist_scratch/xor.py                            # H = 4 tanh, full-batch momentum, 500 epochs
    python mnist_scratch/xor.py --hidden 2 --activation sigmoid --epochs 3000
    python mnist_scratch/xor.py --cloud 50                 # also train on noisy copies of the 4 points

No straight line separates {(0,1), (1,0)} from {(0,0), (1,1)}; one hidden layer bends the boundary.
Each epoch is one full-batch step (cross-entropy) with a registered optimizer. summary.json holds the
accuracy on the 4 points and the first epoch from which all 4 stay correct; xor.png shows P(class 1)
over the plane with the points, and the loss per epoch. The defaults solve XOR for every seed 0-29."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from common.cli import decay_rate, int_in, parse_args, positive_int
from common.errors import TrainingDiverged, run_cli
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import LOSSES, softmax
from mnist_scratch.engine.network import mlp
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer
from mnist_scratch.engine.training import init_states, loss_and_grads
from mnist_scratch.experiment import ASSIGNMENT, experiment_parser, small_blas, start_run
from mnist_scratch.plots import plot_decision_boundary

POINTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)   # (4, 2)
LABELS = np.array([0, 1, 1, 0])                                          # (4,) x1 XOR x2
CLOUD_STD = 0.15
MAX_CLOUD = 100_000   # 400,000 training points; a larger --cloud would only exhaust the memory


def build_parser():
    parser = experiment_parser(__doc__, epochs=500, lr=0.1, unused=("batch_size", "data", "data_root"))
    add = parser.add_argument
    add("--hidden", type=positive_int, default=4, help="hidden units H (default: %(default)s)")
    add("--activation", choices=list(ACTIVATIONS), default="tanh", help="hidden activation (default: %(default)s)")
    add("--init", choices=list(INITS), default="xavier", help="weight initialisation (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default="momentum", help="update rule (default: %(default)s)")
    add("--momentum", type=decay_rate, default=0.9,
        help="momentum for momentum/nesterov (default: %(default)s)")
    add("--cloud", type=int_in(0, MAX_CLOUD), default=0,
        help=f"noisy copies (std {CLOUD_STD}) of each point added to the training set, 0 to {MAX_CLOUD:,} "
             "(default: %(default)s)")
    return parser


def training_set(cloud: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4 points plus `cloud` noisy copies of each: (x (N, 2), y (N,), the noisy copies (4 * cloud, 2))."""
    noise = CLOUD_STD * np.random.default_rng([seed, 1]).standard_normal((4 * cloud, 2))
    noisy = np.repeat(POINTS, cloud, axis=0) + noise                     # (4 * cloud, 2)
    return np.concatenate([POINTS, noisy]), np.concatenate([LABELS, np.repeat(LABELS, cloud)]), noisy


def train(net, x: np.ndarray, y: np.ndarray, args, run) -> tuple[list[float], float, int | None]:
    """--epochs full-batch steps on (x (N, 2), y (N,)): (loss per epoch, final accuracy on the 4 points,
    first epoch of the final all-correct streak or None)."""
    optimizer = build_optimizer(args.optimizer, args.lr, momentum=args.momentum)
    states, params, loss_fn = init_states(net, optimizer), net.params(), LOSSES["cross_entropy"]
    losses, solved_at = [], None
    for epoch in range(1, args.epochs + 1):
        loss, grads = loss_and_grads(net, x, y, loss_fn)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} at epoch {epoch}; lower --lr")
        for name, w in params.items():
            optimizer.update(w, grads[name], states[name])
        accuracy = float((net.logits(POINTS).argmax(axis=1) == LABELS).mean())
        solved_at = (solved_at or epoch) if accuracy == 1.0 else None
        losses.append(loss)
        run.log({"epoch": epoch, "train_loss": loss, "points_acc": accuracy})
    return losses, accuracy, solved_at


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT,
                      run_name=lambda a: f"xor_h{a.hidden}_{a.activation}_seed{a.seed}")
    if args.smoke:
        args.epochs = min(args.epochs, 200)
    x, y, noisy = training_set(args.cloud, args.seed)
    copies = f" + {4 * args.cloud} noisy copies" if args.cloud else ""
    run = start_run(args, data_source=f"generated: the 4 XOR points{copies}")
    net = mlp((2, args.hidden, 2), args.activation, args.init, np.random.default_rng([args.seed, 3]), np.float64)
    with small_blas(len(y)):
        losses, accuracy, solved_at = train(net, x, y, args, run)
    final_loss = LOSSES["cross_entropy"](net.logits(x), y)[0]
    probs = softmax(net.logits(POINTS))[:, 1]                     # (4,) P(class 1)
    title = f"XOR, 2→{args.hidden}→2 {args.activation}, {args.optimizer} lr {args.lr}, seed {args.seed}"
    plot_decision_boundary(lambda grid: softmax(net.logits(grid))[:, 1], POINTS, LABELS, losses,
                           run.file("xor.png"), cloud=noisy, cloud_labels=np.repeat(LABELS, args.cloud), title=title)
    summary = run.finish({
        "points_acc": accuracy, "solved": accuracy == 1.0, "epochs_to_solve": solved_at,
        "final_loss": final_loss, "epochs": args.epochs,
        "p_class1": {f"({a:g},{b:g})": float(p) for (a, b), p in zip(POINTS, probs)},
        "parameters": int(sum(w.size for w in net.params().values())), "figures": ["xor.png"],
    })
    verdict = f"solved from epoch {solved_at}" if solved_at else "NOT solved (try more --epochs or --hidden)"
    print(f"XOR {verdict}: accuracy {accuracy:.0%} on the 4 points, loss {final_loss:.4f}; "
          f"P(class 1) = {', '.join(f'{p:.3f}' for p in probs)}; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
