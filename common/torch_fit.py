"""The epoch loop every PyTorch train.py shares.

A script supplies three things and keeps its own model logic:
- `batches(epoch) -> iterable of batches`: the training batches of one epoch, in an order that
  depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one;
- `train_step(batch) -> (loss, stats)`: forward pass, `loss` a scalar with gradients, `stats` a dict
  of *detached* tensors summed over the batch; it must hold "n" (examples in the batch), and every
  other key k becomes `train_<k>` = sum(k) / sum(n) in the epoch's record (put "loss" in it);
- `evaluate(epoch) -> dict[str, float]`: the record's evaluation entries (`val_loss`, `test_acc`, ...),
  run under `torch.no_grad()` with the model in eval mode.

The loop owns the rest: autocast (bf16 on CUDA), gradient clipping, optimizer and per-epoch
scheduler steps, stats accumulated on the device (one host sync per epoch, not per step), a NaN or
infinite loss stopping the run with the last good checkpoint kept, one metrics record and one
atomic checkpoint per epoch, --resume (model, optimizer, scheduler, RNG and extra state), and
under torch.distributed (common.distributed.launch): batches sharded over ranks (tensor_batches,
order_batches), stats summed across ranks, only rank 0 writing or showing progress. `evaluate` runs
on every rank; it shards its set and reduces its sums itself (common.distributed.shard, reduce_means).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from common.distributed import all_reduce_sum, barrier, is_distributed, is_main_process, rank, world_size
from common.divergence import check_loss, diverged
from common.errors import TrainingDiverged, UserError
from common.progress import progress
from common.rundir import CHECKPOINT, RunDir

Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    grad_clip: float | None = None   # max global grad norm; None: no clipping
    amp: bool = True                 # bf16 autocast when training on CUDA; ignored on CPU
    quiet: bool = False              # no progress bars or per-epoch lines (smoke runs)
    steps_per_epoch: int | None = None  # the progress bar's total, when `batches` has no len()


def reduce_sums(stats: Stats) -> dict[str, float]:
    """Sum the stats over ranks (when distributed) in one all_reduce; move them to the host once."""
    names = sorted(stats)
    stacked = all_reduce_sum(torch.stack([stats[k].detach().float() for k in names]))
    return dict(zip(names, stacked.tolist()))


class StepLosses:
    """The first and the largest step loss of an epoch, on the device until `values()` (over all ranks)."""

    def __init__(self):
        self.first: torch.Tensor | None = None
        self.peak: torch.Tensor | None = None

    def observe(self, loss: torch.Tensor) -> None:
        if self.first is None:
            self.first, self.peak = loss.clone(), loss.clone()
        else:
            self.peak = torch.maximum(self.peak, loss)      # NaN propagates

    def values(self) -> tuple[float, float]:
        """(first, peak): rank 0's first loss, the largest over all ranks."""
        pair = torch.stack([self.first, self.peak])
        if is_distributed():
            dist.all_reduce(pair, op=dist.ReduceOp.MAX)
        first, peak = pair.tolist()
        return first, peak


