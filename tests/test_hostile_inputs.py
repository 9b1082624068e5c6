"""Hostile and careless inputs to the data layer (issue 17): data files whose pickle would run code,
a --data-root that is a file, MathQA rows of the wrong type and options built to be slow, index
tokens with thousands of digits, NaN / Infinity coordinates, and wandb on an offline machine; and the
third round's defects (issue 33, at the end): memo bombs, files of the wrong shape or type, 16-bit and
oversized images, non-finite inputs, empty sets, leftover temp files, folders that cannot be made,
torch's warnings, an --out without config.json and a damaged metrics.jsonl; a named pipe or a device
(/dev/zero) where a data file, checkpoint or run file should be; last, files too large to read whole.

Each case is one clear line (a UserError, or exit 2 and one `error:` line for a script), nothing runs,
and nothing is created. Tiny files are written here in the real formats; nothing touches the network."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import pickle
import re
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common import download, tracking
from common.checkpoint import load_checkpoint, save_checkpoint
from common.cli import make_parser, parse_args
from common.datasets import CIFAR10_NAMES, REAL_SETS, load_image_dataset
from common.errors import UserError
from common.formats import read_cifar_batch, read_cifar_meta, read_idx, read_npz, write_cifar_batch, write_idx
from common.rundir import RunDir, read_metrics
from common.runtime import usable_cores
from sketch_rnn.data import load_sketches, parse_ndjson_line
from sketch_rnn.data import read_npz as read_sketch_npz
from tests.conftest import REPO, run_script, write_mnist_layout
from text2math.data import load_mathqa, read_glove, read_mathqa_json
from text2math.program import ExecutionError, correct_values, execute, option_values

IMAGE_SETS = list(REAL_SETS)


def one_line(err: pytest.ExceptionInfo | str) -> str:
    message = err if isinstance(err, str) else str(err.value)
    assert "\n" not in message and message
    return message


def assert_script_error(done, *needles: str) -> str:
    """A script's user error: exit 2, one `error:` line on stderr naming `needles`, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


@pytest.fixture
def offline(monkeypatch):
    """Every download probe fails at once, as on a machine without network."""
    monkeypatch.setattr(download, "reachable", lambda url, timeout=None: False)


# --- 1. data files whose pickle would run code -------------------------------------------------
class RunsShell:
    """Unpickling calls os.system('touch <marker>') (pickled as posix.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TouchesPath:
    """Unpickling calls pathlib.Path.touch(marker)."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


PAYLOADS = {"os.system": RunsShell, "Path.touch": TouchesPath}


def cifar_entry(n=4, label_key=b"labels", seed=0):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"x", label_key: rng.integers(0, 10, n).tolist(), b"filenames": [b"a.png"] * n,
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}


def write_cifar10(root, evil_in=None, evil=None):
    """A tiny valid CIFAR-10 folder; `evil_in` names the file whose pickle carries `evil`: inside the
    dict ('data_batch_1', 'test_batch', 'batches.meta') or as the whole pickle ('whole:<file>')."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = {"data_batch_1": cifar_entry(), "test_batch": cifar_entry(seed=1),
             "batches.meta": {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}}
    for name, entry in files.items():
        if evil_in == name:
            entry[b"data" if name != "batches.meta" else b"label_names"] = evil
        if evil_in == f"whole:{name}":
            entry = evil
        (folder / name).write_bytes(pickle.dumps(entry))
    return folder


def write_cifar100(root, evil_in=None, evil=None):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    files = {"train": {**cifar_entry(), b"fine_labels": [0, 1, 2, 3], b"coarse_labels": [4, 1, 14, 8]},
             "test": {**cifar_entry(seed=1), b"fine_labels": [0, 1, 2, 3], b"coarse_labels": [4, 1, 14, 8]},
             "meta": {b"fine_label_names": [b"c%d" % i for i in range(100)],
                      b"coarse_label_names": [b"s%d" % i for i in range(20)]}}
    for name, entry in files.items():
        if evil_in == name:
            entry[b"extra"] = evil  # an otherwise valid file, one malicious object inside
        (folder / name).write_bytes(pickle.dumps(entry))
    return folder


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("dataset, evil_in", [
    ("cifar10", "data_batch_1"), ("cifar10", "test_batch"), ("cifar10", "batches.meta"),
    ("cifar10", "whole:data_batch_1"), ("cifar10", "whole:batches.meta"),
    ("cifar100", "train"), ("cifar100", "test"), ("cifar100", "meta"),
])
def test_a_cifar_pickle_that_would_run_code_is_refused_in_one_line(tmp_path, dataset, evil_in, payload):
    marker = tmp_path / "marker"
    writer = write_cifar10 if dataset == "cifar10" else write_cifar100
    folder = writer(tmp_path / "data", evil_in, PAYLOADS[payload](marker))
    with pytest.raises(UserError) as err:
        load_image_dataset(dataset, "real", tmp_path / "data")
    message = one_line(err)
    assert str(folder / evil_in.split(":")[-1]) in message and "refusing" in message
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.slow  # launches a script
def test_a_training_script_refuses_the_pickle_and_exits_2(tmp_path):
    marker = tmp_path / "marker"
    write_cifar10(tmp_path / "data", "batches.meta", RunsShell(marker))
    done = run_script(str(REPO / "kd_cifar10/train.py"), "--data", "real", "--data-root", str(tmp_path / "data"),
                      "--epochs", "1", "--out", str(tmp_path / "run"), timeout=120)
    assert_script_error(done, "batches.meta", "refusing")
    assert not marker.exists()


@pytest.mark.parametrize("protocol, numpy_module", [(2, "numpy.core"), (2, "numpy._core"), (4, "numpy._core"),
                                                    (5, "numpy._core")])
def test_legit_cifar_pickles_still_read(tmp_path, protocol, numpy_module):
    """Every pickle protocol, NumPy labels (scalars) and filenames; protocol 2 with NumPy 1's module
    name numpy.core.multiarray, as in the official files, as well as NumPy 2's numpy._core."""
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(tmp_path / "written", images, [1, 2, 3])
    entry = pickle.loads((tmp_path / "written").read_bytes())
    entry[b"labels"] = [np.int64(v) for v in entry[b"labels"]]
    entry[b"filenames"] = [b"a.png", b"b.png", b"c.png"]
    raw = pickle.dumps(entry, protocol=protocol)
    if numpy_module == "numpy.core":  # protocol 2 names globals in text lines: rename in place
        assert b"cnumpy._core.multiarray\n" in raw
        raw = raw.replace(b"cnumpy._core.", b"cnumpy.core.")
    (tmp_path / "data_batch_1").write_bytes(raw)
    back, labels = read_cifar_batch(tmp_path / "data_batch_1")
    np.testing.assert_array_equal(back, images)
    np.testing.assert_array_equal(labels, [1, 2, 3])
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog"]}, protocol=protocol))
    assert read_cifar_meta(tmp_path / "batches.meta") == ["cat", "dog"]


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_an_npz_whose_object_array_would_run_code_is_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    strokes = np.empty(2, dtype=object)
    strokes[0] = np.array([[1, 2, 0], [3, 4, 1]], dtype=np.int16)
    strokes[1] = PAYLOADS[payload](marker)
    folder = tmp_path / "quickdraw" / "sketchrnn"
    folder.mkdir(parents=True)
    np.savez(folder / "cat.npz", train=strokes, valid=strokes[:1], test=strokes[:1])
    with pytest.raises(UserError) as err:
        read_sketch_npz(folder / "cat.npz", 10)
    assert str(folder / "cat.npz") in one_line(err) and "refusing" in str(err.value)
    with pytest.raises(UserError, match="refusing"):
        load_sketches("real", tmp_path, ["cat"], 10)
    assert not marker.exists()


def test_an_npz_as_sketch_rnn_wrote_it_reads(tmp_path):
    """sketch-rnn's files came from Python 2 / NumPy 1: object arrays pickled with protocol 2, naming
    numpy.core.multiarray. Written here byte for byte that way (header, then the pickle) and read."""
    import io
    import zipfile

    strokes = np.empty(2, dtype=object)
    strokes[0] = np.array([[1, 2, 0], [3, 4, 1]], dtype=np.int16)
    strokes[1] = np.array([[5, 6, 1], [7, 8, 0], [9, 9, 1]], dtype=np.int16)
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(strokes))
    member.write(pickle.dumps(strokes, protocol=2).replace(b"cnumpy._core.", b"cnumpy.core."))
    with zipfile.ZipFile(tmp_path / "cat.npz", "w") as archive:
        for key in ("train", "valid", "test"):
            archive.writestr(f"{key}.npy", member.getvalue())
    drawings = read_sketch_npz(tmp_path / "cat.npz", 10)
    assert len(drawings) == 6 and drawings[1].shape == (3, 3) and drawings[1].dtype == np.float32
    np.testing.assert_array_equal(drawings[3], [[5, 6, 1], [7, 8, 0], [9, 9, 1]])


def test_npz_numeric_arrays_read_and_non_finite_strokes_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(6).reshape(2, 3), b=np.ones(2, np.float32))
    arrays = read_npz(tmp_path / "plain.npz")
    np.testing.assert_array_equal(arrays["a"], np.arange(6).reshape(2, 3))
    assert arrays["b"].dtype == np.float32 and sorted(arrays) == ["a", "b"]
    strokes = np.empty(3, dtype=object)
    for i in range(3):
        strokes[i] = np.array([[1, 2, 0], [3, np.nan if i == 2 else 4, 1]])
    np.savez(tmp_path / "nan.npz", train=strokes)
    with pytest.raises(UserError, match="nan.npz drawing 2: a coordinate is NaN or infinite"):
        read_sketch_npz(tmp_path / "nan.npz", 10)


# --- 5. a --data-root that is a file; --data real creates nothing --------------------------------
def _loaders(root, mode):
    """Every real loader on `root` with `mode`: the four image sets, Quick, Draw! and MathQA."""
    yield from ((name, lambda name=name: load_image_dataset(name, mode, root)) for name in IMAGE_SETS)
    yield "quickdraw", lambda: load_sketches(mode, root, ["cat"], 10)
    yield "mathqa", lambda: load_mathqa(mode, root, seed=0)


@pytest.mark.parametrize("mode", ["auto", "real"])
def test_a_data_root_that_is_a_file_is_one_line_for_every_loader(tmp_path, mode, offline):
    afile = tmp_path / "data.txt"
    afile.write_text("not a folder")
    for name, load in _loaders(afile, mode):
        with pytest.raises(UserError) as err:
            load()
        assert one_line(err).startswith(f"{afile} is a file, not a folder"), name
        assert "point --data-root at a folder" in str(err.value)
    assert afile.read_text() == "not a folder"


def test_data_real_with_a_missing_root_creates_nothing(tmp_path, offline):
    root = tmp_path / "missing" / "data"
    for name, load in _loaders(root, "real"):
        with pytest.raises(UserError, match="not found under") as err:
            load()
        one_line(err)
        assert not (tmp_path / "missing").exists(), name


@pytest.mark.slow
@pytest.mark.slow  # launches a script
@pytest.mark.parametrize("script", ["mnist_scratch/train.py", "fashion_mnist_ffn/train.py"])
def test_a_script_with_a_file_as_data_root_exits_2(tmp_path, script):
    afile = tmp_path / "data.txt"
    afile.write_text("x")
    done = run_script(str(REPO / script), "--data-root", str(afile), "--epochs", "1", "--out",
                      str(tmp_path / "run"), timeout=120)
    assert_script_error(done, f"{afile} is a file")


# --- 8. MathQA rows of the wrong type; options built to be slow -----------------------------------
GOOD_ROW = {"Problem": "what is 2 + 3 ?", "Rationale": "", "options": "a ) 5 , b ) 6 , c ) 7 , d ) 8 , e ) 9",
            "correct": "a", "annotated_formula": "add(n0,n1)", "linear_formula": "add(n0,n1)|",
            "category": "general"}


@pytest.mark.parametrize("content, needles", [
    ([{**GOOD_ROW, "linear_formula": None}], ["row 0", "linear_formula is null"]),
    ([GOOD_ROW, "just a string"], ["row 1", "is a str"]),
    ([{**GOOD_ROW, "options": None}], ["row 0", "options is null"]),
    ([{**GOOD_ROW, "options": ["a ) 1", 2]}], ["row 0", "options is a list"]),
    ([{**GOOD_ROW, "Problem": 12, "correct": None}], ["row 0", "Problem is a int", "correct is null"]),
    ([GOOD_ROW, None], ["row 1", "is a NoneType"]),
    ({"rows": [GOOD_ROW]}, ["holds no list of problems (it holds a dict)"]),
    ("a string", ["holds no list of problems (it holds a str)"]),
    (3, ["holds no list of problems (it holds a int)"]),
])
def test_mathqa_fields_of_the_wrong_type_are_one_line_naming_file_and_row(tmp_path, content, needles):
    path = tmp_path / "MathQA" / "dev.json"
    path.parent.mkdir()
    path.write_text(json.dumps(content))
    for read in (lambda: read_mathqa_json(path), lambda: load_mathqa("real", tmp_path, seed=0)):
        with pytest.raises(UserError) as err:
            read()
        message = one_line(err)
        assert message.startswith(str(path)) and all(needle in message for needle in needles), message


