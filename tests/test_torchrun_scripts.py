"""Every PyTorch train.py under `torchrun --nproc_per_node=2` on the CPU (gloo): it exits 0 and rank 0
alone writes the run (one metrics record per epoch, one summary); kd_cifar10/train.py's two processes
give one process's metrics; and the common.distributed helpers behind it, in two forked processes."""
import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from common import distributed
from common.errors import UserError
from common.training import EpochGuard, Meter, checkpoint, end_epoch, finished_records, order_batches, tensor_batches
from tests.conftest import REPO

pytestmark = pytest.mark.slow

# the cheapest exact comparison: an MLP with LayerNorm (per-example statistics, no BatchNorm), no
# augmentation (no per-rank random draws), a global batch of 32 = 2 x 16 dividing the 256 smoke images
KD_EXACT = ["--model", "mlp", "--norm", "layer", "--augment", "none", "--batch-size", "32", "--sync-bn"]
SCRIPTS = {
    "kd_cifar10/train.py": KD_EXACT,
    "cifar100_multitask/train.py": ["--sync-bn"],     # BatchNorm: buffers broadcast before evaluation
    "sketch_rnn/train.py": ["--head", "seed"],        # the seed head calibrates on gathered residuals
    "text2math/train.py": [],
    "resnet_norms/train.py": [],       # its own BatchNorm (not nn.BatchNorm2d): DDP broadcasts rank 0's buffers
    "slot_attention/train.py": [],
    # no --teacher: both processes train one first; the cifar10 preset's BN match and balance span the processes
    "dfad_kd/train.py": ["--dataset", "cifar10"],
}


def _records(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]


