"""The run directory: config.json (resolved flags, data source, commit, hardware), metrics.jsonl
(one record per epoch), summary.json (final figures), plots and the checkpoint."""
from __future__ import annotations

import argparse
import errno
import fcntl
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from common import REPO_ROOT
from common.checkpoint import load_checkpoint, remove_stale_temp_files, save_checkpoint, temp_file
from common.data_source import short_source
from common.errors import UserError
from common.formats import is_real, is_whole, read_text
from common.metrics import loss_trend
from common.runtime import git_commit, hardware_info, is_rank0
from common.tracking import make_tracker

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOCK = ".lock"   # held by the process writing the run folder (RunDir._lock)
# flags that may change between a run and its resumption
RESUMABLE_DIFFERENCES = {"resume", "overwrite", "wandb", "device", "threads", "epochs", "out", "data_root"}


def write_json(path: Path, payload: dict) -> None:
    """Atomic JSON write: a reader never sees half a file."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file (.<name>.<random>.tmp, removed by RunDir.start when a kill
    left it) and a rename."""
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, fix: str, keys: Sequence[str] | None = None):
    """The JSON value of `path`, a file this project wrote (a run folder's config.json, summary.json, ...). One
    that is no regular file, cannot be read or is no JSON, or (given `keys`) is no object holding them, is a
    one-line UserError naming it and `fix`, never a traceback."""
    try:
        value = json.loads(read_text(path, fix))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UserError(f"cannot read {path} ({getattr(err, 'strerror', None) or type(err).__name__}); "
                        f"{fix}") from None
    if keys is not None and not (isinstance(value, dict) and all(key in value for key in keys)):
        wanted = f"an object with {', '.join(map(repr, keys))}" if keys else "an object"
        raise UserError(f"{path} is not what this project writes there ({wanted}); {fix}")
    return value


T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[object], T], what: str, fix: str, unreadable: str | None = None) -> list[T]:
    """parse(value) for the JSON value of each non-blank line of a JSON-lines file ([] when there is none). A last
    line cut short (what a kill during a write leaves: no newline after it, not JSON) is left out; any other line
    that is no JSON, nested too deep, or that `parse` refuses (ValueError, KeyError, TypeError) is one UserError:
    '<path> line N is not <what>; <fix>'. A file that cannot be read says `unreadable` (default: `fix`)."""
    unreadable = unreadable or fix
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = read_text(path, unreadable)
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or type(err).__name__
        raise UserError(f"cannot read {path} ({why}); {unreadable}") from None
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines) and not text.endswith("\n"):
                break   # cut short by a kill: what it held is done again
            raise UserError(f"{path} line {number} is not {what}; {fix}") from None
        try:
            records.append(parse(value))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path} line {number} is not {what}; {fix}") from None
    return records


def read_metrics(run_path: Path) -> list[dict]:
    """The records of <run_path>/metrics.jsonl, oldest first (read_jsonl: a last line cut short by a kill is left
    out, any other line that is not a JSON object with a numeric epoch is a UserError)."""
    return read_jsonl(Path(run_path) / METRICS, _metrics_record,
                      "a metrics record (a JSON object with a numeric epoch)",
                      "the file is damaged: delete that line and the ones after it, or start over with --overwrite",
                      unreadable="start over with --overwrite, or pick another --out")


def _metrics_record(value: object) -> dict:
    if not isinstance(value, dict) or not is_real(value.get("epoch", 0)):
        raise ValueError("not a metrics record")
    return value


def check_writable_dir(path: Path, flag: str = "--out") -> None:
    """`path` can be a folder this user creates and writes (checked without creating anything)."""
    broken = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
    if broken is not None:
        raise UserError(f"{flag} {path}: {broken} is a symbolic link to nothing (its target is missing, or its links "
                        f"loop); pick another {flag}")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder; pick another {flag}")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable; pick another {flag}")