@pytest.mark.slow
@pytest.mark.slow  # launches a script
def test_gold_check_on_bad_rows_and_huge_indices_shows_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([GOOD_ROW, {**GOOD_ROW, "options": None}]))
    assert_script_error(run_script(str(REPO / "text2math/gold_check.py"), "--file", str(bad)),
                        f"{bad} row 1", "options is null")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps([GOOD_ROW, {**GOOD_ROW, "linear_formula": f"add(n{'9' * 5000},#{'9' * 5000})|"}]))
    done = run_script(str(REPO / "text2math/gold_check.py"), "--file", str(huge), "--tolerance", "0.01")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "50.00% of 2 gold programs" in done.stdout and "execution_error 1" in done.stdout


SLOW_OPTIONS = {
    "24 KB of digits": "1" * 24_000, "16,000 commas": "1," * 16_000, "24 KB of spaces": " " * 24_000 + "x",
    "a minus and spaces": "-" + " " * 24_000, "digits then a letter": "7" * 24_000 + "x / 3",
    "a fraction among digits": "1" * 12_000 + " 3 / 4", "space-separated ones": "1 " * 12_000,
    "decimal runs": "1." * 12_000, "square roots": "√ " * 12_000, "a whole options string": "a ) " + "9" * 24_000,
}


@pytest.mark.parametrize("name", list(SLOW_OPTIONS))
def test_option_values_takes_linear_time(name):
    text = SLOW_OPTIONS[name]
    start = time.perf_counter()
    values = option_values(text)
    correct_values(f"a ) {text} , b ) 2", "a")
    assert time.perf_counter() - start < 2.0
    assert all(np.isfinite(values))  # a number too large for a float is no value ([]), never inf


def test_option_values_keep_their_meaning():
    assert option_values("1 " * 6_000 + "3 / 4") == [1.75]   # '1 3 / 4', the first mixed fraction
    assert option_values("1" * 12_000 + " 3 / 4") == []      # 111...1 + 3/4 is not a finite float
    assert option_values("1 2 / 4") == [1.5] and option_values("- 3 : 4") == [-0.75]
    assert option_values("1," * 16_000) == [] and option_values("9" * 400) == []


# --- 9. NaN / Infinity coordinates in Quick, Draw! ndjson -----------------------------------------
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400", '"nan"', str(10 ** 400), "1e308"])
@pytest.mark.parametrize("kind", ["simplified", "raw"])
def test_non_finite_coordinates_are_rejected_at_load_time(tmp_path, bad, kind):
    xs = f"[0, {bad}, 40]" if bad != "1e308" else "[-1e308, 1e308, 0]"
    stroke = f"[{xs}, [0, 5, 9]" + (", [0, 1, 2]]" if kind == "raw" else "]")
    line = f'{{"word": "cat", "drawing": [{stroke}]}}'
    with pytest.raises(UserError) as err:
        parse_ndjson_line(line, "cat.ndjson:1")
    assert one_line(err).startswith("cat.ndjson:1: ")
    folder = tmp_path / "quickdraw" / kind
    folder.mkdir(parents=True)
    good = '{"word": "cat", "drawing": [[[0, 10, 20], [0, 5, 9]' + (", [0, 1, 2]]]}" if kind == "raw" else "]]}")
    (folder / "cat.ndjson").write_text("\n".join([good, good, line, good]) + "\n")
    with pytest.raises(UserError, match=f"cat.ndjson:3: .*{'NaN or infinite' if bad != str(10 ** 400) else ''}"):
        load_sketches("real", tmp_path, ["cat"], 10)


@pytest.mark.parametrize("damage", ["binary", "directory"])
def test_an_unreadable_ndjson_or_glove_file_is_one_line(tmp_path, damage):
    ndjson = tmp_path / "quickdraw" / "raw" / "cat.ndjson"
    glove = tmp_path / "glove.6B.50d.txt"
    ndjson.parent.mkdir(parents=True)
    for path in (ndjson, glove):
        path.mkdir() if damage == "directory" else path.write_bytes(b"\xff\xfe\x00garbage\n" * 10)
    with pytest.raises(UserError) as err:
        load_sketches("real", tmp_path, ["cat"], 10)
    assert str(ndjson) in one_line(err)
    with pytest.raises(UserError) as err:
        read_glove(glove)
    assert str(glove) in one_line(err)


# --- 10. index tokens with thousands of digits ---------------------------------------------------
@pytest.mark.parametrize("formula, message", [
    (f"add(n{'9' * 5000},n0)", "but the problem has 1 numbers"), (f"add(n0,#{'9' * 5000})", "not computed yet"),
    (f"add(n{'0' * 4999}1,n0)", "but the problem has 1 numbers"), ("add(n²,n0)", "unknown argument n²"),
    (f"add(const_{'9' * 5000},n0)", "is not finite"),
])
def test_huge_index_tokens_raise_the_executors_own_error(formula, message):
    with pytest.raises(ExecutionError, match=message) as err:
        execute(formula, [1.0])
    assert len(str(err.value)) < 200


# --- 11. wandb with a key on an offline machine ---------------------------------------------------
def _parse(argv):
    parser = make_parser("demo", epochs=1, batch_size=8, lr=0.1)
    return parse_args(parser, argv, assignment="demo", run_name=lambda a: "run")


@pytest.fixture
def wandb_key(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    probes = []

    def probe(answer):
        monkeypatch.setattr(tracking, "reachable", lambda url, timeout=None: probes.append(url) or answer)
        return probes
    return probe


def test_the_default_falls_back_to_off_in_one_line_when_wandbs_server_is_unreachable(wandb_key, capsys):
    probes = wandb_key(False)
    start = time.perf_counter()
    assert _parse([]).wandb == "off"
    assert time.perf_counter() - start < 5 and probes == ["https://api.wandb.ai"]
    (notice,) = capsys.readouterr().out.strip().splitlines()
    assert notice.startswith("note: wandb has a key here but api.wandb.ai cannot be reached") and "off" in notice
    wandb_key(True)
    assert _parse([]).wandb == "online"


def test_explicit_online_offline_is_one_line_and_other_modes_are_not_probed(wandb_key, tmp_path):
    probes = wandb_key(False)
    with pytest.raises(UserError) as err:
        _parse(["--wandb", "online"])
    assert one_line(err).startswith("--wandb online but api.wandb.ai cannot be reached")
    with pytest.raises(UserError, match="--wandb offline"):
        tracking.make_tracker("online", "demo", "run", {}, tmp_path)
    assert len(probes) == 2
    assert _parse(["--wandb", "offline"]).wandb == "offline" and _parse(["--wandb", "off"]).wandb == "off"
    assert _parse(["--smoke"]).wandb == "off" and len(probes) == 2


# === issue 33: the 16 defects of the third round of hostile probes =================================
# D1 --threads without bound; D2 memo bombs; D3 IDX shapes; D4 CIFAR field types; D5 16-bit images; D6 CLEVRTex
# metadata and pixel bombs; D7 non-finite inputs; D8 empty training sets; D9 temp files; D10 folders other than
# --out; D11 torch's warning and advice; D12 unreadable class folders; D14 absurd sizes; D15 an --out without
# config.json; D16 a damaged metrics.jsonl. (D13, torchrun in dfad_kd, is tested with the torchrun scripts.)
SCRIPT_MAINS = {  # every entry point with --threads -> extra flags it needs to get to its threads
    **{f"{p.parent.name}/train.py": [] for p in REPO.glob("*/train.py")},
    **{f"mnist_scratch/{name}.py": [] for name in ("xor", "approximation", "gradient_flow", "activations")},
    "dfad_kd/train_teacher.py": [], "kd_cifar10/distill.py": [], "slot_diffusion/train_vae.py": [],
    "fashion_mnist_ffn/sweep.py": [],
    "text2math/evaluate.py": ["--checkpoint", "x.pt", "--eval-file", "x.json"],
    "text2math/rerank.py": ["--checkpoint", "x.pt"],
}


class ThreadsSet(Exception):
    """Raised by the patched thread setter: the script got as far as applying --threads."""


def test_threads_above_the_cores_are_capped_in_one_line(capsys):
    """D1: --threads 10000 started ~19,000 threads; it is capped at the usable cores, with one line."""
    assert _parse(["--threads", "10000"]).threads == usable_cores()
    (note,) = capsys.readouterr().out.strip().splitlines()
    assert note.startswith("note: --threads 10000 is more than") and f"using {usable_cores()}" in note
    assert _parse(["--threads", "1"]).threads == 1 and capsys.readouterr().out == ""


@pytest.mark.parametrize("script", sorted(SCRIPT_MAINS))
def test_every_script_caps_threads(script, monkeypatch, capsys):
    """D1 in every script: the count that reaches torch and BLAS is the capped one."""
    from common import runtime

    applied = []

    def record(threads):
        applied.append(threads)
        raise ThreadsSet
    monkeypatch.setattr(runtime, "_apply_threads", record)
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    with pytest.raises(ThreadsSet):
        module.main(["--threads", "10000", *SCRIPT_MAINS[script]])
    assert applied == [usable_cores()], script
    assert "note: --threads 10000 is more than" in capsys.readouterr().out


def nested_list_bomb(width: int = 64, depth: int = 6, leaf=0) -> list:
    """A list of `width` references to one list of `width` references ... : width ** depth leaves once
    converted (64 ** 6 = 6.9e10 bytes as uint8), a few KB pickled (pickle's memo stores each level once)."""
    level = [leaf] * width
    for _ in range(depth - 1):
        level = [level] * width
    return level


def test_a_cifar_memo_bomb_is_refused_before_it_expands(tmp_path):
    """D2: a 'data' that is a nested list reusing one sub-list at every level grew kd_cifar10 to 22.9 GB."""
    folder = write_cifar10(tmp_path / "data", "data_batch_1", nested_list_bomb())
    assert (folder / "data_batch_1").stat().st_size < 20_000      # small on disk: checked before it expands
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_image_dataset("cifar10", "real", tmp_path / "data")
    message = one_line(err)
    assert str(folder / "data_batch_1") in message and "'data' is a list, not an (N, 3072) uint8 array" in message
    entry = cifar_entry()
    entry[b"labels"] = nested_list_bomb(4, 6)                     # the labels, too
    (folder / "data_batch_1").write_bytes(pickle.dumps(entry))
    with pytest.raises(UserError, match="the labels are not a list of integers"):
        load_image_dataset("cifar10", "real", tmp_path / "data")
    assert time.perf_counter() - start < 5


def _write_npz_drawings(path, drawings):
    strokes = np.empty(len(drawings), dtype=object)
    for i, drawing in enumerate(drawings):
        strokes[i] = drawing
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train=strokes, valid=strokes[:1], test=strokes[:1])
    return path


def test_a_sketch_npz_memo_bomb_is_refused_before_it_expands(tmp_path, monkeypatch):
    """D2: the same trick in a sketch-rnn .npz object array ended in a MemoryError traceback; a drawing must be
    an (L, 3) numeric array, and the points read are bounded."""
    from sketch_rnn import data as sketch_data

    good = np.array([[1, 2, 0], [3, 4, 1]], np.int16)
    path = _write_npz_drawings(tmp_path / "quickdraw" / "sketchrnn" / "cat.npz", [good, nested_list_bomb()])
    assert path.stat().st_size < 20_000
    with pytest.raises(UserError) as err:
        read_sketch_npz(path, 10)
    assert one_line(err).startswith(f"{path} drawing 1: a list, not an (L, 3) numeric stroke-3 array")
    for drawing in ([[1, 2, 0]], np.array(["a", "b", "c"]).reshape(1, 3), np.zeros((2, 3, 1))):
        with pytest.raises(UserError, match="not an .L, 3. numeric stroke-3 array"):
            read_sketch_npz(_write_npz_drawings(tmp_path / "x.npz", [good, drawing]), 10)
    assert len(read_sketch_npz(_write_npz_drawings(tmp_path / "ok.npz", [good] * 2), 10)) == 4
    monkeypatch.setattr(sketch_data, "MAX_POINTS", 50)
    with pytest.raises(UserError, match="drawing 1: 51 points"):
        read_sketch_npz(_write_npz_drawings(tmp_path / "long.npz", [good, np.zeros((51, 3), np.int16)]), 10)
    monkeypatch.setattr(sketch_data, "MAX_TOTAL_POINTS", 5)        # one array referenced again and again
    with pytest.raises(UserError, match="drawing 2: 2 points .6 so far"):
        read_sketch_npz(_write_npz_drawings(tmp_path / "many.npz", [good] * 4), 10)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("images, needle", [
    (np.zeros((0, 28, 28), np.uint8), "(0, 28, 28)"), (np.zeros((10, 2, 2), np.uint8), "(10, 2, 2)"),
    (np.zeros((10, 5, 7), np.uint8), "(10, 5, 7)"), (np.zeros((10, 784), np.uint8), "(10, 784)"),
    (np.zeros((10, 28, 28), np.float32), "float32 images"),
])
def test_idx_images_of_another_shape_or_none_are_one_line(tmp_path, name, images, needle):
    """D3: 0 images, or 2x2 / 5x7 images, gave a ValueError traceback in fashion_mnist_ffn and mnist_scratch."""
    folder = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}[name]
    raw = write_mnist_layout(tmp_path / "data", n_train=10, folder=folder)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(len(images), np.uint8))
    with pytest.raises(UserError) as err:
        load_image_dataset(name, "real", tmp_path / "data")
    message = one_line(err)
    assert message.startswith(str(raw / "train-images-idx3-ubyte")) and needle in message, message


