"""The run directory: config.json (resolved flags, data source, commit, hardware), metrics.jsonl
(one record per epoch), summary.json (final figures), plots and the checkpoint."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT
from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import UserError
from common.runtime import git_commit, hardware_info
from common.tracking import make_tracker

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
# flags that may change between a run and its resumption
RESUMABLE_DIFFERENCES = {"resume", "overwrite", "wandb", "device", "epochs", "out", "data_root"}


def write_json(path: Path, payload: dict) -> None:
    """Atomic JSON write: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_metrics(run_path: Path) -> list[dict]:
    """The records of <run_path>/metrics.jsonl, oldest first ([] when there are none)."""
    path = Path(run_path) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def jsonable_args(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())}


class RunDir:
    """One run of one configuration. Create it after the data are resolved."""

    def __init__(self, args: argparse.Namespace, *, data_source: str, device: str = "cpu"):
        self.path = Path(args.out)
        self.args = args
        self._prepare(args)
        self.config = {
            "assignment": args.assignment,
            "args": jsonable_args(args),
            "data_source": data_source,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
            "git_commit": git_commit(),
            "hardware": hardware_info(device),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(self.path / "config.json", self.config)
        self.tracker = make_tracker(args.wandb, f"dl-assignments-{args.assignment}", self.path.name,
                                    self.config, self.path)

    def _prepare(self, args: argparse.Namespace) -> None:
        config_file = self.path / "config.json"
        if config_file.exists() and args.resume:
            self._check_resumable(json.loads(config_file.read_text()))
        elif config_file.exists() and args.overwrite:
            for name in (METRICS, "summary.json", CHECKPOINT):
                (self.path / name).unlink(missing_ok=True)
        elif config_file.exists():
            raise UserError(f"{_short(self.path)} already holds a run: add --resume to continue it, "
                            f"--overwrite to start over, or pick another --out")
        elif args.resume:
            print(f"note: no run in {_short(self.path)} to resume; starting from scratch")
        self.path.mkdir(parents=True, exist_ok=True)

    def _check_resumable(self, previous: dict) -> None:
        old, new = previous.get("args", {}), jsonable_args(self.args)
        changed = [k for k in new if k not in RESUMABLE_DIFFERENCES and k in old and old[k] != new[k]]
        if changed:
            diffs = ", ".join(f"--{k.replace('_', '-')} {old[k]} (now {new[k]})" for k in changed)
            raise UserError(f"cannot resume {_short(self.path)}: it was started with {diffs}; use the "
                            f"same flags, or --overwrite")

    # metrics ---------------------------------------------------------------------------------
    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    def log(self, record: dict) -> None:
        """Append one record (usually one epoch) to metrics.jsonl and to wandb."""
        with open(self.metrics_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.tracker.log(record, step=record.get("epoch"))

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def keep_metrics_until(self, epoch: int) -> None:
        """On resume: drop records written after the checkpoint being resumed from."""
        kept = [r for r in self.metrics() if r.get("epoch", 0) <= epoch]
        fd, tmp = tempfile.mkstemp(dir=self.path)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.metrics_file)

    # checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_path, state)

    def resume_state(self, *, as_numpy: bool = False) -> dict | None:
        """The checkpoint to continue from when --resume was given and one exists."""
        if not (self.args.resume and self.checkpoint_path.exists()):
            return None
        state = load_checkpoint(self.checkpoint_path, as_numpy=as_numpy)
        self.keep_metrics_until(int(state.get("epoch", 0)))
        return state

    # the end ---------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def finish(self, summary: dict) -> dict:
        summary = {"data_source": self.config["data_source"], **summary}
        write_json(self.path / "summary.json", summary)
        self.tracker.summary(summary)
        self.tracker.finish()
        return summary


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
