"""The pieces a train.py's own epoch loop calls. The loop itself is written out in each script:

    start, elapsed = resume(run, model, optimizer, scheduler)       # (0, 0.0) unless --resume found a checkpoint
    guard = EpochGuard(run)
    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        model.train()
        meter = Meter()
        for x, y in progress(tensor_batches((x_train, y_train), batch, seed=args.seed, epoch=epoch), ...):
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(loss, len(y), acc=(logits.argmax(1) == y).sum())
        train = guard.check(meter, model, epoch)                      # one host sync; a diverged run stops here
        elapsed += time.perf_counter() - tic
        model.eval()
        with torch.no_grad():
            val = evaluate(...)
        end_epoch(run, {"epoch": epoch + 1, **train, **val, "train_seconds": elapsed},
                  checkpoint(epoch + 1, elapsed, config, model, optimizer, scheduler))

What each piece keeps true:
- `tensor_batches` orders an epoch's batches by (seed, epoch) alone, so a resumed run sees the batches an
  uninterrupted one sees; under torchrun each rank takes its share (`order_batches`).
- `Meter` sums the epoch's statistics on the device and moves them to the host once, summed over ranks.
- `EpochGuard.check` moves the epoch's sums, its first and largest step loss and a finiteness flag of the model
  to the host in one sync, and stops a run whose loss became NaN or infinite, exploded, or whose parameters or buffers
  did, naming the epoch and the last good checkpoint (common.divergence; the run exits 3).
- `end_epoch` writes on rank 0 only: one metrics record, then the checkpoint (atomically), so the last
  checkpoint always matches the last record.
- `resume` loads model, optimizer, scheduler, extra state and the RNG; a checkpoint of another script or
  model is one UserError raised before any file of the run changes.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable

import torch
import torch.distributed as dist

from common.distributed import all_reduce_sum, barrier, is_distributed, rank, world_size
from common.divergence import advice_for, check_chance, check_loss, diverged
from common.errors import TrainingDiverged, UserError
from common.rundir import CHECKPOINT, RunDir
from common.rundir import end_epoch as end_epoch   # re-exported: the loop's pieces in one import


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA (no GradScaler needed); a no-op elsewhere."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Meter:
    """One training epoch's running sums, kept on the device (no host sync per step).

    `add(loss, n, **sums)` takes the step's loss (the mean that backward() saw), the batch's example count and
    any per-batch sums (correct predictions, a penalty times n). `means()` returns {"loss": sum(loss * n) / sum(n),
    key: sum(key) / sum(n), ...} over all ranks; a `loss` entry in `sums` replaces the recorded loss (the
    step loss is still the one watched for divergence). The first and the largest step loss are kept for
    EpochGuard."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] | None = None
        self.examples = 0.0          # the count, when it is given as a Python number (no device copy per step)
        self.first: torch.Tensor | None = None
        self.peak: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, n: int | torch.Tensor, /, **sums: torch.Tensor) -> None:
        step = loss.detach().float()
        if self.first is None:
            self.first, self.peak = step.clone(), step.clone()
        else:
            self.peak = torch.maximum(self.peak, step)       # NaN propagates
        batch = {"loss": step * n, **sums}
        if isinstance(n, torch.Tensor):
            batch["n"] = n
        else:
            self.examples += n
        self.sums = self.sums if self.sums is not None else {}
        for key, value in batch.items():
            value = value.detach().float()
            if key in self.sums:
                self.sums[key] += value
            else:
                self.sums[key] = value.clone()

    def reduced(self) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """(names, their sums over all ranks, [first, peak] over all ranks), still on the device."""
        if self.sums is None:
            # a user error (exit 2), not a divergence (exit 3): slot_attention --batch-size 1e9 drops its only batch
            raise UserError("the training set gave no batches: check --batch-size against the data size")
        sums = dict(self.sums)
        if "n" not in sums:
            sums["n"] = torch.tensor(self.examples, dtype=torch.float32, device=self.first.device)
        names = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[k] for k in names]))
        pair = torch.stack([self.first, self.peak])
        if is_distributed():
            dist.all_reduce(pair, op=dist.ReduceOp.MAX)
        return names, totals, pair

    def means(self) -> dict[str, float]:
        """The epoch's means over all ranks (one host sync)."""
        names, sums, _ = self.reduced()
        return _means(names, sums.tolist())

    def first_and_peak(self) -> tuple[float, float]:
        """(first, peak): rank 0's first step loss and the largest over all ranks."""
        first, peak = self.reduced()[2].tolist()
        return first, peak


def _means(names: list[str], sums: list[float]) -> dict[str, float]:
    totals = dict(zip(names, sums))
    count = totals.pop("n")
    return {k: v / max(count, 1.0) for k, v in totals.items()}