@pytest.mark.parametrize("folder, flags", [("mnist_scratch", []), ("fashion_mnist_ffn", [])])
def test_a_script_on_an_empty_idx_set_is_a_user_error(tmp_path, folder, flags):
    """D3 / D8 through the scripts: exit 2 (a UserError), never a traceback or the divergence code."""
    raw = write_mnist_layout(tmp_path / "data", folder="FashionMNIST/raw" if folder == "fashion_mnist_ffn"
                             else "MNIST/raw")
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    main = importlib.import_module(f"{folder}.train").main
    with pytest.raises(UserError, match="expected N >= 1 unsigned-byte images of 28x28") as info:
        main(["--data", "real", "--data-root", str(tmp_path / "data"), "--epochs", "1", "--out",
              str(tmp_path / "run"), *flags])
    assert type(info.value) is UserError and not (tmp_path / "run").exists()


def test_dfad_kd_teacher_with_no_training_images_exits_2_not_3(tmp_path):
    """D8: train_teacher.py with 0 MNIST training images stopped as a divergence (exit 3)."""
    from dfad_kd import train_teacher

    raw = write_mnist_layout(tmp_path / "data")
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    with pytest.raises(UserError) as info:
        train_teacher.main(["--dataset", "mnist", "--data", "real", "--data-root", str(tmp_path / "data"),
                            "--epochs", "1", "--out", str(tmp_path / "run")])
    assert info.value.exit_code == 2 and "(0, 28, 28)" in one_line(info)


def test_text2math_with_every_training_program_dropped_exits_2_not_3(tmp_path):
    """D8: when every training row is dropped (here: no program fits --max-program-len 1), training on nothing
    stopped as a divergence (exit 3); it is a data error."""
    from text2math import train as text2math_train

    with pytest.raises(UserError) as info:
        text2math_train.main(["--smoke", "--max-program-len", "1", "--out", str(tmp_path / "run")])
    assert info.value.exit_code == 2 and "training programs were dropped" in one_line(info)
    assert not (tmp_path / "run").exists()


def cifar_entry_with(field: bytes, value):
    entry = cifar_entry()
    entry[field] = value
    return entry


CIFAR_FIELDS = {  # D4: what each wrongly typed field is, and the words of its one line
    "data as bytes": ("data_batch_1", b"data", b"\x00" * 3072 * 4, "'data' is a bytes"),
    "labels None": ("data_batch_1", b"labels", None, "the labels are not a list of integers"),
    "labels a str": ("test_batch", b"labels", "0123", "the labels are not a list of integers"),
    "a label of 10**30": ("data_batch_1", b"labels", [10 ** 30, 1, 2, 3], "a label is out of range"),
    "pixel value 300": ("data_batch_1", b"data", np.full((4, 3072), 300, np.int16), "'data' is a int16 array"),
    "pixels as a list": ("data_batch_1", b"data", [[300] * 3072] * 4, "'data' is a list"),
    "label_names a str": ("batches.meta", b"label_names", "airplane", "'label_names' is not a list of class names"),
    "label_names an int": ("batches.meta", b"label_names", 10, "'label_names' is not a list of class names"),
    "label_names of ints": ("batches.meta", b"label_names", list(range(10)), "is not a list of class names"),
}


@pytest.mark.parametrize("case", list(CIFAR_FIELDS))
def test_cifar_fields_of_the_wrong_type_are_one_line_in_kd_cifar10_and_resnet_norms(tmp_path, case):
    """D4: data as bytes, labels None, a pixel value of 300, label_names a str or an int crashed both readers."""
    from kd_cifar10.data import load_dataset
    from resnet_norms.data import load_data

    name, field, value, needle = CIFAR_FIELDS[case]
    folder = write_cifar10(tmp_path / "data")
    entry = pickle.loads((folder / name).read_bytes())
    entry[field] = value
    (folder / name).write_bytes(pickle.dumps(entry))
    for load in (lambda: load_dataset("cifar10", "real", tmp_path / "data"),
                 lambda: load_data("cifar10", "real", tmp_path / "data", image_size=32)):
        with pytest.raises(UserError) as err:
            load()
        assert str(folder / name) in one_line(err) and needle in str(err.value), str(err.value)