def start_torchrun(script: str, out, *flags: str) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node=2 <script> --smoke ...`, started, not awaited; its
    output goes to <out>.stdout / <out>.stderr (files: no pipe fills while another run is awaited)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / script), "--smoke", *flags, "--out", str(out)]
    with open(f"{out}.stdout", "w") as stdout, open(f"{out}.stderr", "w") as stderr:
        return subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def finished(process: subprocess.Popen, out, timeout: int = 600) -> subprocess.CompletedProcess:
    process.wait(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, Path(f"{out}.stdout").read_text(),
                                       Path(f"{out}.stderr").read_text())


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """The scripts' torchrun runs, started together: most of a run's time is process start-up
    and rendezvous, which overlap."""
    root = tmp_path_factory.mktemp("torchrun")
    outs = {script: root / script.split("/")[0] for script in SCRIPTS}
    started = {script: start_torchrun(script, outs[script], *flags) for script, flags in SCRIPTS.items()}
    return {script: (outs[script], finished(process, outs[script])) for script, process in started.items()}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_two_gloo_processes_run_the_script_and_rank0_writes_once(two_process_runs, script):
    out, done = two_process_runs[script]
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory") == 1          # the other rank's stdout is silenced
    assert [r["epoch"] for r in _records(out)] == [1, 2]    # one record per epoch, not one per rank
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_source"].startswith("generated")
    assert (out / "checkpoint.pt").stat().st_size > 0


def test_kd_train_two_processes_match_one_process(two_process_runs, tmp_path):
    """N ranks x (B / N) rows of the same permutation, gradients averaged by DDP, the test set sharded
    and its sums reduced: the same computation as 1 x B except for float32 summation order (measured:
    losses differ by ~1e-7, accuracies not at all), so losses agree to 1e-5 and accuracies to at most
    one example (a near-tie argmax may flip)."""
    from kd_cifar10 import train

    out, done = two_process_runs["kd_cifar10/train.py"]
    assert done.returncode == 0, done.stderr[-3000:]
    one = train.main(["--smoke", *KD_EXACT, "--out", str(tmp_path / "one")])
    ones, twos = _records(tmp_path / "one"), _records(out)
    assert len(ones) == len(twos) == 2
    for a, b in zip(ones, twos):
        assert a["lr"] == b["lr"]
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
        assert abs(a["train_acc"] - b["train_acc"]) <= 1 / one["n_train"] + 1e-9
        assert abs(a["test_acc"] - b["test_acc"]) <= 1 / one["n_test"] + 1e-9
    assert "--sync-bn needs CUDA" in done.stdout   # on the CPU the flag is announced, not silently dropped


def test_dfad_teacher_and_student_two_processes_match_one_process(tmp_path):
    """dfad_kd's two scripts under two processes, against one. train_teacher.py: N ranks x (B / N) rows of
    the same permutation (LeNet-5, no BatchNorm, no augmentation). train.py: every process draws the whole
    batch and the generator makes all of it, each process distils its rows (LeNet-5 teacher and student, no
    BatchNorm), the balance term's mean prediction is averaged over the processes. Both are one process's
    computation up to float32 summation order (measured: ~1e-7)."""
    from dfad_kd import train, train_teacher

    teacher = tmp_path / "teacher"
    train_teacher.main(["--smoke", "--out", str(teacher)])
    runs = {"teacher": start_torchrun("dfad_kd/train_teacher.py", tmp_path / "teacher2"),
            "student": start_torchrun("dfad_kd/train.py", tmp_path / "student2", "--teacher",
                                      str(teacher / "checkpoint.pt"))}
    one = train.main(["--smoke", "--teacher", str(teacher / "checkpoint.pt"), "--out", str(tmp_path / "student")])
    for name, process in runs.items():
        done = finished(process, tmp_path / f"{name}2")
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("run directory") == 1
        assert json.loads((tmp_path / f"{name}2" / "summary.json").read_text())["epochs"] == 2
        ones, twos = _records(tmp_path / name), _records(tmp_path / f"{name}2")
        assert [r["epoch"] for r in ones] == [r["epoch"] for r in twos] == [1, 2]
        for a, b in zip(ones, twos):
            assert a["lr"] == b["lr"]
            for key in ("train_loss", "test_loss", "loss_g", "loss_s"):
                assert (key in a) == (key in b) and a.get(key, 0) == pytest.approx(b.get(key, 0), abs=1e-5), key
            assert abs(a["test_acc"] - b["test_acc"]) <= 1 / 128 + 1e-9                 # the 128 smoke test images
            if name == "student":
                assert a["class_hist"] == pytest.approx(b["class_hist"], abs=0.01)
                assert a["agree_input"] == pytest.approx(b["agree_input"], abs=0.01)
    assert one["test_acc"] == pytest.approx(json.loads((tmp_path / "student2" / "summary.json").read_text())
                                            ["test_acc"], abs=1 / 128 + 1e-9)


# the helpers, in two processes started by torch.multiprocessing ----------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _helpers_worker(rank: int, port: int, out: str, results) -> None:
    torch.set_num_threads(1)   # a forked child: no OpenMP pool of its own (as DataLoader's workers do)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    args = argparse.Namespace(device="cpu", batch_size=4, out=Path(out), resume=False, overwrite=False,
                              wandb="off", assignment="test", epochs=2, seed=0, sync_bn=False)
    with distributed.launch(args) as info:
        rows = torch.arange(10)
        batches = [b[0].tolist() for b in tensor_batches((rows,), 2, seed=0, epoch=0)]
        drawn = [b[0].tolist() for b in order_batches((rows,), torch.tensor([3, 3, 7, 1, 0]), 2)]
        means = distributed.reduce_means({"acc": float(rank)}, count=1 + rank)   # (0 * 1 + 1 * 2) / 3
        gathered = distributed.gather(torch.full((rank + 1,), rank)).tolist()
        alone = distributed.on_rank0(lambda: (distributed.world_size(), distributed.shard([0, 1, 2])))
        try:
            distributed.per_rank_batch(15)
            uneven = ""
        except UserError as error:
            uneven = str(error)
        run = distributed.run_dir(args, data_source="generated: test", device="cpu")
        torch.manual_seed(0)
        model = distributed.wrap_model(torch.nn.Linear(3, 1), "cpu")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 3)

        guard = EpochGuard(run)
        for epoch in range(2):
            meter = Meter()
            for (xb,) in tensor_batches((x,), 2, seed=0, epoch=epoch):
                loss = model(xb).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                meter.add(loss, len(xb))
            train = guard.check(meter, model, epoch)
            end_epoch(run, {"epoch": epoch + 1, "train_loss": train["loss"]},
                      checkpoint(epoch + 1, 0.0, {}, model, optimizer), quiet=True)
        records = finished_records(run)
        results[rank] = dict(info=(info.rank, info.world_size), batches=batches, drawn=drawn, means=means,
                             gathered=gathered, alone=alone, uneven=uneven, run=type(run).__name__,
                             epochs=[r["epoch"] for r in records], weight=model.module.weight.detach().tolist())


def test_helpers_in_two_processes(tmp_path):
    results = mp.Manager().dict()
    mp.start_processes(_helpers_worker, args=(_free_port(), str(tmp_path / "run"), results), nprocs=2,
                       start_method="fork")   # no second import of torch: seconds, not tens of seconds
    zero, one = results[0], results[1]
    assert zero["info"] == (0, 2) and one["info"] == (1, 2)
    single = [b[0].tolist() for b in tensor_batches((torch.arange(10),), 4, seed=0, epoch=0)]
    # rank r's batch i holds rows r, r+2, ... of one process's batch i (global batch 4 = 2 x 2)
    assert [sorted(a + b) for a, b in zip(zero["batches"], one["batches"])] == [sorted(b) for b in single]
    assert zero["drawn"] == [[3, 7], [0]] and one["drawn"] == [[3, 1], [3]]   # the odd tail wraps around
    assert zero["means"] == one["means"] == {"acc": pytest.approx(2 / 3)}
    assert zero["gathered"] == one["gathered"] == [0, 1, 1]
    assert zero["alone"] == (1, [0, 1, 2]) and one["alone"] == {}
    assert "--batch-size 15 (the global batch) must be divisible by the 2 processes" in one["uneven"]
    assert (zero["run"], one["run"]) == ("RunDir", "FollowerRun")
    assert zero["epochs"] == one["epochs"] == [1, 2]                  # the follower reads rank 0's records
    assert zero["weight"] == one["weight"]                            # DDP kept the replicas equal
    assert [r["epoch"] for r in _records(tmp_path / "run")] == [1, 2]
