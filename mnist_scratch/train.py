"""Train the NumPy MLP (or CNN) on MNIST with batch, stochastic or mini-batch gradient descent.

    python mnist_scratch/train.py                          # mini-batch, He init, 90:10, 25 epochs
    python mnist_scratch/train.py --gd batch --split 70:30
    python mnist_scratch/train.py --data real --data-root ../shared/data
    python mnist_scratch/train.py --model cnn --epochs 5 --pool avg
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from common.cli import NUMPY_DEVICES, make_parser, non_negative_float, parse_args, positive_int
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.metrics import confusion, macro_f1
from common.plots import plot_confusion, plot_curves, plot_image_grid
from common.scratch.network import Conv2D
from common.rundir import RunDir
from common.runtime import seed_everything
from common.scratch.init import INITS
from common.scratch.layers import ACTIVATIONS
from common.scratch.losses import LOSSES
from common.scratch.optim import OPTIMIZERS, build_optimizer
from common.scratch.fit import ScratchFitSettings, blas_threads_for, fit
from common.scratch.schedules import SCHEDULES
from common.scratch.trainer import evaluate, init_states
from mnist_scratch.data import SPLITS, load_mnist_split
from mnist_scratch.model import MODELS, POOLS, CNNConfig, MLPConfig, build_model

ASSIGNMENT = "mnist_scratch"


@dataclass(frozen=True)
class GDType:
    """A gradient-descent variant: how many examples each step sees, and the lr that suits each model
    (a model missing from `lr` cannot use this variant)."""
    batch_size: int | None  # None: the whole training split
    lr: dict[str, float]


GD_TYPES = {
    # one step per epoch over all examples; the CNN would need im2col of the whole set in memory
    "batch": GDType(batch_size=None, lr={"mlp": 0.1}),
    "sgd": GDType(batch_size=1, lr={"mlp": 0.002, "cnn": 0.0005}),  # one step per example
    "minibatch": GDType(batch_size=64, lr={"mlp": 0.05, "cnn": 0.01}),
}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=25, batch_size=None, lr=None, devices=NUMPY_DEVICES,
                         batch_size_help="examples per step, --gd minibatch only (default: 64)",
                         lr_help="base learning rate (default: set by --gd and --model: "
                                 + "; ".join(f"{k} " + ", ".join(f"{m} {lr}" for m, lr in v.lr.items())
                                             for k, v in GD_TYPES.items()) + ")")
    add = parser.add_argument
    add("--gd", choices=list(GD_TYPES), default="minibatch", help="gradient-descent variant (default: %(default)s)")
    add("--split", choices=list(SPLITS), default="90:10",
        help="train:test split of the pooled set (default: %(default)s)")
    add("--model", choices=list(MODELS), default="mlp", help="network family (default: %(default)s)")
    add("--hidden", type=positive_int, nargs="+", default=None,
        help="fully connected hidden sizes (default: 128 64 for the MLP, 128 for the CNN's head)")
    add("--channels", type=positive_int, nargs="+", default=[32, 64],
        help="CNN: filters per conv stage, each followed by a 2x2 pool (default: 32 64)")
    add("--pool", choices=list(POOLS), default="max", help="CNN: pooling (default: %(default)s)")
    add("--activation", choices=list(ACTIVATIONS), default="relu", help="hidden activation (default: %(default)s)")
    add("--init", choices=list(INITS), default="he", help="weight initialisation (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default="momentum", help="update rule (default: %(default)s)")
    add("--momentum", type=non_negative_float, default=0.9,
        help="momentum for momentum/nesterov (default: %(default)s)")
    add("--l2", type=non_negative_float, default=1e-4, help="L2 regularisation strength (default: %(default)s)")
    add("--lr-schedule", choices=list(SCHEDULES), default="cosine", help="per-epoch lr schedule (default: %(default)s)")
    return parser


def run_name(args) -> str:
    model = f"cnn-{args.pool}pool_" if args.model == "cnn" else ""
    return f"{model}{args.gd}_{args.split.replace(':', '-')}_{args.init}_{args.activation}_seed{args.seed}"


def model_config(args) -> MLPConfig | CNNConfig:
    if args.model == "cnn":
        return CNNConfig(channels=tuple(args.channels), pool=args.pool, hidden=tuple(args.hidden),
                         activation=args.activation, init=args.init)
    return MLPConfig(hidden=tuple(args.hidden), activation=args.activation, init=args.init)


def resolve_gd(args) -> None:
    """Fill --batch-size and --lr from the GD type; reject a batch size that contradicts it."""
    gd = GD_TYPES[args.gd]
    if args.model not in gd.lr:
        raise UserError(f"--gd {args.gd} does not support --model {args.model}; use "
                        + " or ".join(f"--gd {k}" for k, v in GD_TYPES.items() if args.model in v.lr))
    if args.batch_size is not None and args.gd != "minibatch":
        raise UserError(f"--batch-size applies to --gd minibatch only (--gd {args.gd} fixes it)")
    if args.batch_size is None:
        args.batch_size = gd.batch_size if gd.batch_size is not None else 64
    args.lr = gd.lr[args.model] if args.lr is None else args.lr
    if args.hidden is None:
        args.hidden = [128, 64] if args.model == "mlp" else [128]
    if args.smoke:
        args.epochs, args.hidden, args.channels = min(args.epochs, 2), [16], [4]


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    resolve_gd(args)
    seed_everything(args.seed)
    data = load_mnist_split(args.split, mode=args.data, root=args.data_root, seed=args.seed, smoke=args.smoke)
    batch_size = len(data.y_train) if args.gd == "batch" else args.batch_size

    config = model_config(args)
    net = build_model(config, args.seed)
    optimizer = build_optimizer(args.optimizer, args.lr, momentum=args.momentum)
    states = init_states(net, optimizer)
    loss_fn = LOSSES["cross_entropy"]
    run = RunDir(args, data_source=data.source)
    print(f"{ASSIGNMENT}: {args.gd} GD, batch {batch_size}, lr {args.lr}, {config.describe()}, "
          f"{len(data.y_train):,} train / {len(data.y_test):,} test, data: {data.source}")
    settings = ScratchFitSettings(epochs=args.epochs, lr=args.lr, lr_schedule=args.lr_schedule, batch_size=batch_size,
                           l2=args.l2, seed=args.seed, loss_fn=loss_fn, eval_batch=config.eval_batch,
                           quiet=args.smoke, blas_threads=blas_threads_for(batch_size, has_conv=args.model == "cnn"))
    fit(net, optimizer, states, run, (data.x_train, data.y_train), {"test": (data.x_test, data.y_test)},
        settings, config.to_dict())
    return write_artefacts(run, net, data, loss_fn, args, config)


def plot_filters(net, path_for) -> list[str]:
    """Each conv layer's learned filters (averaged over input channels), one figure per layer."""
    written = []
    convs = [layer for layer in net.layers if isinstance(layer, Conv2D)]
    for index, layer in enumerate(convs, 1):
        filters = layer.params["w"].mean(axis=1)                  # (F, K, K)
        name = f"filters_conv{index}.png"
        plot_image_grid(filters, [f"#{i}" for i in range(len(filters))], path_for(name), ncols=8,
                        title=f"conv{index}: {len(filters)} learned {filters.shape[1]}x{filters.shape[2]} filters"
                              + (" (mean over input channels)" if layer.params["w"].shape[1] > 1 else ""))
        written.append(name)
    return written


