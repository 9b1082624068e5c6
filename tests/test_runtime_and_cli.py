"""Seeding, device choice, and the shared flags' resolution."""
import time

import numpy as np
import pytest
import torch

from common import REPO_ROOT
from common.cli import make_parser, parse_args, typed_flags
from common.errors import UserError
from common.runtime import choose_device, hardware_info, seed_everything


def test_seed_everything_makes_numpy_and_torch_repeat():
    seed_everything(5)
    first = (np.random.rand(3), torch.rand(3))
    seed_everything(5)
    second = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_device_choice():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda is not available"):
            choose_device("cuda")


def test_hardware_info_names_the_machine():
    info = hardware_info("cpu")
    assert info["cpu_count"] >= 1 and info["torch"] == torch.__version__


def _parse(argv):
    parser = make_parser("demo", epochs=3, batch_size=8, lr=0.1)
    return parse_args(parser, argv, assignment="demo", run_name=lambda a: f"lr{a.lr}")


def test_defaults_resolve_out_dir_and_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    args = _parse([])
    assert args.out == REPO_ROOT / "runs" / "demo" / "lr0.1"
    assert args.wandb == "off" and args.data == "auto" and args.epochs == 3
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr("common.tracking.reachable", lambda url, timeout=None: True)  # wandb's server answers
    assert _parse([]).wandb == "online"
    assert _parse(["--smoke"]).wandb == "off"  # smoke never logs unless asked


def test_smoke_forces_cpu_and_its_own_scratch_dir():
    args = _parse(["--smoke", "--device", "cuda"])
    assert args.device == "cpu" and not args.overwrite      # RunDir replaces an earlier --smoke run, nothing else
    assert args.out == REPO_ROOT / "runs" / "smoke" / "demo" / "lr0.1"


@pytest.mark.parametrize("argv,message", [(["--epochs", "0"], "positive integer"), (["--lr", "-1"], "positive number"),
                                          (["--data", "web"], "invalid choice")])
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.fixture
def restore_threads():
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    threadpool_limits(limits=before, user_api="blas")


@pytest.mark.parametrize("cores, load, local_world, expected", [
    (2, 0.1, "1", 2),      # idle: every core
    (2, 1.2, "1", 1),      # one competing process: the free core
    (2, 5.0, "1", 1),      # overloaded: never fewer than one
    (16, 3.4, "4", 3),     # torchrun's four local processes share the 13 free cores
])
def test_auto_threads_take_the_free_cores(monkeypatch, restore_threads, cores, load, local_world, expected):
    import os

    from common import runtime

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(runtime, "busy_cores", lambda: load)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert runtime.set_cpu_threads("auto") == expected
    assert torch.get_num_threads() == expected


class FakeMachine:
    """cpu_counters() for ThreadGovernor: `others` cores busy besides this process's `own` ones."""

    def __init__(self):
        self.busy = self.own = self.wall = 0.0
        self.others, self.own_cores, self.reads = 0.0, 1.0, 0

    def advance(self, seconds: float):
        self.wall += seconds
        self.own += self.own_cores * seconds
        self.busy += (self.own_cores + self.others) * seconds

    def __call__(self):
        self.reads += 1
        return self.busy, self.own

    def clock(self):
        return self.wall


def test_thread_governor_follows_a_competitor_that_comes_and_goes(monkeypatch):
    import os

    from common.runtime import ThreadGovernor

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    machine, applied = FakeMachine(), []
    governor = ThreadGovernor(2, period=5.0, counters=machine, apply=lambda n: applied.append(n) or n,
                               clock=machine.clock)
    machine.own_cores = 2.0
    for _ in range(3):                               # idle: the start-up choice stands
        machine.advance(5)
        assert governor.tick() == 2
    machine.others, machine.own_cores = 1.0, 1.0     # a competitor starts after start-up
    machine.advance(5)
    assert governor.tick() == 2 and applied == []    # one look is not enough
    machine.advance(5)
    assert governor.tick() == 1 and applied == [1]   # two looks agree: the free core only
    machine.advance(5)
    assert governor.tick() == 1 and applied == [1]
    machine.others = 0.0                             # it goes away
    machine.advance(5)
    assert governor.tick() == 1
    machine.advance(5)
    assert governor.tick() == 2 and applied == [1, 2] and governor.changes == [(2, 1), (1, 2)]


def test_thread_governor_reads_the_counters_once_per_period_and_ignores_missing_proc_stat(monkeypatch):
    from common.runtime import ThreadGovernor

    machine = FakeMachine()
    governor = ThreadGovernor(2, period=5.0, counters=machine, apply=lambda n: n, clock=machine.clock)
    machine.others = 1.0
    for _ in range(10):
        machine.advance(0.1)
        governor.tick()
    assert machine.reads == 1                        # ticks within a period read only the clock
    machine.advance(4.5)
    governor.tick()
    assert machine.reads == 2 and governor._wanted == 1
    nan = ThreadGovernor(2, period=1.0, counters=lambda: (float("nan"), 0.0), apply=lambda n: 0, clock=machine.clock)
    for _ in range(3):
        machine.advance(2)
        assert nan.tick() == 2


