"""Hyperparameter sweep over train.py's flags (question 4): a real wandb sweep when online, the same
config run locally otherwise, then what wandb's panels show, written next to the trials.

    python fashion_mnist_ffn/sweep.py                                   # sweeps/seed.yaml, 30 random trials
    python fashion_mnist_ffn/sweep.py --method grid --count 12 --epochs 2
    python fashion_mnist_ffn/sweep.py --wandb online --method bayes     # wandb.sweep + wandb.agent

Every trial is one train.py run (its own folder under <out>/trials/) on the same split (--seed),
chosen by validation accuracy; an interrupted local sweep continues with --resume."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import NUMPY_DEVICES, make_parser, parse_args, positive_int
from common.errors import UserError, run_cli
from common.rundir import RunDir, write_json
from fashion_mnist_ffn import train
from fashion_mnist_ffn.data import LOADERS, load_fashion
from fashion_mnist_ffn.sweep_analysis import analyse, describe_findings, runs_table, swept_params
from fashion_mnist_ffn.sweep_config import ALL_METHODS, load_sweep_config, metric_of
from fashion_mnist_ffn.sweep_plots import plot_importance, plot_metric_by_param, plot_parallel_coordinates
from fashion_mnist_ffn.sweep_runner import best_trial, run_local_sweep, run_wandb_sweep

ASSIGNMENT = "fashion_mnist_ffn"
HERE = Path(__file__).resolve().parent
SMOKE_TRIALS = 3
OVERRIDABLE = ("epochs", "batch_size", "lr")  # shared flags that, when given, fix a value for every trial


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=None, batch_size=None, lr=None, devices=NUMPY_DEVICES,
                         batch_size_help="fix the batch size of every trial (default: from the sweep config)",
                         lr_help="fix the learning rate of every trial (default: from the sweep config)",
                         epochs_help="fix the epochs of every trial (default: from the sweep config)")
    add = parser.add_argument
    add("--config", type=Path, default=HERE / "sweeps" / "seed.yaml",
        help="sweep config in wandb's format, YAML or JSON (default: fashion_mnist_ffn/sweeps/seed.yaml)")
    add("--method", choices=ALL_METHODS, default=None,
        help="override the config's method; bayes needs --wandb online (default: the config's)")
    add("--count", type=positive_int, default=30,
        help="trials to run (a grid stops early when smaller) (default: %(default)s)")
    add("--loader", choices=list(LOADERS), default="common", help="as train.py's --loader (default: %(default)s)")
    add("--project", default=f"dl-assignments-{ASSIGNMENT}", help="wandb project (default: %(default)s)")
    return parser


def run_name(args) -> str:
    return f"sweep_{args.config.stem}_{args.method or 'config'}_seed{args.seed}"


def sweep_config(args) -> dict:
    config = load_sweep_config(args.config)
    if args.method:
        config["method"] = args.method
    known = train_flags()
    unknown = [name for name in config["parameters"] if name not in known]
    if unknown:
        raise UserError(f"{args.config}: sweep parameter {', '.join(unknown)} is not a train.py flag; "
                        f"choose from {', '.join(sorted(known))}")
    for name in OVERRIDABLE:
        if getattr(args, name) is not None:
            config["parameters"][name] = {"value": getattr(args, name)}
    return config


def train_flags() -> dict[str, object]:
    """train.py's flags by dest name, e.g. {'num_layers': <action>, ...}."""
    return {a.dest: a for a in train.build_parser()._actions if a.option_strings and a.dest != "help"}


def trial_argv(params: dict, fixed: list[str]) -> list[str]:
    """Sweep parameters as train.py flags: {'num_layers': 3, 'hidden': [64, 32]} -> --num-layers 3 --hidden 64 32."""
    argv = []
    for name, value in params.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv + fixed


def make_train_fn(args, trials_dir: Path, wandb_mode: str):
    fixed = ["--data", args.data, "--data-root", str(args.data_root), "--seed", str(args.seed),
             "--loader", args.loader, "--wandb", wandb_mode, "--device", args.device]
    fixed += ["--smoke"] if args.smoke else []

    def train_fn(params: dict, name: str) -> dict:
        out = trials_dir / name
        return train.main(trial_argv(params, [*fixed, "--out", str(out), "--overwrite"]))
    return train_fn


def main(argv=None) -> dict:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    config = sweep_config(args)
    count = min(args.count, SMOKE_TRIALS) if args.smoke else args.count
    source = load_fashion(loader=args.loader, mode=args.data, root=args.data_root, seed=args.seed,
                          smoke=args.smoke).source  # every trial loads the same data and split
    run = RunDir(args, data_source=source)
    write_json(run.file("sweep_config.json"), config)
    train_fn = make_train_fn(args, run.file("trials"), "online" if args.wandb == "online" else "off")
    if args.wandb == "online":
        sweep_id = run_wandb_sweep(config, train_fn, project=args.project, count=count)
        print(f"wandb sweep {sweep_id} ran {count} trials; its panels are on wandb.ai")
    trials = run_local_sweep(config, train_fn, run.path, count=count, seed=args.seed, quiet=args.smoke,
                             overwrite=run.replaces and not args.resume) if args.wandb != "online" else []
    return write_artefacts(run, config, trials) if trials else run.finish({"wandb_sweep": True})


def write_artefacts(run: RunDir, config: dict, trials) -> dict:
    """What wandb's sweep page shows: parallel coordinates, importance and correlation, the runs table."""
    metric, goal = metric_of(config)
    run.keep_metrics_until(0)
    for result in trials:
        run.log({"epoch": result.index + 1, "trial": result.name, metric: result.value,
                 "test_acc": result.get("test_acc"), "seconds": result.seconds, **result.params})
    params = swept_params(trials)
    analysis = analyse(trials, metric, goal)
    title = f"{len(trials)} trials of {config.get('name', 'the sweep')} ({config['method']})"
    plot_parallel_coordinates(trials, params, metric, run.file("parallel_coordinates.png"), goal=goal, title=title)
    plot_importance(analysis, run.file("importance.png"), title=f"parameter importance and correlation with {metric}")
    plot_metric_by_param(trials, params, metric, run.file("metric_by_param.png"), title=f"{metric} by parameter value")
    (run.file("runs_table.md")).write_text(runs_table(trials, params, metric, goal=goal) + "\n")
    best = best_trial(trials, goal)
    if best is None:
        raise UserError(f"every trial of {run.path} diverged; lower the learning rates in the sweep config")
    summary = run.finish({
        "trials": len(trials), "finished": analysis.n_finished, "diverged": analysis.diverged,
        "metric": metric, "goal": goal, "params": params,
        "best_trial": best.name, "best_params": copy.deepcopy(best.params), f"best_{metric}": best.value,
        "best_test_acc": best.get("test_acc"), "best_run": str(run.file("trials") / best.name),
        "importance": [{"feature": f.name, "importance": f.importance, "correlation": f.correlation}
                       for f in analysis.features],
        "findings": describe_findings(analysis, trials, metric),
    })
    print(f"best of {len(trials)} trials: {best.name} {metric} {best.value:.2%} "
          f"(test {best.get('test_acc'):.2%}) with {best.params}")
    return summary


if __name__ == "__main__":
    run_cli(main)
