"""Seeding, device choice and a description of the machine a run used."""
from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from common import REPO_ROOT
from common.errors import Terminated, UserError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when it is already imported) torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch = _torch_if_loaded()
    if torch is not None:
        torch.manual_seed(seed)


def cpu_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) clock ticks of every CPU since boot, from /proc/stat's first line (Linux; raises
    OSError, ValueError or IndexError elsewhere)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)


def usable_cores() -> int:
    """The cores in this process's affinity mask (all of them where the platform has no mask)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def busy_cores(sample_seconds: float = 0.25) -> float:
    """How many cores other work keeps busy now: from /proc/stat over `sample_seconds` where Linux has it
    (it sees a competitor that started a second ago), else the 1-minute load average."""
    try:
        total0, idle0 = cpu_jiffies()
        time.sleep(sample_seconds)
        total1, idle1 = cpu_jiffies()
        cpus = os.cpu_count() or 1
        return cpus * (1 - (idle1 - idle0) / max(total1 - total0, 1))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def free_cores() -> int:
    """The CPU cores this process may use that are not already busy: the cores in its affinity mask minus
    the busy ones (rounded), at least 1. Small models are many small operations: a thread that cannot get
    a core spins and waits, so on a busy machine fewer threads run faster (issue 19: sketch_rnn's step
    0.48 s with 1 thread against 4.38 s with 2 beside two other processes)."""
    return max(1, usable_cores() - round(busy_cores()))


def set_cpu_threads(threads: str | int) -> int:
    """Apply --threads before any tensor work: 'auto' is free_cores() shared among torchrun's local
    processes, and keeps adapting during the run (`ThreadGovernor`, one process per machine only); sets
    torch's intra-op threads (when torch is loaded) and the BLAS pools' threads."""
    global _governor
    local_processes = env_int("LOCAL_WORLD_SIZE", 1, minimum=1)
    adaptive = threads == "auto" and local_processes == 1
    if threads == "auto":
        threads = max(1, free_cores() // local_processes)
    threads = _apply_threads(cap_threads(int(threads)))
    _governor = ThreadGovernor(threads) if adaptive else None
    return threads


def env_int(name: str, default: int, minimum: int) -> int:
    """A whole number torchrun puts in the environment (WORLD_SIZE, LOCAL_RANK, ...); anything else there is one
    UserError (it was a ValueError traceback, or a division by zero for LOCAL_WORLD_SIZE=0)."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise UserError(f"the environment variable {name}={value[:40]!r} is not a whole number of at least {minimum}; "
                        f"torchrun sets it: unset it to run one process, or start the script with torchrun")
    return number


def cap_threads(threads: int) -> int:
    """--threads N above this process's cores is capped at the cores, in one line: more threads than cores
    only spin and wait (--threads 10000 started ~19,000 threads and stalled the machine, issue 33)."""
    cores = usable_cores()
    if threads > cores:
        print(f"note: --threads {threads} is more than the {cores} core(s) this process may use; using {cores}")
        return cores
    return threads


def _apply_threads(threads: int) -> int:
    torch = _torch_if_loaded()
    if torch is not None:
        torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")   # a plain call applies the limit for the process
    return threads


def cpu_counters() -> tuple[float, float]:
    """(CPU seconds all processes have used, CPU seconds this process has used), for ThreadGovernor's
    differences; the first is NaN where /proc/stat is missing."""
    try:
        total, idle = cpu_jiffies()
        busy = (total - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    return busy, time.process_time()


class ThreadGovernor:
    """--threads auto after start-up. A competitor that starts after this process has chosen its threads
    (a second job, a browser tab, another run launched at the same moment) would otherwise leave it on the
    spin-and-wait cliff (bench/cpu_threads.py: 27x slower). Every `period` seconds (2) the loops' progress bars
    call `tick()`: the cores other processes kept busy since the last look are the machine's busy CPU
    seconds minus this process's own, over the wall seconds; the threads become the free cores, once two
    looks in a row agree (no flapping). Ticks between looks cost one clock read."""

    def __init__(self, threads: int, period: float = 2.0, counters=cpu_counters, apply=_apply_threads,
                 clock=time.monotonic):
        self.threads, self.period, self._counters, self._apply, self._clock = threads, period, counters, apply, clock
        self._last, self._wanted = (*counters(), clock()), threads
        self.changes: list[tuple[int, int]] = []          # (from, to), in order

    def tick(self) -> int:
        wall = self._clock()
        if wall - self._last[2] < self.period:
            return self.threads
        now = (*self._counters(), wall)
        (busy0, own0, wall0), (busy1, own1, wall1) = self._last, now
        self._last = now
        if busy1 != busy1:                                 # NaN: no /proc/stat, keep the start-up choice
            return self.threads
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9)
        cores = usable_cores()
        wanted = max(1, cores - round(others))
        if wanted != self.threads and wanted == self._wanted:
            self.changes.append((self.threads, wanted))
            print(f"threads: {self.threads} -> {wanted} (other processes now keep {others:.1f} of {cores} "
                  f"cores busy; --threads N pins it)", flush=True)
            self.threads = self._apply(wanted)
        self._wanted = wanted
        return self.threads


_governor: ThreadGovernor | None = None


def adapt_threads() -> None:
    """Called by every progress bar's iteration: lets --threads auto follow the machine's load."""
    if _governor is not None:
        _governor.tick()


def choose_device(name: str) -> str:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if name == "auto":
        return next(dev for dev in ("cuda", "mps", "cpu") if available[dev])
    if not available.get(name, False):
        raise UserError(f"--device {name} is not available on this machine; use --device auto or cpu")
    return name


def git_commit() -> str:
    """The repository's HEAD commit (with '+dirty' for uncommitted changes), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware_info(device: str = "cpu") -> dict:
    """What ran the job: enough to say where a figure came from."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "device": device,
    }
    torch = _torch_if_loaded()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _torch_if_loaded():

    return sys.modules.get("torch")


def is_rank0() -> bool:
    """Whether this process is alone or torchrun's rank 0, asked without importing torch (the NumPy scripts never
    load it): a process group exists only once common.distributed has started one."""
    distributed = sys.modules.get("common.distributed")
    return distributed is None or distributed.is_main_process()


def run_child(command: list[str], log: Path, *, cwd: Path | None = None, grace: float = 5.0,
               patience: float = 60.0, append: bool = False) -> int:
    """Run another of the project's scripts to its end, its output into `log` (after what it holds, with
    `append`: a resumed run's log keeps the interrupted one's); its exit code. Ctrl-C or SIGTERM
    here stops the child the way it stops alone: the signal reaches it (passed on after `grace` seconds unless
    it reached the child too, as a terminal's Ctrl-C or `timeout` does), and it has `patience` seconds to end in
    its one line, its last checkpoint kept and no temp file left, before it is killed. (subprocess.run killed it
    at once: SIGKILL, mid-write, its temp file left behind.) A second interrupt kills it."""
    with open(log, "a" if append else "w") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            return child.wait()
        except KeyboardInterrupt as stop:
            _stop_child(child, signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT, grace, patience)
            raise
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def _stop_child(child: subprocess.Popen, signum: int, grace: float, patience: float) -> None:
    try:
        child.wait(timeout=grace)      # the signal reached the child too
        return
    except subprocess.TimeoutExpired:
        child.send_signal(signum)
    try:
        child.wait(timeout=patience)
    except subprocess.TimeoutExpired:
        pass                           # run_child kills it


def last_line(log: Path, tail: int = 1 << 16) -> str:
    """The last line a log holds, read from its last `tail` bytes (a long run's log may be large)."""
    with open(log, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail))
        lines = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"