def output_file(path: Path, flag: str, suffix: str) -> Path:
    """A file flag a script writes (a figure, a json): `path` must end in `suffix`, its folder must be one this user
    can make, and what is already there must be a regular file (a folder could not be replaced, a named pipe would
    block the write); one UserError otherwise. Nothing is created here."""
    path = Path(path).expanduser()
    if path.suffix.lower() != suffix:
        raise UserError(f"{flag} {path}: the file's name must end in {suffix}")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path} exists and is not a regular file (a folder, a pipe or a device); "
                        f"pick another {flag}")
    check_writable_dir(path.parent, flag)
    return path


def make_dir(path: Path, flag: str = "--out") -> Path:
    """Create the folder `path` (with its parents); one UserError when it cannot be."""
    check_writable_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {flag} {path} ({err.strerror or err}); pick another {flag}") from None
    return path


def jsonable_args(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())}


def check_out(args: argparse.Namespace, *, data_source: str | None = None, announce: bool = True) -> bool:
    """What a run may do with what --out holds, checked before anything is written (RunDir does this; a script
    that trains a nested run into --out first, as dfad_kd's teacher/, calls it before that). An earlier run there
    is refused in one line unless --resume (with the same flags) or --overwrite; files of something else too. A
    --smoke run is scratch: it replaces an earlier --smoke run (or an empty folder) without --overwrite, never a
    real run. A resumed run must read the data its checkpoint was trained on (`data_source`, when given; the
    folder it came from may have moved). Returns whether this run starts over there."""
    path = Path(args.out)
    config_file = path / "config.json"
    replaces = bool(args.overwrite)
    smoke = bool(getattr(args, "smoke", False)) and not args.resume and not args.overwrite
    previous = _previous_config(config_file) if (smoke or args.resume) and config_file.exists() else {}
    if smoke and config_file.exists():
        ran = previous.get("args")
        replaces = isinstance(ran, dict) and ran.get("smoke") is True
    elif smoke:
        replaces = not _visible_files(path)
    if smoke and not replaces:
        what = "a run that is not a --smoke run" if config_file.exists() else "files but no run of this project"
        raise UserError(f"{_short(path)} holds {what}; a --smoke run replaces only an earlier --smoke run: "
                        f"pick another --out, or add --overwrite to start over there")
    if config_file.exists() and args.resume:
        _check_resumable(path, args, previous, data_source)
    elif config_file.exists() and not replaces:
        raise UserError(f"{_short(path)} already holds a run: add --resume to continue it, "
                        f"--overwrite to start over, or pick another --out")
    elif not config_file.exists() and not replaces and _visible_files(path):
        found = ", ".join(p.name for p in _visible_files(path)[:3])
        raise UserError(f"{_short(path)} holds files ({found}) but no config.json: not a run this script "
                        f"can {'resume' if args.resume else 'add to'}; add --overwrite to start over there, or "
                        f"pick another --out")
    elif args.resume and not config_file.exists() and announce:
        print(f"note: no run in {_short(path)} to resume; starting from scratch")
    return replaces


def _check_resumable(path: Path, args: argparse.Namespace, previous: dict, data_source: str | None) -> None:
    old, new = previous.get("args", {}), jsonable_args(args)
    old = old if isinstance(old, dict) else {}
    # a flag this version resolves to None for the run (it does not apply: text2math's --bert-lr for a GloVe
    # model) is no difference from the value an earlier version recorded for it
    changed = [k for k in new if k not in RESUMABLE_DIFFERENCES and k in old and old[k] != new[k]
               and new[k] is not None]
    if changed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {old[k]} (now {new[k]})" for k in changed)
        raise UserError(f"cannot resume {_short(path)}: it was started with {diffs}; use the "
                        f"same flags, or --overwrite")
    before = previous.get("data_source")
    # --data auto reads the real data once --data-root holds them: a run begun on the stand-in would go on there
    if isinstance(before, str) and data_source is not None and _same_data(before) != _same_data(data_source):
        shown = [short_source(before), short_source(data_source)]
        shown = shown if shown[0] != shown[1] else [_same_data(before)[:120], _same_data(data_source)[:120]]
        raise UserError(f"cannot resume {_short(path)}: it was trained on {shown[0]} and would go on with {shown[1]} "
                        f"(--data, --data-root or the files there changed); give it the same data, or start over "
                        f"with --overwrite")


