"""sketch_rnn end to end: train.py (smoke, resume, real-format files), sample.py (grid, GIF, --live
without a display), and one-line errors."""
import json
import os

import pytest
import torch
from PIL import Image

from sketch_rnn import sample, train
from sketch_rnn.recognizer import load_recognizer, predict
from sketch_rnn.sample import load_generator
from sketch_rnn.shapes import generated_lines
from tests.conftest import REPO, kill_after_first_checkpoint, run_script

TINY = ["--embed-dim", "4", "--prompt-len", "2", "--encoder-hidden", "4", "--decoder-hidden", "8",
        "--attention-dim", "4", "--mixtures", "2", "--eval-per-class", "2", "--grid-per-class", "2",
        "--wandb", "off", "--device", "cpu"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sketch") / "run"
    summary = train.main(["--smoke", "--out", str(out)])
    return out, summary


def test_smoke_run_writes_samples_gif_and_recognizer(smoke_run):
    out, summary = smoke_run
    for name in ("samples.png", "samples.gif", "curves.png", "recognizer.pt", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train_offset_loss", "train_pen_loss", "train_pen_acc", "val_offset_loss", "val_pen_acc"):
        assert key in record
    assert summary["chance"] == pytest.approx(0.2)
    # recognisability recomputed from the saved generator and recognizer: same seed, same sketches
    seed = json.loads((out / "config.json").read_text())["args"]["seed"]
    generator = load_generator(out / "checkpoint.pt", torch.device("cpu"))
    recognizer, _ = load_recognizer(out / "recognizer.pt")
    sketches, requested = train.generate_sketches(generator, 2, summary["temperature"], seed)
    hits = [len(s) > 0 and p == r for s, p, r in zip(sketches, predict(recognizer, sketches), requested)]
    assert summary["samples_judged"] == len(hits) == 2 * len(summary["classes"])
    assert summary["recognisability"] == pytest.approx(sum(hits) / len(hits))
    per_class = list(summary["recognisability_per_class"].values())
    assert summary["recognisability"] == pytest.approx(sum(per_class) / len(per_class))


def test_parse_takes_the_recipe_and_smoke_shrinks_it(tmp_path):
    args = train.parse(["--out", str(tmp_path / "run")])
    assert {k: getattr(args, k) for k in train.RECIPE} == train.RECIPE
    smoke = train.parse(["--smoke", "--max-len", "300", "--out", str(tmp_path / "run")])
    assert smoke.epochs == 2 and smoke.max_len == 40
    assert {k: getattr(smoke, k) for k in train.SMOKE} == train.SMOKE
    assert sample.DEFAULTS["temperature"] == train.RECIPE["temperature"]   # one number: SAMPLE_TEMPERATURE


def test_sample_parse_puts_the_samples_beside_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = sample.parse(["--checkpoint", "run/checkpoint.pt", "--temperature", "0.8"])
    assert args.checkpoint == tmp_path / "run" / "checkpoint.pt" and args.out == tmp_path / "run" / "samples_T0.8"
    assert sample.parse(["--smoke"]).out == tmp_path / "samples_T0.3"
    assert sample.parse([]).out is None       # main refuses a run without --checkpoint or --smoke


@pytest.mark.slow
def test_sample_script_writes_grid_and_gif_and_says_when_there_is_no_display(smoke_run, tmp_path):
    out, _ = smoke_run
    env_display = os.environ.pop("DISPLAY", None), os.environ.pop("WAYLAND_DISPLAY", None)
    try:
        done = run_script(str(REPO / "sketch_rnn/sample.py"), "--checkpoint", str(out / "checkpoint.pt"),
                          "--per-class", "2", "--temperature", "0.8", "--live", "--smoke", "--out",
                          str(tmp_path / "s"), cwd=tmp_path)
    finally:
        for key, value in zip(("DISPLAY", "WAYLAND_DISPLAY"), env_display):
            if value is not None:
                os.environ[key] = value
    assert done.returncode == 0, done.stderr
    assert "--live: no display" in done.stdout
    assert (tmp_path / "s" / "samples.png").stat().st_size > 0
    with Image.open(tmp_path / "s" / "samples.gif") as gif:
        assert gif.size[0] > 0 and gif.n_frames >= 1  # an untrained model may end its sketches at once


@pytest.mark.slow
def test_sample_script_errors_are_one_line(tmp_path):
    missing = run_script(str(REPO / "sketch_rnn/sample.py"), "--checkpoint", str(tmp_path / "none.pt"))
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    bad = run_script(str(REPO / "sketch_rnn/sample.py"), "--checkpoint", str(tmp_path / "bad.pt"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "corrupt checkpoint" in bad.stderr


def _raw_root(tmp_path, classes, count=12, corrupt=False):
    folder = tmp_path / "data" / "quickdraw" / "raw"
    folder.mkdir(parents=True)
    for name in classes:
        lines = generated_lines(name, count, 1)
        if corrupt:
            lines[3] = lines[3][:40]
        (folder / f"{name}.ndjson").write_text("\n".join(lines) + "\n")
    return tmp_path / "data"


@pytest.mark.slow
def test_real_format_files_train_end_to_end_and_an_interrupted_run_resumes_to_the_same_numbers(
        tmp_path, monkeypatch):
    root = _raw_root(tmp_path, ["circle", "square"])
    common = ["--data", "real", "--data-root", str(root), "--classes", "circle", "square", "--batch-size", "8",
              "--epochs", "2", *TINY]
    whole = train.main([*common, "--out", str(tmp_path / "whole")])
    assert whole["data_source"].startswith("real: Quick, Draw! (circle 12, square 12)")
    kill_after_first_checkpoint(train.main, [*common, "--out", str(tmp_path / "split")], monkeypatch)
    resumed = train.main([*common, "--out", str(tmp_path / "split"), "--resume"])
    for key in ("train_loss", "val_pen_acc", "test_offset_loss", "recognisability"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-5), key


@pytest.mark.slow
def test_corrupt_ndjson_is_a_one_line_error(tmp_path):
    root = _raw_root(tmp_path, ["star"], corrupt=True)
    done = run_script(str(REPO / "sketch_rnn/train.py"), "--data", "real", "--data-root", str(root), "--classes",
                      "star", "--out", str(tmp_path / "run"), *TINY)
    assert done.returncode == 2 and "star.ndjson:4" in done.stderr and "Traceback" not in done.stderr


def test_report_builds_from_run_directories(smoke_run, tmp_path):
    from common.reporting import load_result
    from sketch_rnn import report

    out, summary = smoke_run
    specs = report.runs(True)
    assert [s.name for s in specs] == ["seed", "gmm", "gmm_seed1", "gmm_seed2"] and "--epochs" in specs[0].args
    assert [s.args[s.args.index("--seed") + 1] for s in specs[2:]] == ["1", "2"]
    results = {s.name: load_result(s.name, out) for s in specs}
    markdown = report.build(results, tmp_path / "sketch_rnn")
    assert "| `seed` |" in markdown and "| `gmm` |" in markdown and "93.70%" in markdown
    share = f"{100 * summary['recognisability']:.2f}%"
    assert f"| **mean ± std** (3 seeds) |  | **{share} ± 0.00** |" in markdown, "three equal runs: no spread"
    assert all(f"{name} |" in markdown for name in summary["classes"]), "a column per class"
    assert summary["data_source"] in markdown
    for line in markdown.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("](")[1].rstrip(")")).exists(), line

