"""User errors: one clear line, a non-zero exit, no traceback; running out of memory is one of them."""
from __future__ import annotations

import errno
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Sequence

try:
    import resource
except ImportError:   # not POSIX: no limit on the data segment
    resource = None


class UserError(Exception):
    """A problem the user can fix (bad input, missing data, diverged run). The message names the
    problem and the fix, in one line."""

    exit_code = 2


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, a job scheduler, `kill`): unwinds like Ctrl-C, so an atomic write in progress removes
    its temp file and the run ends in one line."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # once: a second SIGTERM (a parent passing it on, a scheduler's
    raise Terminated()                              # repeat) must not break the cleanup the first one started


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a script's main(); turn user errors, running out of memory (`guard`), Ctrl-C and SIGTERM into one line
    and an exit code."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        with guard():
            main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Terminated:
        print("terminated (SIGTERM): the last checkpoint is kept; continue with --resume", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; continue with --resume", file=sys.stderr)
        sys.exit(130)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


# Running out of memory as one line.
#
# A size flag far beyond the machine (kd_cifar10/train.py --width 100000, --model mlp --depth 100000) either
# failed in one huge allocation (a RuntimeError traceback from torch's allocator, a MemoryError from NumPy) or,
# layer by layer, filled the memory until the kernel killed a process. `guard()` (run_cli wraps every script's
# main in it) turns the first into one line and stops the second while the model is being built: the parameters
# torch modules register are counted against the memory free at the start. What the parameters do not show
# (activations: kd_cifar10/train.py --batch-size 1000000 --width 256 on ../shared/data's 10,000 CIFAR images asks
# for more than the machine's 23 GB, and there is no swap) is caught by a limit on the process's data segment
# (`limit_data`): the allocation past it fails at once, and the failure is the one line above.
ALLOCATOR_MESSAGES = ("can't allocate memory", "out of memory")


def memory_left() -> tuple[int, int] | None:
    """(available, total) bytes from /proc/meminfo, or None where Linux's file is missing."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024, int(fields["MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def data_size() -> int | None:
    """The bytes of this process's data segment (VmData: its private writable memory, what RLIMIT_DATA counts)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmData"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def limit_data(torch=None) -> Callable[[], None]:
    """Limit the process's data segment to what it holds now plus the memory available less `reserve` (at least
    half the machine's, so a busy machine does not refuse what would fit), so an allocation past it fails at
    once as an out-of-memory error instead of filling the memory until the kernel kills the process (or
    another). Returns what restores the previous limit. Not with CUDA (its driver maps memory of its own), nor
    where Linux's /proc is missing or an earlier limit is tighter."""
    left, used = memory_left(), data_size()
    if resource is None or left is None or used is None or (torch is not None and torch.cuda.is_available()):
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = used + max(left[0] - reserve(left[1]), left[1] // 2)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        return lambda: None
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def reserve(total: int) -> int:
    """The memory a model being built must leave free: 10% of the machine, at most 2 GiB."""
    return min(2 * 2**30, total // 10)


def check_memory_left(what: str) -> None:
    left = memory_left()
    if left is not None and left[0] < reserve(left[1]):
        raise UserError(f"{what} has used the machine's memory ({left[0] / 2**30:.1f} of {left[1] / 2**30:.1f} GiB "
                        "left); pick smaller sizes (width, depth, layers, batch)")


class ParameterBudget:
    """Counts the bytes of the parameters torch modules register: training holds each about four times
    (weights, gradients, two optimizer moments), which must fit in the memory available when the script started;
    and every registration checks that the machine still has memory to spare."""

    COPIES = 4

    def __init__(self):
        left = memory_left()
        self.available, self.used = (left[0] if left else None), 0

    def __call__(self, module, name, param):
        if param is None:
            return
        self.used += param.numel() * param.element_size()
        if self.available is not None and self.COPIES * self.used > self.available:
            raise UserError(f"the model's parameters reach {self.used / 2**30:.1f} GiB "
                            f"({type(module).__name__}.{name}); "
                            f"training holds them about {self.COPIES} times, more than the "
                            f"{self.available / 2**30:.1f} GiB this machine had free; pick smaller sizes "
                            "(width, depth, layers)")
        check_memory_left(f"building the model ({type(module).__name__}.{name})")


FULL = (errno.ENOSPC, errno.EDQUOT)
BAD_PATHS = {errno.ENAMETOOLONG: "a name in it is longer than the file system allows; pick a shorter path",
             errno.ELOOP: "its symbolic links form a loop; give a path whose links end in a file or folder"}


def _chain(err: BaseException | None):
    """`err` and the exceptions behind it (its cause or context, at most 10 deep)."""
    for _ in range(10):
        if err is None:
            return
        yield err
        err = err.__cause__ or err.__context__


def disk_full(err: BaseException) -> OSError | None:
    """The 'no space left' (or quota) OSError behind `err`, if any: torch.save on a full disk raises a
    RuntimeError from its zip writer whose context is that OSError."""
    return next((e for e in _chain(err) if isinstance(e, OSError) and e.errno in FULL), None)


def bad_path(err: BaseException) -> str | None:
    """One line for a path no file system takes (a name too long, a loop of symbolic links) behind `err`, from any
    path flag or file the script meets; pathlib's resolve() says a loop as a RuntimeError before Python 3.13."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in BAD_PATHS:
            return f"{_shown(e.filename)}: {BAD_PATHS[e.errno]}"
        if isinstance(e, RuntimeError) and str(e).startswith("Symlink loop from "):
            return f"{_shown(str(e)[len('Symlink loop from '):].strip(chr(39)))}: {BAD_PATHS[errno.ELOOP]}"
    return None


def _shown(path: object, keep: int = 120) -> str:
    text = "a path" if path is None else str(path)
    return text if len(text) <= keep else f"{text[:keep // 2]}...{text[-keep // 3:]} ({len(text):,} characters)"


@contextmanager
def guard():
    """Within: a torch module registering a parameter on a machine out of memory, a MemoryError, or an
    allocator's out-of-memory RuntimeError (an allocation past `limit_data`'s limit among them) becomes a one-line
    UserError; so does a write to a full disk (atomic writes leave the file they replace as it was), and a path no
    file system takes (a name too long, a loop of symbolic links)."""
    torch = sys.modules.get("torch")
    handle, restore = None, limit_data(torch)
    if torch is not None:
        from torch.nn.modules.module import register_module_parameter_registration_hook
        handle = register_module_parameter_registration_hook(ParameterBudget())
    try:
        yield
    except (OSError, RuntimeError) as err:
        full = disk_full(err)
        if full is not None:
            where = f" writing {full.filename}" if full.filename else ""
            raise UserError(f"the disk is full ({full.strerror}{where}); free some space or pick another --out, "
                            f"then run again (--resume continues a training run: its last checkpoint is "
                            f"kept)") from None
        where = bad_path(err)
        if where is not None:
            raise UserError(where) from None
        if isinstance(err, OSError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if not any(m in first.lower() for m in ALLOCATOR_MESSAGES):
            raise
        raise UserError(f"out of memory ({first[:200]}); pick smaller sizes (width, depth, layers, batch)") from None
    except MemoryError as err:
        raise UserError(f"out of memory ({str(err).splitlines()[0] if str(err) else 'MemoryError'}); pick smaller "
                        "sizes (width, depth, layers, batch)") from None
    finally:
        restore()
        if handle is not None:
            handle.remove()
