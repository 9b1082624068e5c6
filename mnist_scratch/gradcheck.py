"""Check every layer and loss of the NumPy engine against centred differences (float64).

    python mnist_scratch/gradcheck.py            # prints a table; exit 1 if any check fails

Each check compares the analytic gradient from backward() with (f(x + h) - f(x - h)) / 2h for every
input and parameter entry, on small seeded shapes, and reports the maximum relative error."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from common.cli import OneLineParser, positive_float, seed_int
from common.errors import UserError, run_cli
from common.reporting import markdown_table
from mnist_scratch.engine import conv
from mnist_scratch.engine.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from mnist_scratch.engine.layers import ACTIVATIONS, affine_backward, affine_forward
from mnist_scratch.engine.losses import LOSSES, REGRESSION_LOSSES
from mnist_scratch.engine.network import mlp
from mnist_scratch.engine.training import l2_penalty, loss_and_grads
from mnist_scratch.model import CNNConfig, build_model

Result = tuple[str, np.ndarray, np.ndarray]  # (what, analytic gradient, numerical gradient)


def check_affine(rng) -> list[Result]:
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    out, cache = affine_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    grads = dict(zip("xwb", affine_backward(dout, cache)))

    def forward():
        return affine_forward(x, w, b)[0]

    return [(name, grads[name], numerical_gradient_array(forward, value, dout))
            for name, value in zip("xwb", (x, w, b))]


def check_activation(name: str) -> Callable:
    def check(rng) -> list[Result]:
        act = ACTIVATIONS[name]
        x = rng.standard_normal((4, 5))
        x[np.abs(x) < 1e-2] = 0.5  # away from kinks
        dout = rng.standard_normal(x.shape)
        dx = act.backward(dout, act.forward(x)[1])
        return [("x", dx, numerical_gradient_array(lambda: act.forward(x)[0], x, dout, h=1e-5))]
    return check


def check_loss(name: str) -> Callable:
    def check(rng) -> list[Result]:
        logits, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
        return [("logits", LOSSES[name](logits, y)[1], numerical_gradient(lambda: LOSSES[name](logits, y)[0], logits))]
    return check


def check_regression_loss(name: str) -> Callable:
    def check(rng) -> list[Result]:
        pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
        loss = REGRESSION_LOSSES[name]
        return [("pred", loss(pred, target)[1], numerical_gradient(lambda: loss(pred, target)[0], pred))]
    return check


def check_conv(rng) -> list[Result]:
    x, w, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    out, cache = conv.conv2d_forward(x, w, b, 2, 1)
    dout = rng.standard_normal(out.shape)
    grads = dict(zip("xwb", conv.conv2d_backward(dout, cache)))

    def forward():
        return conv.conv2d_forward(x, w, b, 2, 1)[0]

    return [(name, grads[name], numerical_gradient_array(forward, value, dout))
            for name, value in zip("xwb", (x, w, b))]


def check_pool(forward: Callable, backward: Callable) -> Callable:
    def check(rng) -> list[Result]:
        x = rng.permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) / 10.0  # distinct values: no ties at a max
        out, cache = forward(x, 3, 2)
        dout = rng.standard_normal(out.shape)
        return [("x", backward(dout, cache), numerical_gradient_array(lambda: forward(x, 3, 2)[0], x, dout, h=1e-5))]
    return check


def check_network(build: Callable, x_shape: tuple) -> Callable:
    """A whole network's parameters through cross-entropy + L2, as training computes them."""
    def check(rng) -> list[Result]:
        net = build(rng)
        x, y, l2 = rng.standard_normal(x_shape), rng.integers(0, 10, x_shape[0]), 0.01
        _, grads = loss_and_grads(net, x, y, LOSSES["cross_entropy"], l2)

        def total() -> float:
            return LOSSES["cross_entropy"](net.logits(x), y)[0] + l2_penalty(net, l2)
        return [(name, grads[name], numerical_gradient(total, value, h=1e-5)) for name, value in net.params().items()]
    return check


def _small_cnn(rng):
    config = CNNConfig(image=(1, 8, 8), channels=(2, 3), hidden=(6,))
    return build_model(config, int(rng.integers(1000)), dtype=np.float64)


CHECKS: dict[str, Callable] = {
    "affine": check_affine,
    **{f"activation {name}": check_activation(name) for name in ACTIVATIONS},
    **{f"loss {name}": check_loss(name) for name in LOSSES},
    "conv2d (stride 2, pad 1)": check_conv,
    "maxpool 3x3 stride 2": check_pool(conv.maxpool_forward, conv.maxpool_backward),
    "avgpool 3x3 stride 2": check_pool(conv.avgpool_forward, conv.avgpool_backward),
    "MLP 12-8-6-10 relu + L2": check_network(lambda rng: mlp((12, 8, 6, 10), "relu", "he", rng, np.float64), (4, 12)),
    "CNN 2 conv stages + L2": check_network(_small_cnn, (3, 64)),
    # appended last so that the checks above keep their seeds ([--seed, index])
    **{f"regression loss {name}": check_regression_loss(name) for name in REGRESSION_LOSSES},
}


def main(argv=None) -> list[list]:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the random shapes' values (default: %(default)s)")
    parser.add_argument("--tolerance", type=positive_float, default=1e-6,
                        help="largest relative error that passes (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="the same checks (they are already seconds)")
    args = parser.parse_args(argv)
    rows = []
    for index, (name, check) in enumerate(CHECKS.items()):
        for what, analytic, numeric in check(np.random.default_rng([args.seed, index])):
            error = rel_error(analytic, numeric)
            rows.append([name, what, f"{error:.1e}", "ok" if error <= args.tolerance else "FAIL"])
    print(markdown_table(["component", "gradient of", "max relative error", f"≤ {args.tolerance:g}"], rows))
    failed = [f"{r[0]}/{r[1]}" for r in rows if r[3] == "FAIL"]
    if failed:
        raise UserError(f"{len(failed)} gradient checks failed: {', '.join(failed)}")
    print(f"all {len(rows)} gradient checks passed")
    return rows


if __name__ == "__main__":
    run_cli(main)
