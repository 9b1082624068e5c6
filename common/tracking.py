"""Weights & Biases logging, imported lazily: off unless asked for (or logged in); 'offline'
writes under the run directory and needs no network."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError


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
            import wandb
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb") from None
        self._owned = wandb.run is None  # inside a wandb sweep's agent the trial's run is already open
        if not self._owned:
            self._run = wandb.run
            self._run.config.update({"run_config": config}, allow_val_change=True)
            return
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
    import hashlib

    return hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:16]


def make_tracker(mode: str, project: str, name: str, config: dict, directory: Path):
    if mode == "off":
        return NullTracker()
    return WandbTracker(mode, project, name, config, directory)