def _grey16_png(path, value: int, size=(24, 20)):
    """A 16-bit greyscale PNG (Pillow writes uint16 arrays as bit depth 16) of one value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit grey pixels, with no pixel data (a few bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b""))
            + _png_chunk(b"IEND", b""))


def test_a_16_bit_png_in_a_caltech_class_is_scaled_not_white(tmp_path):
    """D5: a 16-bit PNG decoded as pure white, silently; 30000 of 65535 is grey 117 of 255."""
    from resnet_norms import data as rdata

    root = tmp_path / "caltech101" / "101_ObjectCategories"
    for i in range(8):
        _grey16_png(root / "emu" / f"{i}.png", 30000)
        Image.new("RGB", (24, 20), (200, 10, 10)).save((root / "ibis").mkdir(parents=True, exist_ok=True)
                                                       or root / "ibis" / f"{i}.png")
    assert np.asarray(rdata.decode_image(root / "emu" / "0.png", 8)).mean() == pytest.approx(117, abs=1)
    found = rdata.load_folder_set(root, "caltech101", size=8, split=(0.5, 0.25, 0.25), seed=0,
                                  cache_dir=tmp_path / "cache")
    images, labels = found["splits"]["train"]
    assert images[labels == 0].mean() == pytest.approx(117, abs=1) and not found["skipped"]


def _clevrtex_scene(root, index=0, image=None, objects=3, mask=None):
    """One CLEVRTex scene in the released layout: <n>/CLEVRTEX_full_NNNNNN.png, _flat.png and .json."""
    sub = root / "clevrtex_full" / str(index // 3)
    sub.mkdir(parents=True, exist_ok=True)
    stem = sub / f"CLEVRTEX_full_{index:06d}"
    if image is None:
        Image.new("RGB", (40, 30), (30, 60, 90)).save(f"{stem}.png")
    elif isinstance(image, bytes):
        Path(f"{stem}.png").write_bytes(image)
    else:
        image(Path(f"{stem}.png"))
    if mask is None:
        labels = np.zeros((30, 40), np.uint8)
        labels[5:10, 5:20] = 1
        Image.fromarray(labels, "L").save(f"{stem}_flat.png")
    else:
        Path(f"{stem}_flat.png").write_bytes(mask)
    stem.with_suffix(".json").write_text(json.dumps({"image_index": index, "objects": objects}
                                                   if objects != "missing" else {"image_index": index}))
    return Path(f"{stem}.png")


def test_a_16_bit_clevrtex_image_is_scaled_not_white(tmp_path):
    """D5: a 16-bit CLEVRTex render decoded as pure white."""
    from slot_attention.data import read_clevrtex_scene

    path = _clevrtex_scene(tmp_path, image=lambda p: _grey16_png(p, 30000, (40, 30)), objects=[{}, {}])
    image, mask = read_clevrtex_scene(path, 16)
    assert image.mean() == pytest.approx(117, abs=1) and mask.max() == 1


@pytest.mark.parametrize("objects, needle", [(None, "'objects' is null"), (3, "'objects' is a int"),
                                             ("cube", "'objects' is a str")])
def test_clevrtex_objects_that_are_no_list_are_one_line(tmp_path, objects, needle):
    """D6: a scene .json whose `objects` is null or a number gave a TypeError (slot_attention, slot_diffusion)."""
    from slot_attention.data import read_clevrtex_scene
    from slot_diffusion.data import load_scenes

    path = _clevrtex_scene(tmp_path / "data", objects=objects)
    for index in (1, 2):
        _clevrtex_scene(tmp_path / "data", index, objects=[{}])
    with pytest.raises(UserError) as err:
        read_clevrtex_scene(path, 16)
    assert one_line(err).startswith(str(path.with_suffix(".json"))) and needle in str(err.value)
    with pytest.raises(UserError, match=needle):
        load_scenes("real", tmp_path / "data", kind="flat", image_size=16, n_train=2, n_val=1, subsample=None,
                    seed=0)
    _clevrtex_scene(tmp_path / "ok", objects="missing")              # no objects key: no bound to check
    assert read_clevrtex_scene(tmp_path / "ok" / "clevrtex_full" / "0" / "CLEVRTEX_full_000000.png", 8)[1].max() == 1


@pytest.mark.parametrize("which", ["image", "mask"])
def test_a_clevrtex_png_over_pillows_bomb_limit_is_one_line(tmp_path, which):
    """D6: a PNG over 178 Mpx gave PIL's DecompressionBombError traceback; the file here is 60 bytes."""
    from slot_attention.data import read_clevrtex_scene

    bomb = _png_claiming(20_000, 20_000)
    assert len(bomb) < 100
    path = _clevrtex_scene(tmp_path, image=bomb if which == "image" else None,
                           mask=bomb if which == "mask" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # nor Pillow's warning
        with pytest.raises(UserError) as err:
            read_clevrtex_scene(path, 16)
    assert "above the" in one_line(err) and (str(path) if which == "image" else "_flat.png") in str(err.value)


def test_a_glove_file_with_nan_is_corrupt_input_naming_file_and_line(tmp_path):
    """D7: NaN in a GloVe file ended as a divergence (exit 3, "lower --lr")."""
    glove = tmp_path / "glove.6B.50d.txt"
    for bad in ("nan", "inf", "-Infinity", "1e50"):
        glove.write_text(f"the 0.1 0.2 0.3\ncat 0.4 {bad} 0.6\n")
        with pytest.raises(UserError) as err:
            read_glove(glove)
        assert one_line(err).startswith(f"{glove} line 2 ('cat') holds a NaN or infinite value")
        assert err.value.exit_code == 2
    assert read_glove(glove, ["the"])["the"].tolist() == pytest.approx([0.1, 0.2, 0.3])   # a line not read


def _nan_weights(model: torch.nn.Module) -> dict:
    weights = model.state_dict()
    next(v for v in weights.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    return weights


def test_a_teacher_with_nan_weights_is_corrupt_input_naming_the_file(tmp_path):
    """D7: NaN weights in a teacher ended as a divergence (exit 3); dfad_kd's and kd_cifar10's teacher loaders."""
    from dfad_kd.model import LeNet5, LeNet5Config, load_teacher, model_config_dict
    from kd_cifar10.distill import load_teacher as kd_load_teacher
    from kd_cifar10.model import build_model, model_config

    lenet = LeNet5(LeNet5Config())
    lenet.family = "lenet5"
    save_checkpoint(tmp_path / "dfad.pt", {"model_config": model_config_dict(lenet, (0.5,), (0.5,)),
                                           "model": _nan_weights(lenet)})
    with pytest.raises(UserError) as err:
        load_teacher(tmp_path / "dfad.pt")
    assert one_line(err).startswith(f"{tmp_path / 'dfad.pt'}: the weights hold NaN or infinite values")
    cnn = build_model("cnn", layers=(1, 1, 1, 1), width=4)
    save_checkpoint(tmp_path / "kd.pt", {"model_config": model_config(cnn), "model": _nan_weights(cnn)})
    data = argparse.Namespace(shape=(3, 32, 32), classes=list(range(10)))
    with pytest.raises(UserError, match="kd.pt: the weights hold NaN or infinite values"):
        kd_load_teacher(tmp_path / "kd.pt", data, "cpu")


def test_a_published_resnet_with_nan_weights_or_a_foreign_pickle_is_one_line(tmp_path):
    """D7 and D11 for the published CIFAR ResNets (common.pretrained, used by dfad_kd, kd_cifar10, resnet_norms)."""
    from common.pretrained import read_published_resnet
    from dfad_kd.model import load_teacher

    weights = {"module.conv1.weight": torch.full((16, 3, 3, 3), float("nan")), "module.linear.bias": torch.zeros(10)}
    torch.save({"state_dict": weights, "best_prec1": 91.7}, tmp_path / "resnet20.th")
    for read in (read_published_resnet, load_teacher):
        with pytest.raises(UserError) as err:
            read(tmp_path / "resnet20.th")
        assert one_line(err).startswith(f"{tmp_path / 'resnet20.th'}: the weights hold NaN or infinite values")
    torch.save({"state_dict": {"w": Evil()}}, tmp_path / "evil.th")
    with pytest.raises(UserError) as err:
        read_published_resnet(tmp_path / "evil.th")
    assert one_line(err).startswith(f"refused checkpoint {tmp_path / 'evil.th'}: it holds posix.system")
    assert "weights_only" not in str(err.value) and str(err.value).endswith("fetch the file again")


def test_nan_in_a_float_idx_file_is_corrupt_input(tmp_path):
    """D7: NaN in a float IDX file ended as a divergence; the file is named."""
    write_idx(tmp_path / "x-idx3-ubyte", np.array([[0.5, np.nan]], np.float32))
    with pytest.raises(UserError) as err:
        read_idx(tmp_path / "x-idx3-ubyte")
    assert one_line(err).startswith(f"corrupt IDX file {tmp_path / 'x-idx3-ubyte'}: it holds NaN or infinite")


def test_every_temp_file_a_killed_atomic_write_leaves_is_removed_at_the_next_start(tmp_path):
    """D9: .best.pt.*.tmp and .recognizer.pt.*.tmp survived a kill, even after --resume."""
    from tests.test_checkpoint_and_rundir import _args

    run = RunDir(_args(tmp_path / "r"), data_source="g")
    run.save_checkpoint({"epoch": 1, "model": {}})
    leftovers = [".best.pt.k2j3h4.tmp", ".recognizer.pt.abc_12.tmp", ".checkpoint.pt.x1.tmp",
                 ".config.json.q9.tmp", ".metrics.jsonl.zz.tmp"]
    for name in leftovers:
        (tmp_path / "r" / name).write_bytes(b"half a file")
    (tmp_path / "r" / "notes.tmp").write_text("the user's")         # not a temp file of ours
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    resumed.resume_state()
    resumed.log({"epoch": 2})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".lock", "checkpoint.pt", "config.json",
                                                                 "metrics.jsonl", "notes.tmp"]


def test_a_killed_best_pt_write_leaves_nothing_after_resume(tmp_path, monkeypatch):
    """D9 through a script that writes best.pt (text2math): a kill inside that write, then --resume."""
    import shutil

    from text2math import train as text2math_train

    out = tmp_path / "run"
    real_replace = os.replace

    def killed_in_best(src, dst):
        if ".best.pt." in str(src):   # a SIGKILL here leaves the temp file (no clean-up runs): copied to stay
            shutil.copy(src, str(src).replace(".tmp", "_killed.tmp"))
            raise KeyboardInterrupt
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", killed_in_best)
    with pytest.raises(KeyboardInterrupt):
        text2math_train.main(["--smoke", "--epochs", "2", "--out", str(out)])
    monkeypatch.undo()
    assert list(out.glob(".best.pt.*.tmp"))
    text2math_train.main(["--smoke", "--epochs", "2", "--resume", "--out", str(out)])
    assert not list(out.glob(".*.tmp"))


def test_reproduce_with_a_runs_dir_that_cannot_be_made_is_one_line(tmp_path):
    """D10: reproduce.py --runs-dir /proc/x, or a file as --runs-dir, gave a traceback."""
    import reproduce

    (tmp_path / "afile").write_text("x")
    for runs_dir in ("/proc/x", str(tmp_path / "afile"), str(tmp_path / "afile" / "runs")):
        with pytest.raises(UserError, match="--runs-dir") as err:
            reproduce.main(["mnist_scratch", "--smoke", "--runs-dir", runs_dir, "--reports-dir",
                            str(tmp_path / "reports")])
        one_line(err)
    assert (tmp_path / "afile").read_text() == "x"


def _two_caltech_classes(tmp_path, per_class=8):
    root = tmp_path / "caltech101" / "101_ObjectCategories"
    for name, colour in (("emu", (200, 10, 10)), ("ibis", (10, 10, 200))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (24, 20), colour).save(root / name / f"{i}.jpg")
    return root


def test_a_resnet_norms_cache_dir_that_cannot_be_made_is_one_line(tmp_path):
    """D10: --cache-dir /proc/x, or a file as --cache-dir, gave a traceback."""
    from resnet_norms.data import load_data

    _two_caltech_classes(tmp_path)
    (tmp_path / "afile").write_text("x")
    for cache in (Path("/proc/x"), tmp_path / "afile", tmp_path / "afile" / "cache"):
        with pytest.raises(UserError, match="--cache-dir") as err:
            load_data("caltech101", "real", tmp_path, image_size=8, cache_dir=cache)
        one_line(err)
    assert (tmp_path / "afile").read_text() == "x"


def test_a_resnet_norms_cache_whose_arrays_do_not_fit_its_files_is_rebuilt(tmp_path):
    """D10: a cache whose arrays do not match its file list gave an IndexError; it is rebuilt like a damaged one."""
    from resnet_norms.data import load_data

    _two_caltech_classes(tmp_path)
    first = load_data("caltech101", "real", tmp_path, image_size=8, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.pt")
    state = torch.load(cache, weights_only=True)
    for spoiled in ({**state, "images": state["images"][:3]}, {**state, "keep": state["keep"][:5]},
                    {**state, "images": state["images"].float()}, {**state, "keep": torch.ones(40, dtype=torch.bool)}):
        torch.save(spoiled, cache)
        again = load_data("caltech101", "real", tmp_path, image_size=8, cache_dir=tmp_path / "cache")
        torch.testing.assert_close(again.data.x_train, first.data.x_train)


def _raw_pickle_checkpoint(path):
    with open(path, "wb") as handle:
        pickle.dump({"epoch": 1, "model": {}}, handle, protocol=4)


class Evil:
    def __reduce__(self):
        return os.system, ("true",)


def test_a_raw_pickle_checkpoint_is_one_line_without_torchs_warning(tmp_path, capfd):
    """D11: torch printed a 2-line UserWarning about the pickle protocol before the one-line error."""
    _raw_pickle_checkpoint(tmp_path / "raw.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError) as err:
            load_checkpoint(tmp_path / "raw.pt")
    assert one_line(err).startswith(f"corrupt checkpoint {tmp_path / 'raw.pt'}")
    assert capfd.readouterr().err == ""


def test_a_refused_global_is_named_and_torchs_advice_never_echoed(tmp_path):
    """D11: torch 2.14 says "unsupported GLOBAL"; the check looked for "Unsupported global" only, so the file was
    called corrupt with PyTorch's advice to load it with weights_only=False."""
    torch.save({"epoch": 1, "model": {"w": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    message = one_line(err)
    assert message.startswith(f"refused checkpoint {tmp_path / 'evil.pt'}: it holds posix.system")
    assert "weights_only" not in message and "trust" not in message.lower()


@pytest.mark.parametrize("script", ["resume", "sample"])
def test_a_raw_pickle_checkpoint_on_resume_and_in_sample_is_one_line(tmp_path, script, capfd):
    """D11 where the probes met it: --resume, and sketch_rnn/sample.py --checkpoint."""
    from tests.test_checkpoint_and_rundir import _args

    if script == "resume":
        RunDir(_args(tmp_path / "r"), data_source="g").log({"epoch": 1})
        _raw_pickle_checkpoint(tmp_path / "r" / "checkpoint.pt")
        load = RunDir(_args(tmp_path / "r", resume=True), data_source="g").resume_state
    else:
        from sketch_rnn import sample

        _raw_pickle_checkpoint(tmp_path / "checkpoint.pt")

        def load():
            return sample.main(["--checkpoint", str(tmp_path / "checkpoint.pt"), "--device", "cpu"])
    with pytest.raises(UserError, match="corrupt checkpoint") as err:
        load()
    one_line(err)
    assert "Warning" not in capfd.readouterr().err


def test_a_caltech_class_of_unreadable_images_is_an_empty_class(tmp_path):
    """D12: a class folder whose images are all unreadable was kept as an empty class."""
    from resnet_norms.data import load_data

    root = _two_caltech_classes(tmp_path)
    (root / "dodo").mkdir()
    for i in range(3):
        (root / "dodo" / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError) as err:
        load_data("caltech101", "real", tmp_path, image_size=8, cache_dir=tmp_path / "cache")
    assert one_line(err).startswith(f"class folder {root / 'dodo'} has no readable images (all 3 failed")


def test_an_absurd_resnet_norms_image_size_is_one_line(tmp_path):
    """D14: --image-size 40000 gave a MemoryError traceback."""
    from resnet_norms.data import load_data

    start = time.perf_counter()
    for dataset in ("birds", "caltech101"):
        with pytest.raises(UserError, match="--image-size 40000 is above") as err:
            load_data(dataset, "generated", tmp_path, image_size=40_000, smoke=True)
        one_line(err)
    assert time.perf_counter() - start < 2


def test_an_out_with_an_earlier_run_but_no_config_needs_overwrite(tmp_path):
    """D15: an --out holding an earlier run without config.json was taken for empty: the new run appended to the
    old metrics.jsonl (epochs 1, 2, 1, 2) and replaced checkpoint.pt."""
    from tests.test_checkpoint_and_rundir import _args

    old = RunDir(_args(tmp_path / "r"), data_source="g")
    for epoch in (1, 2):
        old.log({"epoch": epoch})
    old.save_checkpoint({"epoch": 2, "model": {}})
    (tmp_path / "r" / "config.json").unlink()
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    for resume in (False, True):
        with pytest.raises(UserError, match="holds files .*checkpoint.pt, metrics.jsonl. but no config.json") as err:
            RunDir(_args(tmp_path / "r", resume=resume), data_source="g")
        assert "--overwrite" in one_line(err)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    new = RunDir(_args(tmp_path / "r", overwrite=True), data_source="g")
    new.log({"epoch": 1})
    assert read_metrics(tmp_path / "r") == [{"epoch": 1}]
    (tmp_path / "nested" / "teacher").mkdir(parents=True)             # a nested run (dfad_kd's teacher/) only
    (tmp_path / "nested" / ".config.json.x.tmp").write_text("")      # and a killed write's temp file
    RunDir(_args(tmp_path / "nested"), data_source="g").log({"epoch": 1})


def test_a_script_refuses_an_earlier_run_without_config(tmp_path):
    """D15 as reproduced: a fashion_mnist_ffn run folder with config.json deleted, run again without --overwrite."""
    from fashion_mnist_ffn import train

    out = tmp_path / "run"
    flags = ["--data", "generated", "--epochs", "1", "--out", str(out)]
    train.main([*flags, "--smoke"])
    (out / "config.json").unlink()
    before = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(UserError, match="but no config.json"):
        train.main(flags)
    assert (out / "metrics.jsonl").read_bytes() == before


def test_resume_recovers_from_a_truncated_last_metrics_line(tmp_path):
    """D16: a kill during a metrics write leaves a last line cut short; --resume crashed on it (JSONDecodeError)."""
    from tests.test_checkpoint_and_rundir import _args

    run = RunDir(_args(tmp_path / "r"), data_source="g")
    for epoch in (1, 2):
        run.log({"epoch": epoch, "loss": 0.5})
    run.save_checkpoint({"epoch": 2, "model": {}})
    with open(tmp_path / "r" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "lo')                             # killed mid-line
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2]
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    assert resumed.resume_state()["epoch"] == 2
    resumed.log({"epoch": 3, "loss": 0.4})
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3]
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count("\n") == 3


@pytest.mark.parametrize("damage", ['[1, 2]\n', '"epoch"\n', 'null\n', '{"epoch": "two"}\n', 'garbage\n',
                                    'garbage\n{"epoch": 2}\n', '{"epoch": 3, "lo\n'])
def test_a_metrics_file_damaged_otherwise_is_one_line(tmp_path, damage):
    """D16: a line that is not a JSON object (or not JSON, short of a cut-off last line) gave an AttributeError or
    JSONDecodeError traceback on --resume."""
    from tests.test_checkpoint_and_rundir import _args

    run = RunDir(_args(tmp_path / "r"), data_source="g")
    run.log({"epoch": 1})
    run.save_checkpoint({"epoch": 1, "model": {}})
    with open(tmp_path / "r" / "metrics.jsonl", "a") as handle:
        handle.write(damage)
    before = (tmp_path / "r" / "metrics.jsonl").read_bytes()
    resumed = RunDir(_args(tmp_path / "r", resume=True), data_source="g")
    with pytest.raises(UserError, match=r"metrics.jsonl line 2 is not a metrics record") as err:
        resumed.resume_state()
        resumed.log({"epoch": 2})
    one_line(err)
    assert (tmp_path / "r" / "metrics.jsonl").read_bytes() == before


def test_a_sweep_with_an_absurd_hidden_size_is_one_line(tmp_path):
    """D14: a sweep config with hidden_size 1e8 gave a MemoryError traceback (the NumPy engine's MLPConfig bounds
    the parameters before any array is made, mnist_scratch/engine/limits.py)."""
    from fashion_mnist_ffn import sweep
    from fashion_mnist_ffn import train as ffn_train

    config = tmp_path / "huge.yaml"
    config.write_text("method: grid\nmetric: {name: val_acc, goal: maximize}\n"
                      "parameters:\n  hidden_size: {value: 100000000}\n  epochs: {value: 1}\n")
    start = time.perf_counter()
    with pytest.raises(UserError, match="parameters, above the 100,000,000") as err:
        sweep.main(["--config", str(config), "--count", "1", "--data", "generated", "--wandb", "off",
                    "--out", str(tmp_path / "sweep")])
    one_line(err)
    with pytest.raises(UserError, match="pick smaller layers"):
        ffn_train.main(["--data", "generated", "--hidden-size", "100000000", "--out", str(tmp_path / "run")])
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("module, argv, message", [
    ("xor", ["--hidden", "1000000000"], "parameters, above the 100,000,000"),
    ("xor", ["--hidden", "1000000", "--cloud", "100000"], "GiB, above the 2 GiB"),
    ("train", ["--model", "cnn", "--channels", "100000", "100000"], "parameters, above the 100,000,000"),
    ("train", ["--hidden", "100000", "100000"], "parameters, above the 100,000,000"),
    ("approximation", ["--widths", "100", "--samples", "10000000"], "GiB, above the 2 GiB"),
    ("gradient_flow", ["--width", "100000000"], "parameters, above the 100,000,000"),
])
def test_absurd_numpy_engine_sizes_are_one_line(tmp_path, module, argv, message):
    """D14 for every script on the NumPy engine: xor.py --hidden 1000000000 took 22 GB and was killed, other sizes
    gave MemoryError tracebacks. mnist_scratch/engine/limits.py checks parameters and each forward pass's arrays
    before allocating them."""
    mod = importlib.import_module(f"mnist_scratch.{module}")
    start = time.perf_counter()
    with pytest.raises(UserError, match=message) as err:
        mod.main([*argv, "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "r")])
    one_line(err)
    assert time.perf_counter() - start < 20


def test_the_engine_checks_a_convolutions_buffers_before_making_them(monkeypatch):
    from mnist_scratch.engine import conv, limits

    x, w, b = np.zeros((4, 3, 8, 8), np.float32), np.zeros((5, 3, 3, 3), np.float32), np.zeros(5, np.float32)
    conv.conv2d_forward(x, w, b, pad=1)
    cols = 4 * 8 * 8 * 3 * 3 * 3 * 4                                   # the im2col buffer's bytes
    monkeypatch.setattr(limits, "MAX_ARRAY_BYTES", cols - 1)
    monkeypatch.setattr(conv, "im2col", lambda *a, **k: pytest.fail("im2col ran past the limit"))
    with pytest.raises(UserError, match="column buffer of a 3x3 convolution of 3 channels for 4 examples"):
        conv.conv2d_forward(x, w, b, pad=1)


def test_running_out_of_memory_is_one_line():
    """common.errors.guard (run_cli wraps every main in it): NumPy's MemoryError and torch's allocator error become
    one-line UserErrors; any other RuntimeError stays what it is."""
    from common import errors

    def fail(err):
        with errors.guard():
            raise err

    with pytest.raises(UserError, match=r"out of memory \(Unable to allocate 5.70 TiB\)") as err:
        fail(MemoryError("Unable to allocate 5.70 TiB"))
    one_line(err)
    with pytest.raises(UserError, match="out of memory.*DefaultCPUAllocator: can't allocate memory") as err:
        fail(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
                          "to allocate 360000000000 bytes.\nmore"))
    one_line(err)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        fail(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_model_too_large_for_the_free_memory_stops_while_it_is_built(monkeypatch, capsys):
    """kd_cifar10/train.py --model mlp --depth 100000 built layer after layer until the memory ran out: the parameters
    torch modules register are counted against the memory free at the start (4 copies: weights, gradients, moments),
    and the budget's hook is gone after the run."""
    from common import errors
    from common.errors import run_cli
    from kd_cifar10 import train as kd_train

    free = 40 * 2**20
    monkeypatch.setattr(errors, "memory_left", lambda: (free, 100 * 2**20))   # the 10% reserve: 10 MiB
    monkeypatch.setattr(errors, "limit_data", lambda torch=None: lambda: None)   # the budget alone (a 100 MiB machine)
    built = []
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: built.append(self.weight.shape))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(kd_train.main, ["--model", "mlp", "--depth", "1000", "--width", "256", "--data", "generated",
                                "--threads", "1", "--out", "/nonexistent/never-made"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0
    assert err.startswith("error: the model's parameters reach") and "more than the 0.0 GiB" in err
    assert 10 < len(built) < 50                                # stopped near 40 MiB / 4, not after 1000 layers
    assert 4 * 4 * sum(a * b for a, b in built) <= free        # the layers built fitted the budget
    torch.nn.Linear(512, 512)                                  # the hook went with the run


def test_a_machine_short_of_memory_stops_the_model_being_built(monkeypatch):
    from common import errors

    left = [8 * 2**30]
    monkeypatch.setattr(errors, "memory_left", lambda: (left[0], 16 * 2**30))
    with errors.guard():
        torch.nn.Linear(4, 4)
        left[0] = 2**30                                        # under 10% of the machine: other work took it
        with pytest.raises(UserError, match=r"building the model \(Linear.weight\) has used the machine's memory "
                                            r"\(1.0 of 16.0 GiB left\)"):
            torch.nn.Linear(4, 4)


@pytest.mark.parametrize("module, argv, message", [
    ("sketch_rnn.train", ["--max-per-class", "1000000000"], "--max-per-class 1,000,000,000: the generated stand-in"),
    ("text2math.train", ["--n-generated", "1000000000"], "--n-generated 1,000,000,000: the generated stand-in"),
])
def test_an_absurd_generated_stand_in_is_one_line(tmp_path, module, argv, message):
    """Both generated for ever (killed after 120 s, memory growing); now refused before any is made."""
    start = time.perf_counter()
    with pytest.raises(UserError, match=message) as err:
        importlib.import_module(module).main([*argv, "--data", "generated", "--epochs", "1", "--threads", "1",
                                              "--out", str(tmp_path / "r")])
    one_line(err)
    assert time.perf_counter() - start < 20


def parser_refusal(script: str, argv: list[str], capsys) -> str:
    """The one stderr line with which `script`'s parser refuses `argv` (exit 2), before any work."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    with pytest.raises(SystemExit) as exit_info:
        if hasattr(module, "parse"):
            module.parse([*argv, "--threads", "1"])
        else:                                            # scripts that parse inside main()
            module.main([*argv, "--threads", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("script, argv, message", [
    ("mnist_scratch/xor.py", ["--cloud", "10000000000"], "--cloud: expected an integer from 0 to 100,000"),
    ("mnist_scratch/xor.py", ["--cloud", "-1"], "--cloud: expected an integer from 0 to 100,000, got -1"),
    ("slot_attention/train.py", ["--iterations", "100000000"], "--iterations: expected an integer from 1 to 50"),
    ("slot_diffusion/train.py", ["--iterations", "51"], "--iterations: expected an integer from 1 to 50"),
    ("text2math/train.py", ["--beam-sizes", "1", "1000000"], "--beam-sizes: expected an integer from 1 to 200"),
    ("text2math/train.py", ["--rerank-beam", "201"], "--rerank-beam: expected an integer from 1 to 200"),
    ("text2math/evaluate.py", ["--checkpoint", "x", "--beam-sizes", "201"], "--beam-sizes: expected an integer"),
    ("text2math/rerank.py", ["--checkpoint", "x", "--beam", "0"], "--beam: expected an integer from 1 to 200"),
    ("text2math/train.py", ["--retrieve", "1000000000"], "--retrieve: expected an integer from 0 to 20"),
    ("text2math/train.py", ["--retrieve", "-1"], "--retrieve: expected an integer from 0 to 20, got -1"),
    ("text2math/train.py", ["--rerank-k", "1001"], "--rerank-k: expected an integer from 0 to 1,000"),
    ("text2math/train.py", ["--fit-check", "-1"], "--fit-check: expected an integer >= 0"),
    ("text2math/rerank.py", ["--checkpoint", "x", "--k", "0"], "--k: expected an integer from 1 to 1,000"),
    ("text2math/knn.py", ["--k", "1001"], "--k: expected an integer from 1 to 1,000"),
])
def test_flags_that_only_grow_memory_are_bounded(script, argv, message, capsys):
    """slot_attention --iterations 1e8 grew the autograd graph until the memory ran out; a beam of 1e6 allocated
    gigabytes per step. Refused by the parser, before any work."""
    assert message in parser_refusal(script, argv, capsys)


@pytest.mark.parametrize("script, argv, message", [
    *[(script, ["--momentum", "1"], "from 0 up to (not including) 1") for script in (
        "mnist_scratch/train.py", "mnist_scratch/xor.py", "mnist_scratch/gradient_flow.py",
        "fashion_mnist_ffn/train.py", "kd_cifar10/distill.py", "resnet_norms/train.py", "dfad_kd/train_teacher.py")],
    *[("fashion_mnist_ffn/train.py", [flag, "1e300"], "from 0 up to (not including) 1")
      for flag in ("--beta1", "--beta2", "--alpha")],
    *[(script, ["--dropout", "1.5"], "from 0 to 1") for script in (
        "cifar100_multitask/train.py", "sketch_rnn/train.py", "text2math/train.py")],
    ("text2math/train.py", ["--teacher-forcing", "2"], "from 0 to 1"),
    ("text2math/train.py", ["--label-smoothing", "3"], "from 0 to 1"),
    ("kd_cifar10/distill.py", ["--alpha", "-1"], "from 0 to 1"),
])
def test_rates_and_probabilities_are_refused_outside_their_range(script, argv, message, capsys):
    """--momentum / --beta1 / --beta2 1e300 ended in a NaN loss whose message blamed --lr; a dropout above 1 reached
    torch's ValueError. Refused by the parser in one line."""
    assert f"argument {argv[0]}: expected a number {message}" in parser_refusal(script, argv, capsys)


@pytest.mark.parametrize("script, argv", [
    ("sketch_rnn/train.py", ["--layers", "1000000000"]), ("kd_cifar10/train.py", ["--depth", "1001"]),
    ("kd_cifar10/train.py", ["--layers", "1", "1", "1", "1001"]),
    ("kd_cifar10/distill.py", ["--t-layers", "1001", "1", "1", "1"]),
    ("cifar100_multitask/train.py", ["--convs-per-stage", "1001"]),
    ("cifar100_multitask/train.py", ["--depth", "1001"]),
    ("resnet_norms/train.py", ["--n", "1001"]), ("dfad_kd/train_teacher.py", ["--n", "1001"]),
    ("fashion_mnist_ffn/train.py", ["--num-layers", "1001"]), ("mnist_scratch/gradient_flow.py", ["--depth", "1001"]),
    ("slot_diffusion/train.py", ["--unet-blocks", "1001"]),
])
def test_layer_counts_are_bounded(script, argv, capsys):
    """sketch_rnn --layers 1000000000 built LSTM layers for ever (killed after 90 s); every layer or block count
    takes 1 .. 1000 (common.cli.layer_count)."""
    assert f"argument {argv[0]}: expected an integer from 1 to 1,000" in parser_refusal(script, argv, capsys)


@pytest.mark.parametrize("flag", ["--ks", "--kg"])
def test_dfad_steps_per_iteration_are_bounded(flag, capsys):
    """--ks / --kg 1000000000 ran inside one iteration, the progress bar never moving (killed after 90 s)."""
    from dfad_kd import train as dfad_train

    assert f"argument {flag}: expected an integer from 1 to 1,000" in parser_refusal("dfad_kd/train.py",
                                                                                     [flag, "1001"], capsys)
    assert dfad_train.parse([flag, "1000", "--threads", "1", "--smoke"]) is not None


@pytest.mark.parametrize("script", ["kd_cifar10/train.py", "kd_cifar10/distill.py", "resnet_norms/train.py",
                                    "cifar100_multitask/train.py", "sketch_rnn/train.py"])
def test_a_weight_decay_past_float32_is_refused(script, capsys):
    """--weight-decay 1e300 overflowed float32 inside torch's optimizer: 'value cannot be converted to type float
    without overflow', a traceback. Every number >= 0 a flag takes stops at 1e30, as the positive ones do."""
    assert "--weight-decay: expected a number from 0 up to 1e+30, got 1e300" in parser_refusal(
        script, ["--weight-decay", "1e300"], capsys)


@pytest.mark.parametrize("module, flag", [("resnet_norms.train", "--weight-decay"), ("mnist_scratch.train", "--l2")])
def test_a_divergence_from_the_decay_names_the_decay(module, flag, tmp_path):
    """--weight-decay / --l2 1e30 diverged in the first epoch with the advice "lower --lr" alone: the message names
    the decay flag of the script beside --lr."""
    import importlib

    from common.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=f"no checkpoint was written .*; lower --lr or {flag}$"):
        importlib.import_module(module).main(["--smoke", flag, "1e30", "--threads", "1", "--out", str(tmp_path / "r")])


def test_a_batch_larger_than_the_training_set_is_a_user_error(tmp_path):
    """slot_attention drops the last partial batch: --batch-size 1e9 left no batch, reported as a divergence
    (exit 3); it is a user error (exit 2)."""
    from slot_attention import train as slot_train

    with pytest.raises(UserError, match="gave no batches: check --batch-size") as err:
        slot_train.main(["--smoke", "--batch-size", "1000000000", "--threads", "1", "--out", str(tmp_path / "r")])
    assert type(err.value) is UserError and err.value.exit_code == 2


# --- a named pipe or a device where a file should be -----------------------------------------------------
def _not_a_file(path: Path, kind: str) -> Path:
    """`path` made a named pipe (opening it waited for a writer for ever) or a link to /dev/null, a device (as
    /dev/zero, which never ends: read as a GloVe or IDX file it filled the machine's memory until the kernel
    killed the run). /dev/null, not /dev/zero, so that a reader that does not check ends at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/null")
    return path


def _within(seconds: float, call, fifo: Path):
    """call() in a thread; a reader still blocked on the pipe after `seconds` is released (a writer opens and
    closes it) and the test fails. Returns (result, error) of the call."""
    import threading

    done: dict = {}

    def target():
        try:
            done["result"] = call()
        except BaseException as err:   # noqa: BLE001 - handed to the test
            done["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo.exists() and not fifo.is_file():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"still reading {fifo} after {seconds} s")
    return done.get("result"), done.get("error")


def _read_image(path):
    from common.images import open_image

    with open_image(path) as image:
        return image.size


def _read_ndjson(path):
    from sketch_rnn.data import read_ndjson

    return read_ndjson(path, 10)


NOT_A_FILE_READERS = {
    "idx": (lambda root: root / "train-images-idx3-ubyte", read_idx),
    "idx.gz": (lambda root: root / "train-images-idx3-ubyte.gz", read_idx),
    "cifar": (lambda root: root / "data_batch_1", read_cifar_batch),
    "npz": (lambda root: root / "cat.npz", read_npz),
    "glove": (lambda root: root / "glove.6B.50d.txt", read_glove),
    "mathqa": (lambda root: root / "dev.json", read_mathqa_json),
    "ndjson": (lambda root: root / "cat.ndjson", _read_ndjson),
    "checkpoint": (lambda root: root / "checkpoint.pt", load_checkpoint),
    "image": (lambda root: root / "image_0001.jpg", _read_image),
    "metrics": (lambda root: root / "metrics.jsonl", lambda path: read_metrics(path.parent)),
}


@pytest.mark.parametrize("kind, needle", [("fifo", "is a named pipe (FIFO), not a data file"),
                                          ("device", "is a device, not a data file")])
@pytest.mark.parametrize("reader", list(NOT_A_FILE_READERS))
def test_a_pipe_or_device_where_a_file_should_be_is_one_line(tmp_path, reader, kind, needle):
    """`text2math/train.py --glove /dev/zero` was killed by the kernel after filling the machine's memory, an MNIST
    file linked to /dev/zero ran out of memory, and a named pipe under MNIST/raw or MathQA/ hung the run. Every
    reader of data, checkpoints and run files now refuses what is no regular file before opening it."""
    where, read = NOT_A_FILE_READERS[reader]
    path = _not_a_file(where(tmp_path), kind)
    _, error = _within(10, lambda: read(path), path)
    assert isinstance(error, UserError), error
    assert one_line(str(error)).startswith(f"{path} {needle}; ")


@pytest.mark.parametrize("kind, needle", [("missing", ": no such file; "), ("folder", " is a directory, not a file; "),
                                          ("fifo", " is a named pipe (FIFO), not a file; "),
                                          ("device", " is a device, not a file; ")])
def test_a_file_flag_says_what_is_there_instead_of_a_file(tmp_path, capsys, kind, needle):
    """`knn.py --train-file /dev/null` said "no such file" of a device that is there, and so did a folder or a
    pipe; kd_cifar10's --pretrained the same. The message now names what the path holds."""
    from common.errors import run_cli
    from common.formats import given_file
    from kd_cifar10.transfer import pretrained_source
    from text2math import knn

    path = {"missing": tmp_path / "absent.json", "folder": tmp_path}.get(kind) or _not_a_file(tmp_path / "x", kind)
    with pytest.raises(UserError) as caught:
        given_file(path, "--flag", "give a file")
    assert str(caught.value) == f"--flag {path}{needle}give a file"
    with pytest.raises(UserError, match=re.escape(f"--pretrained {path}{needle}")):
        pretrained_source(str(path))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(knn.main, ["--smoke", "--train-file", str(path), "--eval-file", str(path)])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == (
        f"error: --train-file {path}{needle}give a MathQA json file (e.g. MathQA/test.json)")
    (good := tmp_path / "good.json").write_text("[]")
    assert given_file(good, "--flag", "fix") == good


@pytest.mark.parametrize("which", [".json", "_flat.png"])
def test_a_pipe_in_a_clevrtex_scene_is_one_line(tmp_path, which):
    from slot_attention.data import read_clevrtex_scene

    image = _clevrtex_scene(tmp_path)
    part = Path(str(image.with_suffix("")) + which)
    part.unlink()
    _not_a_file(part, "fifo")
    _, error = _within(10, lambda: read_clevrtex_scene(image, 16), part)
    assert isinstance(error, UserError) and one_line(str(error)).startswith(f"{part} is a named pipe (FIFO)")


def test_a_pipe_under_the_image_caches_name_is_replaced_not_read(tmp_path):
    from resnet_norms.data import _cache_key, decode_cached

    files = [tmp_path / f"image_{i}.png" for i in range(2)]
    for i, path in enumerate(files):
        Image.new("RGB", (12, 10), (40 * i, 90, 200)).save(path)
    cache = _not_a_file(tmp_path / "cache" / f"images_8px_{_cache_key(files, 8)}.pt", "fifo")
    (images, keep, skipped), error = _within(10, lambda: decode_cached(files, 8, tmp_path / "cache",
                                                                       announce=lambda _: None), cache)
    assert error is None and images.shape == (2, 8, 8, 3) and keep.all() and not skipped
    assert cache.is_file() and torch.load(cache, weights_only=True)["images"].shape == (2, 8, 8, 3)


def test_an_idx_gz_is_read_no_further_than_its_header_declares(tmp_path):
    """A .gz expands without bound; read_idx read all of it before looking at the header's shape."""
    import gzip

    header = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 2, 3)
    (tmp_path / "more.gz").write_bytes(gzip.compress(header + bytes(12) + bytes(50_000_000)))   # 50 kB packed
    with pytest.raises(UserError, match="expected 12 data bytes for shape \\(2, 2, 3\\), found more") as err:
        read_idx(tmp_path / "more.gz")
    one_line(err)
    huge = bytes([0, 0, 8, 3]) + struct.pack(">III", 4_000_000_000, 28, 28)
    (tmp_path / "huge.gz").write_bytes(gzip.compress(huge + bytes(1000)))
    with pytest.raises(UserError, match="declares shape \\(4000000000, 28, 28\\), 3,136,000,000,000 bytes") as err:
        read_idx(tmp_path / "huge.gz")
    one_line(err)
    (tmp_path / "fits.gz").write_bytes(gzip.compress(header + bytes(range(12))))
    np.testing.assert_array_equal(read_idx(tmp_path / "fits.gz"), np.arange(12).reshape(2, 2, 3))


@pytest.mark.slow  # launches a script
def test_text2math_with_a_device_as_glove_exits_2(tmp_path):
    done = run_script("text2math/train.py", "--smoke", "--glove", "/dev/null", "--out", str(tmp_path / "r"))
    assert_script_error(done, "/dev/null is a device, not a data file; pass --glove PATH")
    assert not (tmp_path / "r").exists()


# --- a run folder's own json files, damaged ------------------------------------------------------------------
@pytest.mark.parametrize("content, keys, needle", [
    (None, None, "cannot read .* \\(No such file or directory\\); FIX$"),
    ("garbage", None, "cannot read .* \\(JSONDecodeError\\); FIX$"),
    ("[" * 100_000 + "]" * 100_000, None, "cannot read .* \\(RecursionError\\); FIX$"),
    ("[1, 2]", (), "is not what this project writes there \\(an object\\); FIX$"),
    ('{"args": {}}', ("args", "epochs"), "\\(an object with 'args', 'epochs'\\); FIX$"),
    ("fifo", None, "is a named pipe \\(FIFO\\), not a data file; FIX$"),
])
def test_read_json_is_one_line_for_whatever_is_no_such_file(tmp_path, content, keys, needle):
    from common.rundir import read_json

    path = tmp_path / "summary.json"
    if content == "fifo":
        _not_a_file(path, "fifo")
    elif content is not None:
        path.write_text(content)
    _, error = _within(10, lambda: read_json(path, "FIX", keys=keys), path)
    assert isinstance(error, UserError) and one_line(str(error)), error
    assert re.search(needle, str(error)), str(error)
    path.unlink(missing_ok=True)
    path.write_text('{"args": {}, "epochs": 2}')
    assert read_json(path, "FIX", keys=("args", "epochs")) == {"args": {}, "epochs": 2}


def test_a_damaged_run_file_in_a_reproduction_is_one_line_and_nothing_is_overwritten(tmp_path):
    """reproduce.py --report-only on a run whose summary.json was damaged gave a JSONDecodeError traceback, and a
    damaged reproduce_spec.json a traceback before the run was retrained with --overwrite."""
    import reproduce
    from common.reporting import RunSpec, load_result

    run = tmp_path / "runs" / "mnist_scratch" / "a"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"args": {}, "data_source": "", "command": "", "git_commit": "", "hardware": {}}')
    (run / "summary.json").write_text('{"test_acc": 0.9')
    with pytest.raises(UserError, match=f"cannot read {run / 'summary.json'} \\(JSONDecodeError\\); delete {run} and "
                                        f"run it again") as err:
        load_result("a", run)
    one_line(err)
    (run / "reproduce_spec.json").write_text("{damaged")
    args = argparse.Namespace(smoke=True, quick=False, data="auto", data_root=tmp_path, report_only=False)
    with pytest.raises(UserError, match=f"reproduce_spec.json \\(JSONDecodeError\\); move {run} away") as err:
        reproduce.ensure_run("mnist_scratch", RunSpec("a", ("--epochs", "1")), run, args)
    one_line(err)
    assert (run / "summary.json").read_text() == '{"test_acc": 0.9' and not (run / "log.txt").exists()


def test_a_damaged_sweep_json_is_one_line(tmp_path):
    """fashion_mnist_ffn/sweep.py on a sweep folder whose sweep.json was damaged gave a JSONDecodeError traceback;
    --overwrite still starts over."""
    from fashion_mnist_ffn.sweep_runner import _prepare_sweep_dir

    config = {"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"}, "parameters": {}}
    (tmp_path / "sweep.json").write_text("{damaged")
    with pytest.raises(UserError, match="cannot read .*sweep.json \\(JSONDecodeError\\); pass --overwrite") as err:
        _prepare_sweep_dir(tmp_path, config, count=None, seed=0, overwrite=False)
    one_line(err)
    assert _prepare_sweep_dir(tmp_path, config, count=None, seed=0, overwrite=True) == {}
    assert json.loads((tmp_path / "sweep.json").read_text())["config"] == config


@pytest.mark.parametrize("spoil, needle", [
    (lambda s: {**s, "epoch": 99}, "is not this run's best checkpoint \\(epoch 99 of 2\\)"),
    (lambda s: {**s, "epoch": "3"}, "is not this run's best checkpoint \\(epoch 3 of 2\\)"),
    (lambda s: {k: v for k, v in s.items() if k != "model"}, "is not this run's best checkpoint"),
    (lambda s: {**s, "model": {"other": torch.zeros(2)}}, "does not fit this run's model"),
])
def test_text2math_with_a_best_pt_that_is_not_the_runs_is_one_line(tmp_path, spoil, needle):
    """A resumed text2math run loads best.pt at its end: one whose epoch or weights were not this run's gave a
    KeyError / IndexError / RuntimeError traceback after the training had finished."""
    from text2math.train import main as text2math_main

    out = tmp_path / "run"
    text2math_main(["--smoke", "--epochs", "2", "--out", str(out), "--threads", "1"])
    save_checkpoint(out / "best.pt", spoil(load_checkpoint(out / "best.pt")))
    with pytest.raises(UserError, match=needle) as err:
        text2math_main(["--smoke", "--epochs", "2", "--resume", "--out", str(out), "--threads", "1"])
    assert one_line(err).startswith(str(out / "best.pt"))
    (out / "best.pt").unlink()              # the advice: without it the last epoch's weights are evaluated
    summary = text2math_main(["--smoke", "--epochs", "2", "--resume", "--out", str(out), "--threads", "1"])
    assert summary["best_epoch"] == 2 == len(read_metrics(out))


@pytest.mark.parametrize("field_name, value, needle", [
    ("layers", 10 ** 12, "layers must be 1 to 1,000, got 1000000000000"), ("max_len", -5, "max_len must be at least 1"),
    ("max_len", "x", "max_len = x: not of its field's type"), ("head", "cubic", "head 'cubic'"),
    ("scale", -1.0, "scale -1.0"),
])
def test_sketch_rnn_sample_refuses_a_generator_config_it_cannot_draw_with(tmp_path, field_name, value, needle):
    """sample.py on a checkpoint whose model_config held layers 10**12 built LSTM layers for ever (killed after
    150 s); max_len -5 or "x", or scale "x", ended in a traceback while drawing. Refused in one line on loading."""
    from sketch_rnn.model import SketchConfig, SketchGenerator
    from sketch_rnn.sample import load_generator

    config = SketchConfig(classes=["cat"], embed_dim=4, prompt_len=2, encoder_hidden=4, decoder_hidden=4, layers=1,
                          attention_dim=4, mixtures=2, max_len=5)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {**config.to_dict(), field_name: value},
                           "model": SketchGenerator(config).state_dict()})
    start = time.perf_counter()
    with pytest.raises(UserError, match=re.escape(needle)) as err:
        load_generator(path, torch.device("cpu"))
    assert one_line(err).startswith(f"{path} does not hold a sketch_rnn/train.py model")
    assert time.perf_counter() - start < 10


@pytest.fixture(scope="module")
def dfad_teacher(tmp_path_factory):
    from dfad_kd.train_teacher import main as teacher_main

    out = tmp_path_factory.mktemp("teacher") / "run"
    teacher_main(["--smoke", "--out", str(out), "--threads", "1"])
    return out / "checkpoint.pt"


@pytest.mark.parametrize("mean, std", [("x", [0.3]), (5, [0.3]), ([0.1], 7), ([0.1], [0.0]), ([float("nan")], [0.3]),
                                       ([0.1, 0.2], [0.3, 0.3]), ([True], [0.3]), (None, [0.3])])
def test_a_dfad_teacher_whose_input_normalisation_is_damaged_is_one_line(dfad_teacher, tmp_path, mean, std):
    """dfad_kd/train.py --teacher on a checkpoint whose input_mean was text or a number gave a ValueError / TypeError
    traceback; a zero std divided by zero later."""
    from dfad_kd.model import load_teacher

    state = load_checkpoint(dfad_teacher)
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, {**state, "model_config": {**state["model_config"], "input_mean": mean, "input_std": std}})
    with pytest.raises(UserError, match="does not record the input normalisation its model expects") as err:
        load_teacher(path)
    one_line(err)
    assert load_teacher(dfad_teacher).std == tuple(state["model_config"]["input_std"])


@pytest.mark.parametrize("field_name, value, needle", [
    ("iterations", 10 ** 12, "iterations 1000000000000 is not a value --iterations takes"),
    ("iterations", -5, "iterations -5 is not a value --iterations takes"),
    ("slots", 0, "slots 0 is not a value --slots takes"), ("epsilon", -1e-8, "epsilon must lie between 0 and 1"),
])
def test_a_slot_model_config_the_flags_would_refuse_is_one_line(tmp_path, field_name, value, needle):
    """slot_diffusion --baseline on a checkpoint whose model_config held iterations 10**12 ran for ever (killed after
    150 s), and -5 ran with no slot-attention iteration at all; a stored config now passes the flags' own checks."""
    from slot_attention.model import SlotAutoencoder, SlotConfig, load_autoencoder

    config = SlotConfig(image_size=16, slots=2, slot_dim=4, encoder_channels=4, mlp_hidden=4, broadcast=8,
                        decoder_channels=4, decoder_size=16)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {**config.to_dict(), field_name: value},
                           "model": SlotAutoencoder(config).state_dict()})
    start = time.perf_counter()
    with pytest.raises(UserError, match=re.escape(needle)) as err:
        load_autoencoder(path)
    assert one_line(err).startswith(f"{path} does not hold a slot_attention/train.py model")
    assert time.perf_counter() - start < 10