def test_cpu_counters_count_this_process_within_the_machine():
    from common.runtime import cpu_counters

    busy0, own0 = cpu_counters()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    busy1, own1 = cpu_counters()
    assert own1 - own0 >= 0.3
    if busy0 == busy0:                               # Linux: the machine's busy seconds include ours
        assert busy1 - busy0 >= 0.8 * (own1 - own0)


@pytest.mark.parametrize("threads, local_world, governed", [("auto", "1", True), ("2", "1", False),
                                                            ("auto", "2", False)])
def test_only_auto_on_one_process_per_machine_is_governed(monkeypatch, restore_threads, threads, local_world,
                                                          governed):
    from common import runtime

    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    runtime.set_cpu_threads(threads)
    assert (runtime._governor is not None) == governed


def test_every_progress_bar_step_gives_the_governor_a_tick(monkeypatch):
    from common import runtime
    from common.progress import progress

    ticks = []
    monkeypatch.setattr(runtime, "_governor", type("G", (), {"tick": lambda self: ticks.append(1)})())
    assert list(progress(range(7), desc="x", quiet=True)) == list(range(7))
    assert len(ticks) == 7


def test_threads_flag_is_applied_and_recorded(restore_threads):
    import os

    from threadpoolctl import threadpool_info

    from common import runtime

    assert 0 <= runtime.busy_cores(0.05) <= (os.cpu_count() or 1) + 0.01
    args = _parse(["--threads", "1"])
    assert args.threads == 1 and torch.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert _parse(["--smoke"]).threads == 1          # smoke runs: one thread, whatever the load


@pytest.mark.parametrize("argv, message", [(["--threads", "0"], "positive integer"),
                                           (["--threads", "many"], "invalid"),
                                           (["--seed", "-1"], "a seed from 0 to 4,294,967,295"),
                                           (["--seed", str(2**32)], "a seed from 0 to 4,294,967,295")])
def test_bad_threads_or_seed_is_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("module", ["mnist_scratch.train", "kd_cifar10.distill", "sketch_rnn.sample",
                                    "slot_attention.mask_ceiling", "text2math.knn", "mnist_scratch.gradcheck"])
def test_every_seed_flag_takes_what_numpy_seeds_and_refuses_the_rest(module, capsys):
    """A seed of 2**32 or more reached np.random.seed and ended in a ValueError traceback; every seed flag now
    takes 0 .. 2**32 - 1 and refuses the rest in one line."""
    import importlib

    from common.cli import MAX_SEED, seed_int

    mod = importlib.import_module(module)
    parser = mod.build_parser() if hasattr(mod, "build_parser") else None
    flag = "--student-seeds" if module == "kd_cifar10.distill" else "--seed"
    if parser is not None:
        action = next(a for a in parser._actions if flag in a.option_strings)
        assert action.type is seed_int
    assert seed_int(str(MAX_SEED)) == MAX_SEED
    for bad in ("-1", str(MAX_SEED + 1)):
        with pytest.raises(SystemExit) as exit_info:
            (parser.parse_args([flag, bad]) if parser is not None else mod.main([flag, bad]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "a seed from 0 to" in err and len(err.strip().splitlines()) == 1


def test_the_largest_seed_trains(tmp_path, restore_threads):
    from mnist_scratch import train

    summary = train.main(["--smoke", "--seed", str(2**32 - 1), "--threads", "1", "--out", str(tmp_path / "r")])
    assert summary["test_acc"] > 0


def test_typed_flags_are_those_on_the_command_line_even_at_their_default_value():
    parser = make_parser("t", epochs=3, batch_size=8, lr=0.1)
    parser.add_argument("--on", dest="switch", action="store_true", default=False)
    parser.add_argument("--width", type=int, default=4)
    assert typed_flags(parser, []) == set()
    assert typed_flags(parser, ["--width", "4", "--epochs", "3", "--on"]) == {"width", "epochs", "switch"}
    parser.add_argument("-v", action="count", default=0)
    assert typed_flags(parser, ["-v", "-v", "--on"]) == {"switch"}


def test_int_in_takes_its_range_and_refuses_the_rest_in_one_line(capsys):
    import argparse

    from common.cli import OneLineParser, int_in

    parser = OneLineParser(prog="p")
    parser.add_argument("--beam", type=int_in(1, 200))
    assert parser.parse_args(["--beam", "1"]).beam == 1 and parser.parse_args(["--beam", "200"]).beam == 200
    for bad, message in (("0", "from 1 to 200, got 0"), ("201", "from 1 to 200, got 201"),
                         ("x", "invalid integer from 1 to 200 value: 'x'")):
        with pytest.raises(SystemExit):
            parser.parse_args(["--beam", bad])
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    with pytest.raises(argparse.ArgumentTypeError):
        int_in(0, 5)("-1")
