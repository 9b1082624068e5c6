"""Universal approximation: fit a 1-D non-linear function with one hidden layer of growing width.

    python mnist_scratch/approximation.py                          # sin(3x) + 0.3x² on [-3, 3], widths 1..64
    python mnist_scratch/approximation.py --target bump --widths 2 8 32 --activation relu --init he

For each width H a 1 -> H -> 1 network on the NumPy engine is fitted to --samples noise-free samples
of the target (uniform in the range, seeded) with the mean-squared-error loss
(mnist_scratch.engine.losses.REGRESSION_LOSSES), one full-batch step per epoch. The grid error is measured on
a dense grid over the range, between the samples. fits.png shows each width's fit, error_vs_width.png
the final MSE against the width (log-log) and the training curves; summary.json holds the MSEs."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from common.cli import parse_args, positive_int
from common.errors import TrainingDiverged, run_cli
from common.schedules import SCHEDULES
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import REGRESSION_LOSSES
from mnist_scratch.engine.network import mlp
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer
from mnist_scratch.engine.training import SCHEDULE_NAMES, init_states, loss_and_grads
from mnist_scratch.experiment import ASSIGNMENT, experiment_parser, small_blas, start_run
from mnist_scratch.plots import plot_error_vs_width, plot_fits


@dataclass(frozen=True)
class Target:
    formula: str
    fn: Callable[[np.ndarray], np.ndarray]
    half_range: float    # x in [-half_range, half_range]


TARGETS = {
    "sine": Target("sin(3x) + 0.3x²", lambda x: np.sin(3 * x) + 0.3 * x ** 2, 3.0),
    "bump": Target("sin(4x)·exp(-x²/4) + 0.5|x|",
                   lambda x: np.sin(4 * x) * np.exp(-x ** 2 / 4) + 0.5 * np.abs(x), 3.0),
}
GRID_POINTS = 1001


def build_parser():
    parser = experiment_parser(__doc__, epochs=5000, lr=0.03, unused=("batch_size", "data", "data_root"))
    add = parser.add_argument
    add("--target", choices=list(TARGETS), default="sine",
        help="function to fit: " + "; ".join(f"{k}: {t.formula}" for k, t in TARGETS.items())
             + " (default: %(default)s)")
    add("--widths", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
        help="hidden-layer widths to fit, one network each (default: %(default)s)")
    add("--samples", type=positive_int, default=256, help="training samples (default: %(default)s)")
    add("--activation", choices=list(ACTIVATIONS), default="tanh", help="hidden activation (default: %(default)s)")
    add("--init", choices=list(INITS), default="xavier", help="weight initialisation (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default="adam", help="update rule (default: %(default)s)")
    add("--lr-schedule", choices=SCHEDULE_NAMES, default="cosine",
        help="lr schedule over the epochs (one full-batch step each) (default: %(default)s)")
    return parser


def fit_width(width: int, x: np.ndarray, t: np.ndarray, args) -> tuple:
    """Train 1 -> width -> 1 on (x (N, 1), t (N, 1)); returns (net, training MSE per epoch)."""
    net = mlp((1, width, 1), args.activation, args.init, np.random.default_rng([args.seed, 3, width]), np.float64)
    optimizer = build_optimizer(args.optimizer, args.lr)
    states, params, loss_fn = init_states(net, optimizer), net.params(), REGRESSION_LOSSES["mse"]
    curve = []
    for epoch in range(1, args.epochs + 1):
        optimizer.lr = SCHEDULES[args.lr_schedule](epoch - 1, args.epochs) * args.lr
        loss, grads = loss_and_grads(net, x, t, loss_fn)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"width {width}: the loss became {loss} at epoch {epoch}; lower --lr")
        for name, w in params.items():
            optimizer.update(w, grads[name], states[name])
        curve.append(loss)
    return net, curve


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT,
                      run_name=lambda a: f"approximation_{a.target}_{a.activation}_seed{a.seed}")
    if args.smoke:
        args.epochs, args.widths = min(args.epochs, 300), [args.widths[0], args.widths[-1]]
    widths = sorted(set(args.widths))
    target = TARGETS[args.target]
    half = target.half_range
    x = np.sort(np.random.default_rng([args.seed, 1]).uniform(-half, half, (args.samples, 1)), axis=0)  # (N, 1)
    t = target.fn(x)                                                                             # (N, 1)
    grid = np.linspace(-half, half, GRID_POINTS)[:, None]                                              # (G, 1)
    grid_t = target.fn(grid)
    loss_fn = REGRESSION_LOSSES["mse"]
    run = start_run(args, data_source=f"generated: {args.samples} samples of {target.formula} on [-{half:g}, {half:g}] "
                                      f"(seed {args.seed})")
    predictions, curves, rows = {}, {}, []
    for width in widths:
        with small_blas(len(x)):
            net, curves[width] = fit_width(width, x, t, args)
        predictions[width] = net.logits(grid)[:, 0]                                             # (G,)
        row = {"width": width, "parameters": 3 * width + 1, "train_mse": loss_fn(net.logits(x), t)[0],
               "grid_mse": loss_fn(net.logits(grid), grid_t)[0]}
        run.log(row)
        rows.append(row)
        print(f"width {width:>3}: train MSE {row['train_mse']:.2e}, grid MSE {row['grid_mse']:.2e}", flush=True)
    title = (f"{target.formula}: 1→H→1 {args.activation}, {args.optimizer} lr {args.lr} {args.lr_schedule}, "
             f"{args.epochs} full-batch epochs, seed {args.seed}")
    plot_fits(grid[:, 0], grid_t[:, 0], predictions, (x[:, 0], t[:, 0]), run.file("fits.png"), title=title)
    plot_error_vs_width({split: {r["width"]: r[f"{split}_mse"] for r in rows} for split in ("train", "grid")},
                        curves, run.file("error_vs_width.png"), title=title)
    summary = run.finish({
        "target": target.formula, "range": [-half, half], "samples": args.samples, "grid_points": GRID_POINTS,
        "widths": widths, "rows": rows, "epochs": args.epochs,
        "first_grid_mse": rows[0]["grid_mse"], "last_grid_mse": rows[-1]["grid_mse"],
        "error_ratio": rows[0]["grid_mse"] / rows[-1]["grid_mse"], "figures": ["fits.png", "error_vs_width.png"],
    })
    print(f"grid MSE {rows[0]['grid_mse']:.2e} with {widths[0]} unit(s) -> {rows[-1]['grid_mse']:.2e} with "
          f"{widths[-1]}; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
