"""Weights & Biases logging, imported lazily: off unless asked for (or logged in); 'offline'
writes under the run directory and needs no network.

'online' needs wandb's server: it is probed first, with the same few-second probe a data download
uses (common.download.reachable), so an offline machine never waits on wandb.init's own retries
(minutes): the default falls back to off in one line, and an explicit --wandb online stops in one."""
from __future__ import annotations

import os
import urllib.request
import hashlib
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from common.download import PROBE_SECONDS, reachable
from common.errors import UserError

WANDB_SERVER = "https://api.wandb.ai"


def wandb_server() -> str:
    """The server wandb talks to: $WANDB_BASE_URL, else api.wandb.ai."""
    return os.environ.get("WANDB_BASE_URL") or WANDB_SERVER


def wandb_reachable() -> bool:
    """Can wandb's server (or the HTTPS proxy wandb would go through) be reached within the probe's time?"""
    server = wandb_server()
    proxy = urllib.request.getproxies().get(urlparse(server).scheme or "https")
    if proxy and not urllib.request.proxy_bypass(urlparse(server).hostname or ""):
        return reachable(proxy if "://" in proxy else f"http://{proxy}")
    return reachable(server)


def resolve_wandb_mode(requested: str | None, *, smoke: bool, logged_in: Callable[[], bool],
                       announce: Callable[[str], None] = print) -> str:
    """--wandb's mode. The default (None): off under --smoke or without a key; online with a key when
    wandb's server answers the probe, else off, announced in one line. An explicit `online` whose
    server does not answer is a one-line UserError (not minutes of retries)."""
    if requested is None:
        if smoke or not logged_in():
            return "off"
        if wandb_reachable():
            return "online"
        announce(f"note: wandb has a key here but {_unreachable()}; wandb is off for this run (--wandb offline "
                 f"logs it locally, to `wandb sync` later)")
        return "off"
    if requested == "online":
        _require_server()
    return requested


def _unreachable() -> str:
    return f"{urlparse(wandb_server()).hostname} cannot be reached (no connection within {PROBE_SECONDS:g} s)"


def _require_server() -> None:
    if not wandb_reachable():
        raise UserError(f"--wandb online but {_unreachable()}; connect, or use --wandb offline (sync later with "
                        f"`wandb sync`) or --wandb off")


class NullTracker:
    def log(self, record: dict, step: int | None = None) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    def __init__(self, mode: str, project: str, name: str, config: dict, directory: Path):
        try:
            import wandb   # optional and slow to import: only when a run logs to wandb
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb") from None
        self._owned = wandb.run is None  # inside a wandb sweep's agent the trial's run is already open
        if not self._owned:
            self._run = wandb.run
            self._run.config.update({"run_config": config}, allow_val_change=True)
            return
        if mode == "online":
            _require_server()
        try:
            self._run = wandb.init(project=project, name=name, config=config, dir=str(directory),
                                   mode=mode, id=_run_id(directory), resume="allow")
        except Exception as err:  # wandb raises many types for login and network problems
            raise UserError(f"wandb could not start in {mode} mode ({err}); run `wandb login`, "
                            f"or use --wandb offline / off") from None

    def log(self, record: dict, step: int | None = None) -> None:
        self._run.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)

    def summary(self, values: dict) -> None:
        self._run.summary.update({k: v for k, v in values.items() if isinstance(v, (int, float, str))})

    def finish(self) -> None:
        if self._owned:  # a sweep's run is finished by the sweep
            self._run.finish()


def _run_id(directory: Path) -> str:
    """A stable id per run directory, so --resume continues the same wandb run."""

    return hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:16]


def make_tracker(mode: str, project: str, name: str, config: dict, directory: Path):
    if mode == "off":
        return NullTracker()
    return WandbTracker(mode, project, name, config, directory)