def write_artefacts(run: RunDir, net, data, loss_fn, args, config) -> dict:
    """Curves, confusion matrices, a prediction grid, filters (CNN), and summary.json."""
    records = run.metrics()
    test_eval = evaluate(net, data.x_test, data.y_test, loss_fn, args.l2, config.eval_batch)
    matrix = confusion(data.y_test, test_eval.predictions, len(data.classes))
    title = f"{args.model}, {args.gd} GD, {args.split}, {args.init} init ({short_source(data.source)})"
    plot_curves(records, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc", "test_acc"]},
                run.file("curves.png"), title=title)
    plot_confusion(matrix, data.classes, run.file("confusion.png"), title=f"test confusion, {title}")
    plot_confusion(matrix, data.classes, run.file("confusion_normalised.png"), normalize=True)
    shown = slice(0, 20)
    plot_image_grid(data.test_images[shown], [f"pred {data.classes[p]} / {data.classes[t]}" for p, t in
                    zip(test_eval.predictions[shown], data.y_test[shown])], run.file("predictions.png"))
    extra = {}
    if isinstance(config, CNNConfig):
        extra = {"filter_figures": plot_filters(net, run.file),
                 "receptive_fields": [{"layer": n, "field": f, "jump": j} for n, f, j in config.receptive_fields()]}
    last = records[-1]
    summary = run.finish({
        "train_acc": last["train_acc"], "test_acc": last["test_acc"],
        "train_loss": last["train_loss"], "test_loss": last["test_loss"],
        "best_test_acc": max(r["test_acc"] for r in records),
        "test_macro_f1": macro_f1(data.y_test, test_eval.predictions),
        "parameters": int(sum(w.size for w in net.params().values())),
        "model_config": config.to_dict(), "model": config.describe(), **extra,
        "gd": args.gd, "split": args.split, "init": args.init,
        "batch_size": len(data.y_train) if args.gd == "batch" else args.batch_size, "lr": args.lr,
    }, records)
    print(f"done: test accuracy {summary['test_acc']:.2%} (train {summary['train_acc']:.2%}) after "
          f"{summary['epochs']} epochs; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
