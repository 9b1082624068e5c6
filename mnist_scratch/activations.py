"""Plot every activation of the NumPy engine and its derivative, and check each derivative.

    python mnist_scratch/activations.py                    # runs/mnist_scratch/activations/
    python mnist_scratch/activations.py --range 8 --out /tmp/act

For each entry of mnist_scratch.engine.layers.ACTIVATIONS it plots f(x) and f'(x) on [-range, range], and
compares the analytic derivative (and backward() with dout = 1) with centred differences
(f(x + h) - f(x - h)) / 2h in float64, away from ReLU's kink at 0. The maximum absolute errors go to
summary.json; the run fails (exit 2) when one exceeds --tolerance. No data set is used."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from common.cli import parse_args, positive_float, positive_int
from common.errors import UserError, run_cli
from common.reporting import markdown_table
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.experiment import ASSIGNMENT, experiment_parser, start_run
from mnist_scratch.plots import plot_activations

STEP = 1e-5   # h of the centred difference; beyond |x| = SCALE_FROM it grows with |x| (x + 1e-5 at x = 1e9 is off by a
SCALE_FROM = 1e3   # ulp of 1.2e-7, and the difference reported a correct derivative as wrong by 1e-3)
KINK = 1e-3   # points this close to 0 are skipped: ReLU and LeakyReLU have no derivative there


def build_parser():
    parser = experiment_parser(__doc__, unused=("epochs", "batch_size", "lr", "seed", "data", "data_root"))
    add = parser.add_argument
    add("--range", type=positive_float, default=5.0, help="plot and check x in [-range, range] (default: %(default)s)")
    add("--points", type=positive_int, default=2001, help="grid points (default: %(default)s)")
    add("--tolerance", type=positive_float, default=1e-6,
        help="largest absolute derivative error that passes (default: %(default)s)")
    return parser


def check(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """f(x), f'(x) and the errors of the analytic derivative and of backward(1) against centred differences."""
    act = ACTIVATIONS[name]
    value, cache = act.forward(x)                                   # (P,)
    derivative = act.derivative(x)                                  # (P,)
    from_backward = act.backward(np.ones_like(x), cache)            # (P,)
    step = STEP * np.maximum(1.0, np.abs(x) / SCALE_FROM)
    numeric = (act.forward(x + step)[0] - act.forward(x - step)[0]) / (2 * step)
    smooth = np.abs(x) > KINK
    stats = {
        "max_derivative_error": float(np.max(np.abs(derivative - numeric)[smooth])),
        "max_backward_error": float(np.max(np.abs(from_backward - numeric)[smooth])),
        "max_derivative": float(derivative.max()),
        "derivative_at_minus_range": float(derivative[0]), "derivative_at_plus_range": float(derivative[-1]),
    }
    return value, derivative, stats


def worst_error(stats: dict) -> float:
    return max(stats["max_derivative_error"], stats["max_backward_error"])


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=lambda a: "activations")
    if args.points < 3:
        raise UserError(f"--points {args.points} is too few; use at least 3")
    points = 201 if args.smoke else args.points
    x = np.linspace(-args.range, args.range, points)                # (P,) float64
    run = start_run(args, data_source="none: analytic functions on a grid")
    curves, table = {}, {}
    for name in ACTIVATIONS:
        value, derivative, table[name] = check(name, x)
        curves[name] = (value, derivative)
        run.log({"activation": name, **table[name]})
    plot_activations(x, curves, run.file("activations.png"),
                     title=f"activations of the NumPy engine (leaky ReLU slope {ACTIVATIONS['leaky_relu'].slope})")
    print(markdown_table(["activation", "max error of f' vs centred diff.", "max error of backward(1)", "max f'"],
                         [[n, f"{r['max_derivative_error']:.1e}", f"{r['max_backward_error']:.1e}",
                           f"{r['max_derivative']:.3g}"] for n, r in table.items()]))
    worst = max(worst_error(r) for r in table.values())
    summary = run.finish({"activations": table, "max_error": worst, "range": args.range, "points": points,
                          "step": STEP, "tolerance": args.tolerance, "figures": ["activations.png"]})
    failed = [name for name, r in table.items() if worst_error(r) > args.tolerance]
    if failed:
        raise UserError(f"derivative check failed for {', '.join(failed)} (max error {worst:.1e} > "
                        f"--tolerance {args.tolerance:g})")
    print(f"all {len(table)} derivatives match centred differences (max error {worst:.1e}); run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