def autocast_for(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA (no GradScaler needed); a no-op elsewhere."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _accumulate(total: Stats | None, stats: Stats) -> Stats:
    if total is None:
        return {k: v.detach().float().clone() for k, v in stats.items()}
    for key, value in stats.items():
        total[key] += value.detach().float()
    return total


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable,
                    train_step: Callable, settings: FitSettings, device: torch.device, desc: str,
                    step_hook: Callable[[], None] | None = None, losses: StepLosses | None = None
                    ) -> dict[str, float]:
    """One pass over `batches`; returns the epoch's mean stats (`loss`, ...) over all ranks. `losses`, when
    given, receives the first and the largest step loss (kept on the device: no extra host sync per step)."""
    model.train()
    total: Stats | None = None
    losses = losses if losses is not None else StepLosses()
    quiet = settings.quiet or not is_main_process()
    for batch in progress(batches, desc=desc, total=settings.steps_per_epoch, quiet=quiet):
        with autocast_for(device, settings.amp):
            loss, stats = train_step(batch)
        losses.observe(loss.detach().float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        if step_hook is not None:
            step_hook()
        total = _accumulate(total, stats)
    if total is None:
        raise TrainingDiverged("the training set gave no batches: check --batch-size against the data size")
    sums = reduce_sums(total)
    count = sums.pop("n")
    return {k: v / max(count, 1.0) for k, v in sums.items()}


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: RunDir | None,
        batches: Callable[[int], Iterable], train_step: Callable[[object], tuple[torch.Tensor, Stats]],
        evaluate: Callable[[int], dict], settings: FitSettings, model_config: dict, *,
        scheduler=None, extra_state: dict | None = None, step_scheduler_per_batch: bool = False,
        device: torch.device | str = "cpu") -> list[dict]:
    """Train from the last checkpoint (when --resume found one) to `settings.epochs`; returns every
    record. `run` may be None or a common.distributed.FollowerRun on ranks other than 0 (they neither log
    nor save; a FollowerRun resumes them from rank 0's checkpoint). `extra_state` is a
    dict of objects with state_dict()/load_state_dict() (an EMA, a teacher) saved with the model."""
    device = torch.device(device)
    extra_state = extra_state or {}
    start_epoch, elapsed = _resume(model, optimizer, scheduler, extra_state, run)
    hook = scheduler.step if (scheduler is not None and step_scheduler_per_batch) else None
    where = run.path if run is not None else None
    kept, reference = start_epoch, None
    for epoch in range(start_epoch, settings.epochs):
        tic = time.perf_counter()
        losses = StepLosses()
        means = train_one_epoch(model, optimizer, batches(epoch), train_step, settings, device,
                                desc=f"epoch {epoch + 1}/{settings.epochs}", step_hook=hook, losses=losses)
        first, peak = losses.values()
        check_loss(peak, first if reference is None else reference, epoch + 1, kept, where)
        reference = means.get("loss", first)
        if not all_finite(_unwrap(model).state_dict()):
            raise TrainingDiverged(diverged("the parameters or buffers became NaN or infinite", epoch + 1, kept,
                                            where))
        if scheduler is not None and not step_scheduler_per_batch:
            scheduler.step()
        elapsed += time.perf_counter() - tic
        model.eval()
        with torch.no_grad():
            evaluated = evaluate(epoch)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v for k, v in means.items()}, **evaluated, "train_seconds": elapsed}
        if run is not None and is_main_process():
            run.log(record)
            run.save_checkpoint({
                "epoch": epoch + 1, "elapsed": elapsed, "model_config": model_config,
                "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "extra": {k: v.state_dict() for k, v in extra_state.items()},
                "torch_rng": torch.get_rng_state(),
            })
            kept = epoch + 1
        if not settings.quiet and is_main_process():
            shown = {k: v for k, v in record.items() if k not in ("epoch", "lr", "train_seconds")}
            print(f"epoch {epoch + 1:>3}/{settings.epochs}  " +
                  "  ".join(f"{k} {v:.4f}" for k, v in shown.items() if isinstance(v, float)), flush=True)
    model.eval()
    barrier()   # rank 0 has written the last record before another rank reads the metrics
    return run.metrics() if run is not None else []


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    """Every floating-point tensor of a state dict is finite (parameters and buffers alike)."""
    return all(bool(torch.isfinite(t).all()) for t in state.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def _resume(model, optimizer, scheduler, extra_state: dict, run: RunDir | None) -> tuple[int, float]:
    """Load the checkpoint into model, optimizer, scheduler and extra state; a checkpoint that does not fit
    (another script's, another model's) is one UserError, raised before any file of the run changes."""
    state = run.resume_state() if run is not None else None
    if state is None:
        return 0, 0.0
    path = run.path / CHECKPOINT
    missing = [k for k in ("epoch", "elapsed", "model", "optimizer", "torch_rng") if k not in state]
    missing += [f"extra/{k}" for k in extra_state if k not in state.get("extra", {})]
    if missing:
        raise UserError(f"{path} is not a checkpoint of this script (no {', '.join(missing)}); start over "
                        f"with --overwrite, or pick another --out")
    try:
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        for key, obj in extra_state.items():
            obj.load_state_dict(state["extra"][key])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path} does not fit this run's model ({first}); resume with the flags it was "
                        f"started with, or start over with --overwrite") from None
    print(f"resuming {run.path.name} after epoch {state['epoch']}")
    return int(state["epoch"]), float(state["elapsed"])


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
