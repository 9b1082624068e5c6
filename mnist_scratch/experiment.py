"""What the small foundation scripts (activations.py, xor.py, approximation.py, gradient_flow.py)
share: the shared flag vocabulary with the flags a script ignores marked as such, and a run directory
that a --resume restarts (these experiments take seconds to a minute; they keep no checkpoint).

    parser = experiment_parser(__doc__, epochs=2000, lr=0.1, unused=("batch_size",))
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=lambda a: "xor")
    run = start_run(args, data_source="generated: the 4 XOR points")
"""
from __future__ import annotations

from threadpoolctl import threadpool_limits

from common.cli import NUMPY_DEVICES, OneLineParser, make_parser
from common.rundir import RunDir
from mnist_scratch.engine.training import blas_threads_for

ASSIGNMENT = "mnist_scratch"
RESUME_HELP = "accepted for reproduce.py; this short experiment keeps no checkpoint, so --resume restarts it"


def experiment_parser(doc: str, *, epochs: int = 1, batch_size: int | None = None, lr: float | None = None,
                      unused: tuple[str, ...] = ()) -> OneLineParser:
    """make_parser with this script's defaults; the flags named in `unused` (dest names) say so in --help."""
    parser = make_parser(doc.strip().splitlines()[0], epochs=epochs, batch_size=batch_size, lr=lr,
                         devices=NUMPY_DEVICES)
    for action in parser._actions:
        if action.dest in unused:
            action.help = "not used by this script (shared flag)"
        elif action.dest == "resume":
            action.help = RESUME_HELP
        elif action.dest == "device":
            action.help = "accepted for the shared vocabulary; the NumPy engine always runs on the CPU"
    return parser


def small_blas(batch_size: int):
    """Context: one BLAS thread for products too small to split (see mnist_scratch.engine.training.blas_threads_for)."""
    return threadpool_limits(limits=blas_threads_for(batch_size), user_api="blas")


def start_run(args, *, data_source: str) -> RunDir:
    """The run directory; under --resume an earlier attempt's metrics are dropped and the run restarts."""
    run = RunDir(args, data_source=data_source)
    if args.resume and run.metrics_file.exists():
        print(f"note: {run.path.name} keeps no checkpoint; restarting it from scratch")
        run.metrics_file.unlink()
    return run
