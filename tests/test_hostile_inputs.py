"""Hostile and careless inputs to the data layer (issue 17): data files whose pickle would run code,
a --data-root that is a file, MathQA rows of the wrong type and options built to be slow, index
tokens with thousands of digits, NaN / Infinity coordinates, and wandb on an offline machine.

Each case is one clear line (a UserError, or exit 2 and one `error:` line for a script), nothing runs,
and nothing is created. Tiny files are written here in the real formats; nothing touches the network."""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import time

import numpy as np
import pytest

from common import download, tracking
from common.cli import make_parser, parse_args
from common.datasets import CIFAR10_NAMES, REAL_SETS, load_image_dataset
from common.errors import UserError
from common.formats import read_cifar_batch, read_cifar_meta, read_npz, write_cifar_batch
from sketch_rnn.data import load_sketches, parse_ndjson_line
from sketch_rnn.data import read_npz as read_sketch_npz
from tests.conftest import REPO, run_script
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
