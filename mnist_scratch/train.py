"""Train the NumPy MLP (or CNN) on MNIST with batch, stochastic or mini-batch gradient descent.

    python mnist_scratch/train.py                          # mini-batch, He init, 90:10, 25 epochs
    python mnist_scratch/train.py --gd batch --split 70:30
    python mnist_scratch/train.py --data real --data-root ../shared/data
    python mnist_scratch/train.py --model cnn --epochs 5 --pool avg
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from threadpoolctl import threadpool_limits

from common.cli import NUMPY_DEVICES, decay_rate, make_parser, non_negative_float, parse_args, positive_int, typed_flags
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.metrics import accuracy, confusion, macro_f1
from common.plots import plot_confusion, plot_curves, plot_image_grid
from common.progress import progress
from common.rundir import RunDir
from common.runtime import seed_everything
from common.schedules import SCHEDULES
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.network import Conv2D
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer, refuse_unused
from mnist_scratch.engine.training import (SCHEDULE_NAMES, LossGuard, add_l2_grads, blas_threads_for, checkpoint,
                                           evaluate, init_states, resume, shuffled_batches)
from common.rundir import end_epoch
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
MLP, CNN = MLPConfig(), CNNConfig()   # the networks' recipes: their configs' defaults
# The recipe behind the README's result: every flag's default comes from here (--help shows these values);
# --batch-size and --lr follow --gd and --model (GD_TYPES), --hidden follows --model (MLP / CNN above).
RECIPE = {"epochs": 25, "gd": "minibatch", "split": "90:10", "model": "mlp", "channels": list(CNN.channels),
          "pool": CNN.pool, "activation": MLP.activation, "init": MLP.init, "optimizer": "momentum",
          "momentum": 0.9, "l2": 1e-4, "lr_schedule": "cosine"}
SMOKE = {"hidden": [16], "channels": [4]}   # --smoke: at most 2 epochs of this


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=RECIPE["epochs"], batch_size=None, lr=None,
                         devices=NUMPY_DEVICES,
                         batch_size_help="examples per step, --gd minibatch only (default: None: set by --gd: "
                                         + ", ".join(f"{k} {v.batch_size or 'all'}" for k, v in GD_TYPES.items())
                                         + ")",
                         lr_help="base learning rate (default: None: set by --gd and --model: "
                                 + "; ".join(f"{k} " + ", ".join(f"{m} {lr}" for m, lr in v.lr.items())
                                             for k, v in GD_TYPES.items()) + ")")
    add = parser.add_argument
    add("--gd", choices=list(GD_TYPES), default=RECIPE["gd"], help="gradient-descent variant (default: %(default)s)")
    add("--split", choices=list(SPLITS), default=RECIPE["split"],
        help="train:test split of the pooled set (default: %(default)s)")
    add("--model", choices=list(MODELS), default=RECIPE["model"], help="network family (default: %(default)s)")
    add("--hidden", type=positive_int, nargs="+", default=None,
        help="fully connected hidden sizes (default: None: "
             + " for the MLP, ".join(" ".join(map(str, c.hidden)) for c in (MLP, CNN)) + " for the CNN's head)")
    add("--channels", type=positive_int, nargs="+", default=RECIPE["channels"],
        help="CNN: filters per conv stage, each followed by a 2x2 pool (default: %(default)s)")
    add("--pool", choices=list(POOLS), default=RECIPE["pool"], help="CNN: pooling (default: %(default)s)")
    add("--activation", choices=list(ACTIVATIONS), default=RECIPE["activation"],
        help="hidden activation (default: %(default)s)")
    add("--init", choices=list(INITS), default=RECIPE["init"], help="weight initialisation (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default=RECIPE["optimizer"],
        help="update rule (default: %(default)s)")
    add("--momentum", type=decay_rate, default=RECIPE["momentum"],
        help="momentum for momentum/nesterov (default: %(default)s)")
    add("--l2", type=non_negative_float, default=RECIPE["l2"],
        help="L2 regularisation strength (default: %(default)s)")
    add("--lr-schedule", choices=SCHEDULE_NAMES, default=RECIPE["lr_schedule"],
        help="per-epoch lr schedule (common.schedules) (default: %(default)s)")
    return parser


def parse(argv=None):
    """The flags, with --batch-size and --lr filled from the GD type and --hidden from the model; a batch size
    that contradicts the GD type, or CNN flags for the MLP, are refused."""
    parser = build_parser()
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    refuse_unused(args.optimizer, typed_flags(parser, argv) & {"momentum"})
    gd = GD_TYPES[args.gd]
    if args.model not in gd.lr:
        raise UserError(f"--gd {args.gd} does not support --model {args.model}; use "
                        + " or ".join(f"--gd {k}" for k, v in GD_TYPES.items() if args.model in v.lr))
    if args.batch_size is not None and args.gd != "minibatch":
        raise UserError(f"--batch-size applies to --gd minibatch only (--gd {args.gd} fixes it)")
    if args.model != "cnn" and (args.channels != RECIPE["channels"] or args.pool != RECIPE["pool"]):
        raise UserError("--channels and --pool apply to --model cnn only")
    if args.batch_size is None:
        args.batch_size = gd.batch_size if gd.batch_size is not None else GD_TYPES["minibatch"].batch_size
    args.lr = gd.lr[args.model] if args.lr is None else args.lr
    if args.hidden is None:
        args.hidden = list(MODELS[args.model].hidden)
    if args.smoke:
        args.epochs = min(args.epochs, 2)
        vars(args).update(SMOKE)
    return args


def run_name(args) -> str:
    model = f"cnn-{args.pool}pool_" if args.model == "cnn" else ""
    return f"{model}{args.gd}_{args.split.replace(':', '-')}_{args.init}_{args.activation}_seed{args.seed}"


def model_config(args) -> MLPConfig | CNNConfig:
    if args.model == "cnn":
        return CNNConfig(channels=tuple(args.channels), pool=args.pool, hidden=tuple(args.hidden),
                         activation=args.activation, init=args.init)
    return MLPConfig(hidden=tuple(args.hidden), activation=args.activation, init=args.init)


def main(argv=None) -> dict:
    args = parse(argv)
    seed_everything(args.seed)
    data = load_mnist_split(args.split, mode=args.data, root=args.data_root, seed=args.seed, smoke=args.smoke)
    batch_size = len(data.y_train) if args.gd == "batch" else args.batch_size
    config = model_config(args)
    net = build_model(config, args.seed)
    run = RunDir(args, data_source=data.source)
    print(f"{ASSIGNMENT}: {args.gd} GD, batch {batch_size}, lr {args.lr}, {config.describe()}, "
          f"{len(data.y_train):,} train / {len(data.y_test):,} test, data: {data.source}")
    train(args, net, config, data, batch_size, run)
    return write_artefacts(run, net, data, LOSSES["cross_entropy"], args, config)


def train(args, net, config, data, batch_size: int, run: RunDir) -> None:
    """--epochs of shuffled mini-batch steps (forward, loss, backward, update), each epoch then scored on the
    train and test splits, logged, and checkpointed; from the last checkpoint under --resume."""
    optimizer = build_optimizer(args.optimizer, args.lr, momentum=args.momentum)
    states = init_states(net, optimizer)
    params, loss_fn = net.params(), LOSSES["cross_entropy"]
    x_train, y_train = data.x_train, data.y_train
    steps = -(-len(y_train) // batch_size)
    blas_threads = blas_threads_for(batch_size, has_conv=args.model == "cnn")
    start, elapsed = resume(run, net, states)
    guard = LossGuard(run)
    for epoch in range(start, args.epochs):
        optimizer.lr = SCHEDULES[args.lr_schedule](epoch, args.epochs) * args.lr
        tic = time.perf_counter()
        loss_sum = 0.0
        batches = shuffled_batches(x_train, y_train, batch_size, seed=args.seed, epoch=epoch)
        with (threadpool_limits(limits=blas_threads, user_api="blas"),     # see blas_threads_for
              np.errstate(over="ignore", invalid="ignore")):                # LossGuard stops a diverged run
            for step, (x, y) in enumerate(progress(batches, desc=f"epoch {epoch + 1}", total=steps,
                                                   quiet=args.smoke)):
                logits, caches = net.forward(x)                       # (B, 10)
                loss, dlogits = loss_fn(logits, y)
                guard.check(loss, epoch, step)
                grads = net.backward(dlogits, caches)
                add_l2_grads(grads, params, args.l2)
                for name, w in params.items():
                    optimizer.update(w, grads[name], states[name])
                loss_sum += loss
        guard.end_epoch(loss_sum / steps)                             # the next epoch's reference
        elapsed += time.perf_counter() - tic

        record = {"epoch": epoch + 1, "lr": optimizer.lr}
        for split, (x, y) in {"train": (x_train, y_train), "test": (data.x_test, data.y_test)}.items():
            result = evaluate(net, x, y, loss_fn, args.l2, config.eval_batch)
            record[f"{split}_loss"], record[f"{split}_acc"] = result.loss, accuracy(y, result.predictions)
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, states), quiet=args.smoke)


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