def _same_data(source: str) -> str:
    """A data source without the folder it was read from ('real: MNIST (60,000 train / 10,000 test) from
    data/MNIST/raw' -> 'real: MNIST (60,000 train / 10,000 test)'): moving the data keeps a run resumable."""
    return source.rsplit(" from ", 1)[0]


class RunDir:
    """One run of one configuration. Create it after the data are resolved.

    Nothing on disk changes until the run first writes (a metrics record, a checkpoint, a plot, the summary):
    a run that fails before that (bad data, a model that does not fit the checkpoint, a bad flag) leaves an
    earlier run in --out exactly as it was, even under --overwrite. Under --resume, metrics.jsonl is cut back
    to the checkpoint's epoch (to nothing when there is no checkpoint) at that first write, so it never holds
    an epoch the checkpoint does not."""

    def __init__(self, args: argparse.Namespace, *, data_source: str, device: str = "cpu"):
        self.path = Path(args.out)
        self.args = args
        check_writable_dir(self.path)
        self.replaces = check_out(args, data_source=data_source)   # this run starts over in --out
        self.config = {
            "assignment": args.assignment,
            "args": jsonable_args(args),
            "data_source": data_source,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
            "git_commit": git_commit(),
            "hardware": hardware_info(device),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._started = False
        self._resume_epoch = 0
        self._tracker = None

    def _lock(self) -> None:
        """Hold LOCK in the run folder until this process ends (or drops this RunDir): a second process on the same
        --out (the command started twice, --overwrite while it runs) would delete the first's checkpoint writes in
        flight and append to its metrics. A POSIX lock: one process may open its own run again (tests do)."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise UserError(f"{_short(self.path)} is in use by another running process; wait for it to end, "
                                f"or pick another --out") from None
            return   # a file system without locks: run unguarded, as before
        self._lock_fd = fd

    def __del__(self):
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)

    def start(self) -> None:
        """The run's first write: create the folder, clear an overwritten run, cut metrics back to the resumed
        checkpoint, remove temp files a killed checkpoint write left, write config.json, open the tracker."""
        if self._started:
            return
        make_dir(self.path)
        self._lock()
        remove_stale_temp_files(self.path)
        if self.args.resume:
            self._keep_records_until(self._resume_epoch)
        elif self.replaces:
            for name in (METRICS, "summary.json", CHECKPOINT):
                (self.path / name).unlink(missing_ok=True)
        write_json(self.path / "config.json", self.config)
        self._tracker = make_tracker(self.args.wandb, f"dl-assignments-{self.args.assignment}", self.path.name,
                                     self.config, self.path)
        self._started = True

    @property
    def tracker(self):
        self.start()
        return self._tracker

    # metrics ---------------------------------------------------------------------------------
    @property
    def metrics_file(self) -> Path:
        self.start()
        return self.path / METRICS

    def log(self, record: dict) -> None:
        """Append one record (usually one epoch) to metrics.jsonl and to wandb."""
        with open(self.metrics_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.tracker.log(record, step=record.get("epoch"))

    def metrics(self) -> list[dict]:
        if not self._started and self.args.resume:
            return [r for r in read_metrics(self.path) if r.get("epoch", 0) <= self._resume_epoch]
        return read_metrics(self.path) if self._started or not self.replaces else []

    def keep_metrics_until(self, epoch: int) -> None:
        """Drop the records written after `epoch`."""
        self.start()
        self._keep_records_until(epoch)

    def _keep_records_until(self, epoch: int) -> None:
        if not (self.path / METRICS).exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= epoch]
        write_text_atomic(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in kept))

    # checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        self.start()
        return self.path / CHECKPOINT

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint_path, state)

    def resume_state(self, *, as_numpy: bool = False, required: Sequence[str] = ("epoch", "model")) -> dict | None:
        """The checkpoint to continue from when --resume was given and one exists, checked for the `required`
        entries; nothing on disk changes here (a checkpoint that does not fit fails before any write)."""
        path = self.path / CHECKPOINT
        if not (self.args.resume and path.exists()):
            return None
        state = load_checkpoint(path, as_numpy=as_numpy)
        missing = [key for key in required if not isinstance(state, dict) or key not in state]
        if missing:
            raise UserError(f"{path} is not a checkpoint of this script (no {', '.join(missing)}); "
                            f"start over with --overwrite, or pick another --out")
        epoch, elapsed = state["epoch"], state.get("elapsed", 0.0)
        if not is_whole(epoch) or epoch < 0:
            raise UserError(f"{path} holds no valid epoch number ({str(epoch)[:40]}); start over with --overwrite")
        if not is_real(elapsed) or not 0 <= elapsed < math.inf:
            raise UserError(f"{path} holds no valid training time ({str(elapsed)[:40]}); start over with --overwrite")
        wrong = [key for key in ("model", "optimizer", "scheduler", "extra")
                 if state.get(key) is not None and not isinstance(state[key], dict)]
        if wrong:
            raise UserError(f"{path} is not a checkpoint of this script ({', '.join(wrong)}: not a state dict); "
                            f"start over with --overwrite, or pick another --out")
        epochs = getattr(self.args, "epochs", None)
        if is_whole(epochs) and epoch > epochs:   # else config.json would record --epochs below the epochs done
            raise UserError(f"{path} has done {epoch} epochs, more than --epochs {epochs}: give --epochs {epoch} "
                            f"(the run as it is) or more to continue it")
        self._resume_epoch = int(epoch)
        return state

    # the end ---------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        self.start()
        return self.path / name

    def finish(self, summary: dict, records: Sequence[dict] | None = None) -> dict:
        """Write summary.json (and wandb's run summary). Every summary starts with the data source and its
        short label; given the run's metrics `records`, also with what every training summary holds: the
        epochs, train_seconds and the train_loss curve's trend. Entries of `summary` take precedence."""
        source = self.config["data_source"]
        shared: dict = {"data_source": source, "data_label": short_source(source)}
        if records:
            last = records[-1]
            shared.update(epochs=last.get("epoch"), train_seconds=last.get("train_seconds"))
            if "train_loss" in last:
                shared["loss_trend"] = loss_trend([r["train_loss"] for r in records])
        summary = {**shared, **summary}
        write_json(self.file("summary.json"), summary)
        self.tracker.summary(summary)
        self.tracker.finish()
        return summary


def _previous_config(config_file: Path) -> dict:
    """The config.json of the run in --out, read once for check_out: {} when it is damaged (no JSON, or no
    object), so its flags are not known; one that is no regular file stays a UserError (read_text)."""
    try:
        value = json.loads(read_text(config_file, "start over with --overwrite"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _visible_files(folder: Path) -> list[Path]:
    """The files directly in `folder` an earlier run (or anything else) left, hidden ones (temp files) aside;
    sub-folders are nested runs (dfad_kd's teacher/, slot_diffusion's vae/) and do not count."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:   # missing, or not a folder: check_writable_dir has said so
        return []


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def end_epoch(run: RunDir | None, record: dict, state: dict, *, quiet: bool = False) -> None:
    """Rank 0: append `record` to metrics.jsonl, write the checkpoint `state` atomically, print the epoch's line."""
    if run is None or not is_rank0():
        return
    run.log(record)
    run.save_checkpoint(state)
    if not quiet:
        shown = {k: v for k, v in record.items() if k not in ("epoch", "lr", "train_seconds") and isinstance(v, float)}
        print(f"epoch {record['epoch']:>3}  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()), flush=True)
