"""torchrun / DistributedDataParallel helpers: the same script runs as one process or as N.

    torchrun --nproc_per_node=N <script>.py ...      # sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT

A train.py puts its body under `with distributed.launch(args) as info:`, which joins the process
group when torchrun says there is more than one process (gloo on the CPU, nccl on CUDA, one GPU per
local rank; a no-op for a plain `python script.py`), picks this process's device, checks that the
global batch splits, silences stdout on ranks other than 0 and leaves the group at the end. Inside,
`run_dir` gives rank 0 the RunDir and the others a FollowerRun, `wrap_model` adds DDP (and
SyncBatchNorm with `--sync-bn`, a flag `add_sync_bn_flag` adds), and the script's loop, with
common.training's pieces, shards the batches (tensor_batches), sums the epoch's statistics over ranks
(Meter) and writes on rank 0 only (end_epoch). An evaluation
is sharded with `shard` and its sums reduced with `all_reduce_sum` / `reduce_means` / `gather`.

Batch convention used with these helpers: a script's --batch-size is the GLOBAL batch; each rank
takes `per_rank_batch(batch_size)` = batch_size / world_size examples of the same seeded permutation,
and DDP averages the ranks' gradients, so N ranks x (B / N) computes the same update as 1 rank x B
(exactly so when the loss is a mean over the examples and without BatchNorm; BatchNorm's batch
statistics are per rank unless converted to SyncBatchNorm, which `--sync-bn` does on CUDA).
"""
from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from common.checkpoint import load_checkpoint
from common.errors import UserError
from common.rundir import CHECKPOINT, RunDir, read_metrics
from common.runtime import choose_device, env_int

T = TypeVar("T", torch.Tensor, Sequence)
R = TypeVar("R")
_alone = False   # True inside on_rank0: this process works as if it were the only one


# --batch-size's help in every script that runs under torchrun (per_rank_batch splits it)
GLOBAL_BATCH_HELP = "GLOBAL mini-batch size, split over torchrun's processes (default: %(default)s)"

@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str        # the device this process computes on, e.g. "cpu" or "cuda:1"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun describes (no-op for a single process). `device` is the
    script's resolved device type; on CUDA each process takes the GPU of its local rank."""
    world = env_int("WORLD_SIZE", 1, minimum=1)
    local_rank = env_int("LOCAL_RANK", 0, minimum=0)
    if world <= 1:
        return DistInfo(0, 1, 0, device)
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                            f"use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        except ValueError as err:   # torch's env:// rendezvous: RANK, MASTER_ADDR or MASTER_PORT missing or bad
            why = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise UserError(f"cannot join the {world} processes WORLD_SIZE asks for ({why}); start the script with "
                            f"torchrun, or unset WORLD_SIZE to run one process") from None
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


@contextlib.contextmanager
def launch(args: argparse.Namespace) -> Iterator[DistInfo]:
    """The body of a train.py, as one process or as one of torchrun's N: joins the process group (a
    no-op for one process) on the device --device resolves to, checks that --batch-size (the global
    batch) splits over the processes, sends stdout of ranks other than 0 to /dev/null (stderr stays)
    and leaves the group at the end, also after an error."""
    info = init_from_env(choose_device(args.device))
    with contextlib.ExitStack() as stack:
        stack.callback(cleanup)
        if getattr(args, "batch_size", None):
            per_rank_batch(args.batch_size)   # fail before any work when the global batch does not split
        if not info.is_main:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        elif getattr(args, "sync_bn", False) and info.distributed and not info.device.startswith("cuda"):
            print("note: --sync-bn needs CUDA (SyncBatchNorm has no CPU kernel): each process keeps its own "
                  "BatchNorm batch statistics")
        yield info


def add_sync_bn_flag(parser: argparse.ArgumentParser) -> None:
    """--sync-bn, for the scripts whose models use BatchNorm (pass args.sync_bn to wrap_model)."""
    parser.add_argument("--sync-bn", action="store_true",
                        help="under torchrun on CUDA: SyncBatchNorm, batch statistics over every process's "
                             "share of the global batch (default: each process's own share)")


