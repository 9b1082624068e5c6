"""Train a feed-forward network on Fashion-MNIST with the NumPy engine (one configuration, one run).

    python fashion_mnist_ffn/train.py                                  # the tuned defaults
    python fashion_mnist_ffn/train.py --num-layers 3 --hidden-size 128 --optimizer nadam --lr 1e-3
    python fashion_mnist_ffn/train.py --hidden 512 256 128 --activation tanh --init xavier
    python fashion_mnist_ffn/train.py --loss squared_error
    python fashion_mnist_ffn/train.py --loader keras                   # keras.datasets.fashion_mnist
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from threadpoolctl import threadpool_limits

from common.cli import (NUMPY_DEVICES, decay_rate, layer_count, make_parser, non_negative_float, open_fraction,
                        parse_args, positive_float, positive_int, typed_flags)
from common.data_source import short_source
from common.errors import run_cli
from common.metrics import accuracy, confusion, macro_f1
from common.plots import plot_confusion, plot_curves, plot_image_grid
from common.progress import progress
from common.rundir import RunDir
from common.runtime import seed_everything
from common.schedules import SCHEDULES
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.layers import ACTIVATIONS
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer, refuse_unused
from mnist_scratch.engine.training import (SCHEDULE_NAMES, LossGuard, add_l2_grads, blas_threads_for, checkpoint,
                                           evaluate, init_states, resume, shuffled_batches)
from common.rundir import end_epoch
from fashion_mnist_ffn.data import LOADERS, load_fashion, one_per_class
from fashion_mnist_ffn.model import FFNConfig, build_model, hidden_sizes

ASSIGNMENT = "fashion_mnist_ffn"
MODEL = FFNConfig()   # the network's recipe (784-256-256-10 ReLU, He init): its config's defaults
# The recipe behind the README's result (the follow-up grid's best): every flag's default comes from here
# (--help shows these values).
RECIPE = {"epochs": 30, "batch_size": 64, "lr": 1e-3, "loader": "common", "num_layers": len(MODEL.hidden),
          "hidden_size": MODEL.hidden[0], "activation": MODEL.activation, "init": MODEL.init, "optimizer": "adam",
          "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "alpha": 0.99, "eps": 1e-8, "l2": 5e-4,
          "loss": "cross_entropy", "lr_schedule": "cosine", "val_fraction": 0.1}
SMOKE = {"num_layers": 1, "hidden_size": 16, "hidden": None}   # --smoke: at most 2 epochs of this
OPTIMIZER_OPTIONS = ("momentum", "beta1", "beta2", "alpha", "eps")   # each used by some optimizers only


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                         lr=RECIPE["lr"], devices=NUMPY_DEVICES)
    add = parser.add_argument
    add("--loader", choices=list(LOADERS), default=RECIPE["loader"],
        help="common: the project's loader (torchvision layout under --data-root); keras: "
             "keras.datasets.fashion_mnist and its cache (default: %(default)s)")
    add("--num-layers", type=layer_count, default=RECIPE["num_layers"], help="hidden layers (default: %(default)s)")
    add("--hidden-size", type=positive_int, default=RECIPE["hidden_size"],
        help="units per hidden layer (default: %(default)s)")
    add("--hidden", type=positive_int, nargs="+", default=None,
        help="explicit hidden sizes, e.g. --hidden 512 256 (overrides --num-layers/--hidden-size) "
             "(default: None: --num-layers x --hidden-size)")
    add("--activation", choices=list(ACTIVATIONS), default=RECIPE["activation"],
        help="hidden activation (default: %(default)s)")
    add("--init", choices=list(INITS), default=RECIPE["init"], help="weight initialisation (default: %(default)s)")
    add("--optimizer", choices=list(OPTIMIZERS), default=RECIPE["optimizer"],
        help="update rule (default: %(default)s)")
    add("--momentum", type=decay_rate, default=RECIPE["momentum"],
        help="momentum / nesterov (default: %(default)s)")
    add("--beta1", type=decay_rate, default=RECIPE["beta1"],
        help="adam / nadam first-moment decay (default: %(default)s)")
    add("--beta2", type=decay_rate, default=RECIPE["beta2"],
        help="adam / nadam second-moment decay (default: %(default)s)")
    add("--alpha", type=decay_rate, default=RECIPE["alpha"], help="rmsprop smoothing (default: %(default)s)")
    add("--eps", type=positive_float, default=RECIPE["eps"],
        help="adam / nadam / rmsprop epsilon (default: %(default)s)")
    add("--l2", type=non_negative_float, default=RECIPE["l2"],
        help="L2 regularisation (weight decay) (default: %(default)s)")
    add("--loss", choices=list(LOSSES), default=RECIPE["loss"],
        help="training loss on the softmax (default: %(default)s)")
    add("--lr-schedule", choices=SCHEDULE_NAMES, default=RECIPE["lr_schedule"],
        help="per-epoch lr schedule (common.schedules) (default: %(default)s)")
    add("--val-fraction", type=open_fraction, default=RECIPE["val_fraction"],
        help="share of train held out for validation (default: %(default)s)")
    return parser


def parse(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    refuse_unused(args.optimizer, typed_flags(parser, argv) & set(OPTIMIZER_OPTIONS))
    if args.smoke:
        args.epochs = min(args.epochs, 2)
        vars(args).update(SMOKE)
    return args


def run_name(args) -> str:
    hidden = "-".join(map(str, hidden_sizes(args.num_layers, args.hidden_size, args.hidden)))
    return (f"{hidden}_{args.activation}_{args.init}_{args.optimizer}_lr{args.lr:g}_b{args.batch_size}_{args.loss}"
            f"_seed{args.seed}")


def main(argv=None) -> dict:
    args = parse(argv)
    seed_everything(args.seed)
    data = load_fashion(loader=args.loader, mode=args.data, root=args.data_root, seed=args.seed,
                        smoke=args.smoke, val_fraction=args.val_fraction)
    config = FFNConfig(hidden=hidden_sizes(args.num_layers, args.hidden_size, args.hidden),
                       activation=args.activation, init=args.init)
    net = build_model(config, args.seed)
    run = RunDir(args, data_source=data.source)
    print(f"{ASSIGNMENT}: {config.describe()}, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
          f"{args.loss}, {len(data.y_train):,} train / {len(data.y_val):,} val / {len(data.y_test):,} test, "
          f"data: {data.source}")
    train(args, net, config, data, run)
    return write_artefacts(run, net, data, args, config)


def train(args, net, config: FFNConfig, data, run: RunDir) -> None:
    """--epochs of shuffled mini-batch steps (forward, loss, backward, update), each epoch then scored on the
    train and validation splits, logged, and checkpointed; from the last checkpoint under --resume."""
    optimizer = build_optimizer(args.optimizer, args.lr, **{k: getattr(args, k) for k in OPTIMIZER_OPTIONS})
    states = init_states(net, optimizer)
    params, loss_fn = net.params(), LOSSES[args.loss]
    x_train, y_train = data.x_train, data.y_train
    steps = -(-len(y_train) // args.batch_size)
    blas_threads = blas_threads_for(args.batch_size)
    start, elapsed = resume(run, net, states)
    guard = LossGuard(run)
    for epoch in range(start, args.epochs):
        optimizer.lr = SCHEDULES[args.lr_schedule](epoch, args.epochs) * args.lr
        tic = time.perf_counter()
        loss_sum = 0.0
        batches = shuffled_batches(x_train, y_train, args.batch_size, seed=args.seed, epoch=epoch)
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
        for split, (x, y) in {"train": (x_train, y_train), "val": (data.x_val, data.y_val)}.items():
            result = evaluate(net, x, y, loss_fn, args.l2, config.eval_batch)
            record[f"{split}_loss"], record[f"{split}_acc"] = result.loss, accuracy(y, result.predictions)
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, states), quiet=args.smoke)


def write_artefacts(run: RunDir, net, data, args, config: FFNConfig) -> dict:
    """Curves, the class-sample grid, test confusion matrices (counts and normalised), summary.json."""
    records = run.metrics()
    loss_fn = LOSSES[args.loss]
    test = evaluate(net, data.x_test, data.y_test, loss_fn, args.l2, config.eval_batch)
    title = f"{config.describe()}, {args.optimizer}, {args.loss} ({short_source(data.source)})"
    plot_curves(records, {f"loss ({args.loss})": ["train_loss", "val_loss"], "accuracy": ["train_acc", "val_acc"]},
                run.file("curves.png"), title=title)
    samples, found = one_per_class(data.train_images, data.y_train, len(data.classes))
    plot_image_grid(samples, [data.classes[k] for k in found], run.file("samples.png"), ncols=len(found),
                    title="one training image per class")
    matrix = confusion(data.y_test, test.predictions, len(data.classes))
    test_acc = accuracy(data.y_test, test.predictions)
    plot_confusion(matrix, data.classes, run.file("confusion.png"),
                   title=f"test confusion (counts), accuracy {test_acc:.2%}")
    plot_confusion(matrix, data.classes, run.file("confusion_normalised.png"), normalize=True,
                   title="test confusion (row-normalised: recall per class)")
    last = records[-1]
    summary = run.finish({
        "val_acc": last["val_acc"], "best_val_acc": max(r["val_acc"] for r in records),
        "train_acc": last["train_acc"], "test_acc": test_acc, "test_loss": test.loss,
        "test_macro_f1": macro_f1(data.y_test, test.predictions),
        "train_loss": last["train_loss"], "val_loss": last["val_loss"],
        "parameters": config.parameter_count(), "model_config": config.to_dict(), "model": config.describe(),
        "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size, "loss": args.loss,
        "l2": args.l2, "confusion": matrix.tolist(), "classes": data.classes,
        "n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test),
    }, records)
    print(f"done: val {summary['val_acc']:.2%}, test {test_acc:.2%} (train {summary['train_acc']:.2%}) after "
          f"{summary['epochs']} epochs; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
