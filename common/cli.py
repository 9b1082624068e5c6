"""The one flag vocabulary every train.py shares. Scripts add their own flags after these."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Sequence

from common import REPO_ROOT
from common.errors import UserError
from common.formats import read_text
from common.runtime import set_cpu_threads
from common.tracking import resolve_wandb_mode

DATA_MODES = ("auto", "real", "generated")
WANDB_MODES = ("off", "offline", "online")
DEVICES = ("auto", "cpu", "cuda", "mps")
NUMPY_DEVICES = ("auto", "cpu")   # the NumPy engine computes on the CPU: --device cuda is refused, not ignored


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (not the whole usage block)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def int_in(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (a flag whose absurd values would exhaust the machine),
    named `what` in its one-line refusal."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high:,}, got {text}")
        return value

    parse.__name__ = f"integer from {low} to {high}"   # argparse's "invalid <name> value" for a non-number
    return parse


MAX_LAYERS = 1000   # a layer or block count: the course's deepest nets have 30 layers; 1e9 built modules for ever
layer_count = int_in(1, MAX_LAYERS)

MAX_SEED = 2**32 - 1   # NumPy's legacy seeding (np.random.seed) takes no more: a larger seed was a traceback
seed_int = int_in(0, MAX_SEED, "a seed")


def thread_count(text: str) -> str | int:
    """'auto' or a positive number of CPU threads."""
    return text if text == "auto" else positive_int(text)


LARGEST = 1e30   # above this a learning rate or a weight overflows float32 within a step or two: refused, not a crash


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value <= LARGEST:
        raise argparse.ArgumentTypeError(f"expected a positive number up to {LARGEST:g}, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """0 up to LARGEST: --weight-decay 1e300 overflowed float32 inside torch's optimizer, a traceback."""
    value = float(text)
    if not 0 <= value <= LARGEST:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to {LARGEST:g}, got {text}")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1, both included: a probability (dropout, teacher forcing) or a mixing weight."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text}")
    return value


def decay_rate(text: str) -> float:
    """A number from 0 up to, not including, 1: a momentum or a moving average's decay (at 1 or above the average
    never forgets, or grows, and the run diverges; --momentum 1e300 ended as a NaN loss blamed on --lr)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to (not including) 1, got {text}")
    return value


def open_fraction(text: str) -> float:
    """A fraction strictly between 0 and 1 (e.g. a validation share)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1, got {text}")
    return value


def make_parser(description: str, *, epochs: int, batch_size: int | None, lr: float | None,
                seed: int = 0, batch_size_help: str | None = None, lr_help: str | None = None,
                epochs_help: str | None = None, devices: Sequence[str] = DEVICES
                ) -> OneLineParser:
    """A parser holding the shared flags with this script's defaults."""
    parser = OneLineParser(description=description)
    add = parser.add_argument
    add("--epochs", type=positive_int, default=epochs, help=epochs_help or "training epochs (default: %(default)s)")
    add("--batch-size", type=positive_int, default=batch_size,
        help=batch_size_help or "mini-batch size (default: %(default)s)")
    add("--lr", type=positive_float, default=lr, help=lr_help or "learning rate (default: %(default)s)")
    add("--seed", type=seed_int, default=seed,
        help="random seed for data split, init and order (default: %(default)s)")
    add("--device", choices=devices, default="auto", help="where to compute (default: %(default)s)")
    add("--threads", type=thread_count, default="auto",
        help="CPU threads for PyTorch and the NumPy engine's BLAS; auto: the cores not already busy "
             "(cores minus the load average, at least 1; 1 under --smoke), shared among torchrun's local "
             "processes (default: %(default)s)")
    add("--data-root", type=Path, default=REPO_ROOT / "data",
        help="folder holding (or receiving) the real data sets (default: <repo>/data)")
    add("--data", choices=DATA_MODES, default="auto",
        help="auto: real data when present or downloadable, else the embedded stand-in; "
             "real: fail without it; generated: never touch the network (default: %(default)s)")
    add("--out", type=Path, default=None,
        help="run directory (default: runs/<assignment>/<run name from the flags>)")
    add("--wandb", choices=WANDB_MODES, default=None,
        help="Weights & Biases logging (default: online when logged in to wandb and its server answers, "
             "else off; off under --smoke)")
    add("--resume", action="store_true", help="continue from the last checkpoint in --out")
    add("--overwrite", action="store_true", help="start over in an --out that already holds a run")
    add("--smoke", action="store_true",
        help="tiny data, tiny model, a couple of steps on the CPU: checks every artefact is written")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, assignment: str,
               run_name: Callable[[argparse.Namespace], str]) -> argparse.Namespace:
    """Parse and resolve the shared flags: out dir, wandb mode, absolute paths."""
    args = parser.parse_args(argv)
    args.assignment = assignment
    if args.smoke:
        args.device = "cpu"   # an earlier --smoke run in --out is replaced without --overwrite (RunDir), no other
    args.wandb = resolve_wandb_mode(args.wandb, smoke=args.smoke, logged_in=wandb_logged_in)
    args.threads = set_cpu_threads(1 if args.smoke and args.threads == "auto" else args.threads)
    args.data_root = args.data_root.expanduser().resolve()
    if args.out is None:
        base = REPO_ROOT / "runs" / ("smoke" if args.smoke else "") / assignment
        args.out = base / run_name(args)
    args.out = args.out.expanduser().resolve()
    return args


def saved_argv(parser: argparse.ArgumentParser, values: dict) -> list[str]:
    """The command line that gives `values` (a run's saved flags, config.json's "args") to `parser`; flags it
    does not know are left out, and so are those saved as null (their default)."""
    argv = []
    for action in parser._actions:
        value = values.get(action.dest)
        if not action.option_strings or action.dest == "help" or value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(action.option_strings[0] if value is True else action.option_strings[1])
        elif action.nargs == 0:
            argv += [action.option_strings[0]] if value is True else []
        elif action.nargs in ("+", "*") and isinstance(value, list):
            argv += [action.option_strings[0], *map(str, value)]
        else:
            argv.append(f"{action.option_strings[0]}={value}")
    return argv


def parse_saved(parser: argparse.ArgumentParser, values: object, where: Path, fix: str,
                script: str) -> argparse.Namespace:
    """A run's saved flags (`values`, config.json's "args", read from `where`) through the parser of the script
    that saved them, so every type and range is checked again as on its command line; what it refuses (or
    values that are no object) is a one-line UserError naming `where` and `fix`."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: its 'args' are no object of {script}'s flags; {fix}")

    def refuse(message: str):
        raise UserError(f"{where} holds flags {script} refuses ({message}); {fix}")

    parser.error = refuse
    return parser.parse_args(saved_argv(parser, values))


_UNTYPED = object()


def typed_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The dests of the flags the command line itself gives (not left at their defaults), so that a script can
    refuse a flag its other flags make inert instead of ignoring it. Append / count flags are never named.
    (argparse has no public list of a parser's actions: this reads parser._actions.)"""
    accumulating = (argparse._AppendAction, argparse._CountAction, argparse._ExtendAction)   # add to what is there
    probed = {a.dest for a in parser._actions if a.dest != argparse.SUPPRESS and not isinstance(a, accumulating)}
    parsed = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(probed, _UNTYPED)))
    return {k for k in probed if getattr(parsed, k) is not _UNTYPED}


def wandb_logged_in() -> bool:
    """True when an API key is configured (env or ~/.netrc), without importing wandb."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in read_text(netrc, "")
    except (OSError, UnicodeDecodeError, UserError):   # none, unreadable, or no netrc file: no key found
        return False