# --- files too large to read whole ---------------------------------------------------------------------------------
def _sparse(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk (reading it whole would take `size` bytes of memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _read_sweep_config(path):
    from fashion_mnist_ffn.sweep_config import load_sweep_config

    return load_sweep_config(path)


def _read_trials(path):
    from fashion_mnist_ffn.sweep_runner import load_trials

    return load_trials(path.parent)


def _read_run_json(path):
    from common.rundir import read_json

    return read_json(path, "FIX")


def _read_clevrtex_meta(path):
    from slot_attention.data import read_clevrtex_scene

    return read_clevrtex_scene(path.with_suffix(".png"), 16)


def _read_diagnose_config(path):
    from slot_attention.diagnose import read_run

    return read_run(path.parent)


READ_WHOLE = {   # reader -> (where its file lies under a folder, how it is read)
    "mathqa": (lambda root: root / "dev.json", read_mathqa_json),
    "run json": (lambda root: root / "summary.json", _read_run_json),
    "metrics": (lambda root: root / "metrics.jsonl", lambda path: read_metrics(path.parent)),
    "sweep config": (lambda root: root / "sweep.yaml", _read_sweep_config),
    "sweep trials": (lambda root: root / "trials.jsonl", _read_trials),
    "clevrtex meta": (lambda root: _clevrtex_scene(root).with_suffix(".json"), _read_clevrtex_meta),
    "slot diagnose config": (lambda root: root / "config.json", _read_diagnose_config),
}


@pytest.mark.parametrize("reader", list(READ_WHOLE))
def test_a_file_read_whole_is_refused_over_its_limit_before_it_is_read(tmp_path, reader):
    """A json or text file is read whole; one of many gigabytes (a wrong path, a damaged file) filled the memory
    first. Each is refused by its size; the sparse file here would take 256 MiB if it were read."""
    from common.formats import MAX_TEXT_BYTES

    where, read = READ_WHOLE[reader]
    path = where(tmp_path)
    path.unlink(missing_ok=True)
    _sparse(path, MAX_TEXT_BYTES + 1)
    with pytest.raises(UserError, match=re.escape(f"{path} is over {MAX_TEXT_BYTES:,} bytes")) as err:
        read(path)
    one_line(err)


def test_read_text_reads_up_to_its_limit_and_refuses_past_it(tmp_path):
    from common.formats import read_text

    path = tmp_path / "a.json"
    path.write_text('{"é": 1}')
    assert read_text(path, "FIX", limit=len('{"é": 1}'.encode())) == '{"é": 1}'
    needle = re.escape(f"{path} is over 8 bytes, more than this file ever holds; FIX") + "$"
    with pytest.raises(UserError, match=needle):
        read_text(path, "FIX", limit=8)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):   # the caller words it
        read_text(path, "FIX")


def test_a_glove_file_that_is_one_enormous_line_is_refused(tmp_path):
    """`text2math/train.py --glove` on a 3 GB file with no line break took 7.0 GB of memory (one line read whole),
    found no vector and trained on; now its first line over 1 MiB is refused."""
    from text2math.data import MAX_GLOVE_LINE

    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2\n" + "a" * (MAX_GLOVE_LINE + 1))
    with pytest.raises(UserError, match=re.escape(f"{path} line 2 is over {MAX_GLOVE_LINE:,} characters")) as err:
        read_glove(path)
    assert one_line(err).endswith("; pass --glove PATH to glove.6B.*d.txt")
    path.write_text("the 0.1 0.2\nof 0.3 0.4\n")
    assert sorted(read_glove(path)) == ["of", "the"]


def test_an_ndjson_line_over_its_limit_is_refused(tmp_path, monkeypatch):
    import sketch_rnn.data as sketch_data

    monkeypatch.setattr(sketch_data, "MAX_LINE", 200)
    drawing = json.dumps({"word": "cat", "drawing": [[[0, 10, 20], [0, 5, 0]]]})
    path = tmp_path / "cat.ndjson"
    path.write_text(drawing + "\n" + drawing + "\n")
    assert len(sketch_data.read_ndjson(path, 10)) == 2
    path.write_text(drawing + "\n" + " " * 300 + drawing + "\n")
    with pytest.raises(UserError, match=re.escape(f"{path} line 2 is over 200 characters")) as err:
        sketch_data.read_ndjson(path, 10)
    assert one_line(err).endswith("; delete it and fetch it again")


def test_an_npz_that_unpacks_past_its_limit_is_refused_before_it_unpacks(tmp_path, monkeypatch):
    """A 6 MB .npz of 6 GiB of zeros took 6.3 GB of memory to read; the arrays' declared sizes are now summed first
    (zipfile never unpacks a member past its declared size)."""
    import common.formats as formats

    np.savez_compressed(tmp_path / "zeros.npz", a=np.zeros(300_000, np.uint8), b=np.zeros(300_000, np.uint8))
    assert (tmp_path / "zeros.npz").stat().st_size < 10_000
    monkeypatch.setattr(formats, "MAX_NPZ_BYTES", 700_000)
    assert {k: v.shape for k, v in read_npz(tmp_path / "zeros.npz").items()} == {"a": (300_000,), "b": (300_000,)}
    monkeypatch.setattr(formats, "MAX_NPZ_BYTES", 500_000)
    with pytest.raises(UserError, match="its arrays unpack to 600,256 bytes, above the 500,000 this reader takes") \
            as err:
        read_npz(tmp_path / "zeros.npz")
    one_line(err)
    monkeypatch.setattr(formats, "MAX_NPZ_BYTES", 700_000)
    archive = tmp_path / "zeros.npz"
    np.savez(archive, a=np.zeros(800_000, np.uint8))
    with pytest.raises(UserError, match="unpack to 800,128 bytes"):
        read_sketch_npz(archive, 5)


def test_a_sweep_config_that_is_not_text_is_one_line(tmp_path):
    """fashion_mnist_ffn/sweep.py --config on a file that was no UTF-8 text gave a UnicodeDecodeError traceback."""
    path = tmp_path / "sweep.json"
    path.write_bytes(bytes(range(128, 256)))
    done = run_script("fashion_mnist_ffn/sweep.py", "--smoke", "--config", str(path), "--out", str(tmp_path / "s"))
    assert_script_error(done, f"cannot read sweep config {path} (UnicodeDecodeError); pass the path of a .yaml")


@pytest.mark.parametrize("content", [bytes(range(128, 256)), "fifo"])
def test_a_netrc_that_cannot_be_read_means_no_wandb_key(tmp_path, monkeypatch, content):
    """A ~/.netrc that was no UTF-8 text gave a UnicodeDecodeError traceback from every script's --wandb auto."""
    from common.cli import wandb_logged_in

    netrc = tmp_path / "netrc"
    _not_a_file(netrc, "fifo") if content == "fifo" else netrc.write_bytes(content)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    assert _within(10, wandb_logged_in, netrc) == (False, None)
    netrc.unlink()
    netrc.write_text("machine api.wandb.ai\n  login user\n  password key\n")
    assert wandb_logged_in()


@pytest.mark.parametrize("allocate", ["torch", "numpy"])
def test_an_allocation_past_the_free_memory_fails_at_once_in_one_line(monkeypatch, allocate):
    """kd_cifar10/train.py --batch-size 1000000 --width 256 on 10,000 CIFAR images asked for more than the machine
    holds in activations, which the parameter budget does not see: the data segment is limited to what is free
    (less the reserve; at least half the machine) while a script runs, so the allocation past it fails at once.
    Here the machine is said to have 1 GiB free of 2 GiB: 3 GiB is refused, untouched; the limit goes with the run."""
    import resource

    from common import errors

    before = resource.getrlimit(resource.RLIMIT_DATA)
    monkeypatch.setattr(errors, "memory_left", lambda: (2**30, 2 * 2**30))
    size = 3 * 2**30
    with pytest.raises(UserError, match="^out of memory \\(.*\\); pick smaller sizes") as err:
        with errors.guard():
            assert resource.getrlimit(resource.RLIMIT_DATA)[0] <= errors.data_size() + 2**30
            torch.empty(size, dtype=torch.uint8) if allocate == "torch" else np.empty(size, np.uint8)
    one_line(err)
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # CUDA maps memory of its own: no limit
    with errors.guard():
        assert resource.getrlimit(resource.RLIMIT_DATA) == before


# --- a full disk -----------------------------------------------------------------------------------------------------
def _chained_full_disk() -> RuntimeError:
    """What torch.save raises on a full disk: its zip writer's RuntimeError, raised while the OSError was handled."""
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 98944 vs 98840")  # noqa: B904 (as torch)
    except RuntimeError as err:
        return err


@pytest.mark.parametrize("error, needle", [
    (OSError(28, "No space left on device", "/r/metrics.jsonl"), "(No space left on device writing /r/metrics.jsonl)"),
    (OSError(122, "Disk quota exceeded"), "(Disk quota exceeded)"),
    (_chained_full_disk(), "(No space left on device)"),
])
def test_a_full_disk_is_one_line(error, needle):
    """Every training script on a full disk (a 150 kB tmpfs as --out) ended in a traceback: torch.save's
    'unexpected pos' RuntimeError or an OSError from a run file."""
    from common.errors import guard

    with pytest.raises(UserError, match=re.escape(f"the disk is full {needle}; free some space or pick another --out, "
                                                  f"then run again (--resume continues")) as err:
        with guard():
            raise error
    one_line(err)


@pytest.mark.parametrize("error", [OSError(13, "Permission denied"), RuntimeError("mat1 and mat2 shapes")])
def test_other_os_and_runtime_errors_pass_through_the_guard(error):
    from common.errors import guard

    with pytest.raises(type(error)) as err:
        with guard():
            raise error
    assert err.value is error


class _FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_a_run_on_a_disk_that_fills_keeps_its_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    """kd_cifar10 --smoke whose second checkpoint meets a full disk mid-write: one line, exit 2, the first epoch's
    checkpoint as it was, no temp file; --resume once there is room ends with an uninterrupted run's metrics."""
    from common.checkpoint import TEMP_PATTERN, load_checkpoint
    from common.errors import run_cli
    from kd_cifar10 import train as kd_train

    argv = ["--smoke", "--threads", "1"]   # two epochs
    real_save, calls = torch.save, []

    def save(obj, handle, *args, **kwargs):
        calls.append(1)
        return real_save(obj, _FullDisk(handle, 1000) if len(calls) == 2 else handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(kd_train.main, [*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0 and err.startswith("error: the disk is full (No space")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
    assert not list((tmp_path / "run").glob(TEMP_PATTERN))
    monkeypatch.setattr(torch, "save", real_save)
    run_cli(kd_train.main, [*argv, "--out", str(tmp_path / "run"), "--resume"])
    run_cli(kd_train.main, [*argv, "--out", str(tmp_path / "whole")])
    resumed, whole = read_metrics(tmp_path / "run"), read_metrics(tmp_path / "whole")
    drop = ("train_seconds", "elapsed", "seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in drop} for r in whole] and len(whole) == 2


@pytest.mark.parametrize("script, argv", [("mnist_scratch_epoch", ["--repeats", "0"]),
                                          ("mnist_scratch_epoch", ["--batch-size", "-5"]),
                                          ("scratch_conv", ["--repeats", "0"])])
def test_a_bench_script_refuses_a_count_that_is_not_positive(script, argv, capsys):
    """bench/mnist_scratch_epoch.py --repeats 0 and bench/scratch_conv.py --repeats 0 ended in a StatisticsError
    traceback, --batch-size 0 in a ValueError one, and --batch-size -5 printed a ratio of nonsense."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{script}", REPO / "bench" / f"{script}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.endswith(f"error: argument {argv[0]}: expected a positive integer, got {argv[1]} (see --help)")


def test_sigterm_ends_a_script_in_one_line_and_leaves_no_temp_file(tmp_path):
    """`timeout`, a job scheduler or `kill` send SIGTERM: a script died at once, silent, and a checkpoint write in
    progress left its temp file. It now unwinds like Ctrl-C (exit 143, one line); here it is stopped inside an
    atomic checkpoint write, which removes its temp file."""
    import signal
    import subprocess
    import sys

    child = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
import torch
from common.checkpoint import save_checkpoint
from common.errors import run_cli
real_save = torch.save
def slow_save(obj, handle, *args, **kwargs):
    print("writing", flush=True)
    time.sleep(30)
torch.save = slow_save
run_cli(lambda argv: save_checkpoint({str(tmp_path / "checkpoint.pt")!r}, {{"epoch": 1}}))
"""
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert list(tmp_path.glob(".checkpoint.pt.*.tmp")), "the temp file is being written"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 143, err
    assert err.strip() == "terminated (SIGTERM): the last checkpoint is kept; continue with --resume"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["loop", "long name", "loop inside"])
def test_a_path_no_file_system_takes_is_one_line_in_any_flag(tmp_path, capsys, bad):
    """A loop of symbolic links or a name over the file system's 255 bytes, given as --out, --data-root or a file
    flag: pathlib's resolve() raised RuntimeError('Symlink loop ...') and os calls OSError(ENAMETOOLONG), both as
    tracebacks. run_cli's guard says either in one line, naming the path."""
    from common.errors import run_cli
    from mnist_scratch import train as mnist_train
    from text2math import knn

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    path = {"loop": tmp_path / "a", "long name": tmp_path / ("x" * 300), "loop inside": tmp_path / "a" / "run"}[bad]
    why = "symbolic links form a loop" if "loop" in bad else "a name in it is longer than the file system allows"
    for main, argv in ((mnist_train.main, ["--smoke", "--out", str(path)]),
                       (knn.main, ["--data", "real", "--data-root", str(path)]),
                       (knn.main, ["--smoke", "--train-file", str(path), "--eval-file", str(path)])):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
        file_flag = "--train-file" in argv and "loop" in bad     # a file flag may also say 'no such file'
        assert (why in err or file_flag and "no such file" in err) and (str(tmp_path) in err or "characters)" in err)


def test_a_folder_flag_on_a_symbolic_link_to_nothing_is_one_line(tmp_path):
    """--reports-dir (any folder flag checked before it is made) on a dangling link or a loop said '(File exists)'."""
    from common.rundir import make_dir

    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "x")
    with pytest.raises(UserError, match=r"--reports-dir .*dangling is a symbolic link to nothing \(its target is "
                                        r"missing, or its links loop\); pick another --reports-dir$"):
        make_dir(tmp_path / "dangling" / "sub", "--reports-dir")
    assert make_dir(tmp_path / "fine" / "sub", "--reports-dir").is_dir()


def test_a_file_flag_a_script_writes_is_checked_before_it_writes(tmp_path):
    """dfad_kd/compare.py --out and text2math/gold_check.py --out name a file: a folder there gave an
    IsADirectoryError traceback (gold_check, after the counting), a named pipe hung gold_check's write for ever, and
    compare.py wrote '<out>.png' for a name without .png (saying it wrote <out>) or a ValueError for '.file'."""
    import os

    from dfad_kd import compare
    from text2math import gold_check

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 0.5, "agree_real": 0.4}\n')
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.json").mkdir()
    os.mkfifo(tmp_path / "pipe.json")
    cases = [(compare.main, [f"a={tmp_path / 'run'}"], "figure", "must end in .png"),
             (compare.main, [f"a={tmp_path / 'run'}"], "figure.file", "must end in .png"),
             (compare.main, [f"a={tmp_path / 'run'}"], "folder.png", "exists and is not a regular file"),
             (gold_check.main, ["--smoke"], "folder.json", "exists and is not a regular file"),
             (gold_check.main, ["--smoke"], "pipe.json", "exists and is not a regular file"),
             (gold_check.main, ["--smoke"], "counts.txt", "must end in .json")]
    for main, argv, name, needle in cases:
        with pytest.raises(UserError) as err:
            main([*argv, "--out", str(tmp_path / name)])
        assert needle in one_line(err) and str(tmp_path / name) in str(err.value), (name, err.value)
    assert not (tmp_path / "figure.png").exists() and not (tmp_path / "figure.file").exists()
    assert compare.main([f"a={tmp_path / 'run'}", "--out", str(tmp_path / "new" / "a.png")]).stat().st_size > 0
    gold_check.main(["--smoke", "--out", str(tmp_path / "new" / "counts.json")])
    assert json.loads((tmp_path / "new" / "counts.json").read_text())["problems"] == 200


@pytest.mark.parametrize("env, needle", [
    ({"WORLD_SIZE": "x"}, "WORLD_SIZE='x' is not a whole number of at least 1"),
    ({"WORLD_SIZE": "-1"}, "WORLD_SIZE='-1' is not a whole number of at least 1"),
    ({"WORLD_SIZE": "2", "LOCAL_RANK": "x"}, "LOCAL_RANK='x' is not a whole number of at least 0"),
    ({"WORLD_SIZE": "2"}, "cannot join the 2 processes WORLD_SIZE asks for (Error initializing torch.distributed"),
    ({"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "cannot join the 2 processes"),
])
def test_torchruns_environment_set_by_hand_is_one_line(monkeypatch, env, needle):
    """WORLD_SIZE / LOCAL_RANK / RANK left in a shell, or set wrongly, were ValueError tracebacks from int() or from
    torch's env:// rendezvous; LOCAL_WORLD_SIZE=0 divided by zero under --threads auto."""
    from common.distributed import init_from_env
    from common.runtime import set_cpu_threads

    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as err:
        init_from_env("cpu")
    assert needle in one_line(err) and ("torchrun" in str(err.value))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "0")
    with pytest.raises(UserError, match="LOCAL_WORLD_SIZE='0' is not a whole number of at least 1"):
        set_cpu_threads("auto")


CHILD_RUN = """
import sys, time
sys.path.insert(0, {repo!r})
from common.errors import Terminated, run_cli
def main(argv):
    print("ready", flush=True)
    try:
        time.sleep(60)
    except Terminated:
        print("stopping", flush=True)
        time.sleep(1.5)              # a second SIGTERM here would end the run before the next line
        print("cleaned up", flush=True)
        raise
run_cli(main)
"""


@pytest.mark.parametrize("to", ["the parent alone", "the process group"])
def test_sigterm_to_a_script_that_runs_another_reaches_the_child_once(tmp_path, to):
    """reproduce.py and slot_diffusion's --baseline train run a training script as a child: SIGTERM to the parent
    alone (`kill PID`) made subprocess.run kill the child with SIGKILL, mid-write, its temp file left. run_child
    passes the signal on after its grace and waits for the child's own one line; a signal that reached the child
    too (`timeout`, a scheduler, a terminal's Ctrl-C: the process group) is not sent twice."""
    import signal
    import subprocess
    import sys

    (tmp_path / "child.py").write_text(CHILD_RUN.format(repo=str(REPO)))
    log = tmp_path / "child.log"
    parent = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from common.errors import run_cli
from common.runtime import run_child
run_cli(lambda argv: run_child([sys.executable, {str(tmp_path / "child.py")!r}], {str(log)!r}, grace=0.5))
"""
    process = subprocess.Popen([sys.executable, "-c", parent], stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the child never started"
        time.sleep(0.05)
    if to == "the parent alone":
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.strip() == (
        "terminated (SIGTERM): the last checkpoint is kept; continue with --resume")
    assert log.read_text().splitlines() == [
        "ready", "stopping", "cleaned up", "terminated (SIGTERM): the last checkpoint is kept; continue with --resume"]


def test_run_cli_gives_back_the_sigterm_handler_it_found():
    import signal

    from common.errors import run_cli

    before = signal.getsignal(signal.SIGTERM)
    seen = []
    run_cli(lambda argv: seen.append(signal.getsignal(signal.SIGTERM)))
    assert seen[0] is not before and signal.getsignal(signal.SIGTERM) is before