class EpochGuard:
    """Stops a diverged run at the end of an epoch, before its checkpoint is written.

    The reference for an exploding loss is the run's first step loss in its first epoch and the previous
    epoch's mean afterwards (common.divergence.explosion_limit); given `chance_loss` (a uniform guess's loss),
    an epoch's mean far above it stops the run too (common.divergence.check_chance). The message's advice names
    the run's own flags (common.divergence.advice_for)."""

    def __init__(self, run: RunDir | None, chance_loss: float | None = None):
        self.where = run.path if run is not None else None
        self.reference: float | None = None
        self.chance_loss = chance_loss
        self.advice = advice_for(getattr(run, "args", None))   # a FollowerRun (other ranks) keeps no flags

    def check(self, meter: Meter, model: torch.nn.Module, epoch: int) -> dict[str, float]:
        """The epoch's training means ({"loss": ..., ...}); TrainingDiverged when the loss or the model went bad.
        `epoch` counts from 0: the epoch that just ran."""
        names, sums, pair = meter.reduced()
        finite = torch.stack([torch.isfinite(t).all() for t in unwrap(model).state_dict().values()
                              if isinstance(t, torch.Tensor) and t.is_floating_point()] or [pair.new_ones(())])
        values = torch.cat([sums, pair, finite.all().float().reshape(1).to(sums.device)]).tolist()  # the one sync
        means, (first, peak, model_finite) = _means(names, values[:len(names)]), values[len(names):]
        kept = epoch if self.where is not None else 0   # every finished epoch wrote a checkpoint
        check_loss(peak, first if self.reference is None else self.reference, epoch + 1, kept, self.where,
                   advice=self.advice)
        self.reference = means.get("loss", first)
        check_chance(self.reference, self.chance_loss, epoch + 1, kept, self.where, self.advice)
        if not model_finite:
            raise TrainingDiverged(diverged("the parameters or buffers became NaN or infinite", epoch + 1, kept,
                                            self.where, self.advice))
        return means


def checkpoint(epoch: int, elapsed: float, model_config: dict, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler=None, extra: dict | None = None) -> dict:
    """What every PyTorch checkpoint holds: enough to resume (optimizer, scheduler, RNG) and to rebuild the
    model without the command line (model_config). `extra`: objects with state_dict() (an EMA, a generator)."""
    return {"epoch": epoch, "elapsed": elapsed, "model_config": model_config, "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "extra": {k: v.state_dict() for k, v in (extra or {}).items()}, "torch_rng": torch.get_rng_state()}


def finished_records(run: RunDir | None) -> list[dict]:
    """Every metrics record once training is over, on every rank (the others wait for rank 0's last write)."""
    barrier()
    return run.metrics() if run is not None else []


def resume(run: RunDir | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
           extra: dict | None = None) -> tuple[int, float]:
    """(epochs done, training seconds so far): loads the checkpoint into model, optimizer, scheduler, `extra`
    and the RNG when --resume found one; (0, 0.0) otherwise. A checkpoint that does not fit is one UserError,
    raised before any file of the run changes."""
    extra = extra or {}
    state = run.resume_state() if run is not None else None
    if state is None:
        return 0, 0.0
    path = run.path / CHECKPOINT
    missing = [k for k in ("epoch", "elapsed", "model", "optimizer", "torch_rng") if k not in state]
    missing += [f"extra/{k}" for k in extra if k not in (state.get("extra") or {})]
    if missing:
        raise UserError(f"{path} is not a checkpoint of this script (no {', '.join(missing)}); start over "
                        f"with --overwrite, or pick another --out")
    try:
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        for key, obj in extra.items():
            obj.load_state_dict(state["extra"][key])
        for obj in (scheduler, *extra.values()):
            if isinstance(obj, torch.optim.lr_scheduler.LambdaLR):
                follow_this_run(obj)
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path} does not fit this run's model ({first}); resume with the flags it was "
                        f"started with, or start over with --overwrite") from None
    print(f"resuming {run.path.name} after epoch {state['epoch']}")
    return int(state["epoch"]), float(state["elapsed"])


def follow_this_run(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """The learning rates of this run's curve at the resumed step: the optimizer's saved ones follow the saved
    run's curve, which differs when --resume changed --epochs (a schedule's total)."""
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    """Every floating-point tensor of a state dict is finite (parameters and buffers alike)."""
    return all(bool(torch.isfinite(t).all()) for t in state.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def tensor_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, *, seed: int, epoch: int,
                   shuffle: bool = True, drop_last: bool = False) -> Iterable[tuple[torch.Tensor, ...]]:
    """Mini-batches of tensors already on their device (no DataLoader, no host round trip). The order
    depends only on (seed, epoch); under torch.distributed each rank takes its share (order_batches)."""
    count = tensors[0].shape[0]
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(count, generator=generator)
    else:
        order = torch.arange(count)
    return order_batches(tensors, order, batch_size, drop_last=drop_last)


def order_batches(tensors: tuple[torch.Tensor, ...], order: torch.Tensor, batch_size: int, *,
                  drop_last: bool = False) -> Iterable[tuple[torch.Tensor, ...]]:
    """Mini-batches of `tensors` rows in the given order (a permutation, or draws of a sampler). Under
    torch.distributed each rank takes every world_size-th index of the same order (DistributedSampler's
    rule; the tail is padded by wrapping), so rank r's batch i and the other ranks' make up batch i of
    one process with batch_size * world_size."""
    world = world_size()
    if world > 1:
        padded = math.ceil(len(order) / world) * world
        order = torch.cat([order, order[: padded - len(order)]])[rank()::world]
    order = order.to(tensors[0].device)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield tuple(t[index] for t in tensors)


def batch_count(count: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches tensor_batches yields for `count` examples on this rank."""
    count = math.ceil(count / world_size())
    return count // batch_size if drop_last else math.ceil(count / batch_size)


def prefixed(prefix: str, values: dict) -> dict:
    """{"loss": 0.3} -> {"train_loss": 0.3} for prefix "train"."""
    return {f"{prefix}_{k}": v for k, v in values.items()}