def run_dir(args: argparse.Namespace, *, data_source: str, device: str) -> "RunDir | FollowerRun":
    """Rank 0's RunDir (it alone writes; config.json records the device type, "cuda" for "cuda:0");
    on the other ranks a FollowerRun of the same folder, made once rank 0 has checked it (RunDir writes
    nothing before its first record, so an --overwrite that fails early leaves the old run whole)."""
    kind = str(device).split(":")[0]
    run = RunDir(args, data_source=data_source, device=kind) if is_main_process() else None
    barrier()
    return run if run is not None else FollowerRun(args.out, args.resume)


def on_rank0(fn: Callable[..., R], *args, **kwargs) -> R | dict:
    """fn(*args, **kwargs) on rank 0 alone, as one process (rank 0 of 1, no collectives: a recognizer
    trained after the main model, a final evaluation), for a run's end-of-run artefacts; the other
    ranks return {} without waiting for it."""
    global _alone
    if not is_main_process():
        return {}
    _alone, before = True, _alone
    try:
        return fn(*args, **kwargs)
    finally:
        _alone = before


def is_distributed() -> bool:
    return not _alone and dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call once at the end, also after an error)."""
    if is_distributed():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int) -> int:
    """This rank's share of a global batch; the global batch must split evenly over the ranks."""
    world = world_size()
    if global_batch % world:
        raise UserError(f"--batch-size {global_batch} (the global batch) must be divisible by the "
                        f"{world} processes; pick a multiple of {world}")
    return global_batch // world


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over ranks (the tensor itself for one process)."""
    if is_distributed():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): DDP broadcasts them before each
    training forward, but each rank's last forward updates its own copy with its own batch."""
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def shard(rows: T) -> T:
    """This rank's strided share of an evaluation set, a tensor or a list (rank r takes rows r, r+N,
    ...): every row is evaluated exactly once across ranks, with no padding, so summed metrics equal
    one process's."""
    return rows[rank()::world_size()]


def _reduce_device() -> str:
    """Where a collective's tensor must live: CUDA under nccl, the CPU under gloo."""
    return "cuda" if is_distributed() and dist.get_backend() == "nccl" else "cpu"


def reduce_means(means: dict[str, float], count: float) -> dict[str, float]:
    """Each rank's means over its `count` rows -> the means over all ranks' rows (one all_reduce); with
    `shard`'s partition of a set, one process's means over the whole set (up to float summation order)."""
    if not is_distributed():
        return dict(means)
    names = sorted(means)
    sums = torch.tensor([means[k] * count for k in names] + [count], dtype=torch.float64, device=_reduce_device())
    sums = all_reduce_sum(sums).tolist()
    return {k: v / max(sums[-1], 1e-12) for k, v in zip(names, sums)}


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `tensor` concatenated in rank order (shares may differ in length)."""
    if not is_distributed():
        return tensor
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts).to(tensor.device)


def rank_seed(seed: int) -> int:
    """A seed of this rank's own random draws (augmentations): `seed` itself on rank 0, as in one process."""
    return seed + rank() * 1_000_000_007


def wrap_model(model: torch.nn.Module, device: str, *, sync_batchnorm: bool = False,
               find_unused_parameters: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed (parameters broadcast from rank 0);
    the model itself otherwise. SyncBatchNorm is only used on CUDA (it has no CPU kernel).
    `find_unused_parameters` for a model with trainable parameters outside the loss (a fine-tuned
    transformers encoder's pooler): DDP then stops waiting for their gradients."""
    if not is_distributed():
        return model
    if sync_batchnorm and device.startswith("cuda"):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                     find_unused_parameters=find_unused_parameters)


class FollowerRun:
    """What a rank other than 0 needs of a run directory: the checkpoint to resume from (read only)
    and the metrics rank 0 writes. common.training's resume and common.rundir's end_epoch take it in place of
    the RunDir, so every rank resumes from the same epoch; nothing is written through it (end_epoch writes on rank
    0 only)."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.resume = Path(path), resume

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def resume_state(self) -> dict | None:
        if not (self.resume and self.checkpoint_path.exists()):
            return None
        return load_checkpoint(self.checkpoint_path)

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)
