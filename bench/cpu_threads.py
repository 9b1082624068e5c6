"""CPU threads: one training epoch of three default models at 1 thread, at every core and at `--threads auto`,
each on the idle machine, beside a competing CPU-bound process that this script starts and stops itself, and
with that competitor starting 3 s after the run (`late`: `auto` chose its threads on an idle machine and must
follow the load; common.runtime.ThreadGovernor).

    python bench/cpu_threads.py                 # three workloads x three settings x idle/busy/late (~15 min idle)
    python bench/cpu_threads.py --workloads sketch_rnn

Each cell runs the assignment's own train.py for one epoch in a fresh process (`--epochs 1 --threads N`, the
embedded generated data, everything else default) and reads that epoch's training seconds from its
metrics.jsonl (evaluation and start-up are not counted). It prints the seconds and the ratios that matter:
busy / idle for each setting (how far a busy machine pushes it off), and each setting against `auto`.
Run it on an otherwise idle machine: other work running at the same time is a competitor it does not know of.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import REPO_ROOT
from common.cli import OneLineParser
from common.errors import UserError, run_cli
from common.rundir import read_metrics
from common.runtime import usable_cores

# workload -> the train.py command (without --threads/--out) whose one epoch is timed
WORKLOADS = {
    "sketch_rnn": ["sketch_rnn/train.py", "--data", "generated", "--eval-per-class", "2", "--grid-per-class", "1"],
    "text2math": ["text2math/train.py", "--data", "generated"],
    "kd_cifar10_resnet18_w16": ["kd_cifar10/train.py", "--data", "generated", "--width", "16",
                                "--train-size", "2000", "--no-log-grad-norms"],
}
COMPETITOR = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


LATE_SECONDS = 3.0      # the `late` competitor starts this long after the run, after --threads auto chose
CONDITIONS = ("idle", "busy", "late")


def start_competitor() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COMPETITOR])


def epoch_seconds(command: list[str], threads: str, out: Path, competitor_after: float | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    argv = [sys.executable, str(REPO_ROOT / command[0]), *command[1:], "--epochs", "1", "--threads", threads,
            "--out", str(out), "--overwrite", "--wandb", "off"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    competitor = None
    try:
        if competitor_after is not None:
            time.sleep(competitor_after)
            competitor = start_competitor()
        _, stderr = run.communicate()
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if run.returncode != 0:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{command[0]} failed with --threads {threads}: {tail}")
    return float(read_metrics(out)[-1]["train_seconds"])


def measure(name: str, command: list[str], settings: dict[str, str], scratch: Path,
            conditions=CONDITIONS) -> dict[tuple[str, str], float]:
    seconds = {}
    for condition in conditions:
        competitor = start_competitor() if condition == "busy" else None
        late = LATE_SECONDS if condition == "late" else None
        try:
            for label, threads in settings.items():
                seconds[condition, label] = epoch_seconds(command, threads, scratch / f"{label}_{condition}", late)
                print(f"  {name:<32} {condition:<5} {label:<10} {seconds[condition, label]:7.1f} s", flush=True)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    return seconds


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS),
                        help="which default models to time (default: all)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                        help="idle, busy (competitor from the start), late (competitor 3 s in) (default: all)")
    args = parser.parse_args(argv)
    cores = usable_cores()
    settings = {"1 thread": "1", f"{cores} threads": str(cores), "auto": "auto"}
    print(f"one training epoch, seconds ({cores} cores; busy = beside one competing CPU-bound process)")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.workloads:
            try:
                seconds = measure(name, WORKLOADS[name], settings, Path(scratch) / name.split()[0], args.conditions)
            except UserError as err:    # another assignment's train.py changed under us: the others still count
                print(f"  {name}: skipped ({err})", flush=True)
                continue
            rows.append((name, seconds))
    if not rows:
        raise UserError("no workload ran; see the lines above")
    conditions = [c for c in CONDITIONS if c in args.conditions]
    loaded = [c for c in conditions if c != "idle" and "idle" in conditions]
    print(f"\n{'workload':<32} {'setting':<10} " + " ".join(f"{c + ' s':>7}" for c in conditions)
          + "".join(f" {c + '/idle':>9}" for c in loaded) + "".join(f" {c + '/auto':>9}" for c in conditions))
    for name, seconds in rows:
        for label in settings:
            cells = [f"{seconds[c, label]:7.1f}" for c in conditions]
            cells += [f"{seconds[c, label] / seconds['idle', label]:9.2f}" for c in loaded]
            cells += [f"{seconds[c, label] / seconds[c, 'auto']:9.2f}" for c in conditions]
            print(f"{name:<32} {label:<10} " + " ".join(cells))


if __name__ == "__main__":
    run_cli(main)
