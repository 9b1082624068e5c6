"""reproduce.py: runs the declared runs, writes the report with its plots, rebuilds without retraining."""
import importlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from common.errors import UserError
from common.reporting import Headline, RunResult, load_result, pct
from common.runtime import last_line
import reproduce
from reproduce import assignments
from tests.conftest import REPO, run_script


@pytest.mark.parametrize("name", assignments())
def test_every_assignment_declares_runs_a_builder_and_a_headline(name):
    module = importlib.import_module(f"{name}.report")
    specs = module.runs(True)
    assert specs and len({s.name for s in specs}) == len(specs)
    assert callable(module.build)
    row = module.headline({})                 # no runs at all: still a row, never a KeyError
    assert isinstance(row, Headline) and row.ours == "not run"
    assert row.task and row.metric and row.original and "\n" not in row.task + row.metric


def test_mnist_headline_puts_the_original_figure_beside_the_default_run():
    from mnist_scratch import report

    default = RunResult(report.DEFAULT_RUN, Path("."), {}, {"test_acc": 0.98236}, [])
    row = report.headline({report.DEFAULT_RUN: default})
    assert (row.original, row.ours) == ("94.70%", "98.24%")


def test_the_index_keeps_each_assignments_row_and_replaces_its_own(tmp_path):
    import reproduce

    def row(ours: str) -> dict:
        return {**asdict(Headline("task", "metric", "—", ours)), "data": "generated", "mode": "smoke", "runs": 1,
                "training_minutes": 0.1, "commit": "abc", "made": "2026-12-06"}
    reproduce.add_to_index(tmp_path, "second", row("1%"))
    reproduce.add_to_index(tmp_path, "first", row("2%"))
    text = reproduce.add_to_index(tmp_path, "second", row("3%")).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert [line.split("](")[0] for line in rows] == ["| [first", "| [second"]
    assert "| 3% |" in rows[1] and "| 1% |" not in text and "[second](second.md)" in rows[1]


def test_each_mode_writes_its_own_reports_folder_so_a_quick_run_never_replaces_a_real_data_row():
    import reproduce

    folders = {mode: reproduce.reports_dir_of(reproduce.build_parser().parse_args(["x", *flags]))
               for mode, flags in {"full": [], "quick": ["--quick"], "smoke": ["--smoke"]}.items()}
    assert folders == {"full": REPO / "reports", "quick": REPO / "reports" / "quick",
                       "smoke": REPO / "reports" / "smoke"}
    chosen = reproduce.build_parser().parse_args(["x", "--quick", "--reports-dir", "elsewhere"])
    assert reproduce.reports_dir_of(chosen) == Path("elsewhere")


def test_the_index_names_each_rows_command_and_lists_the_assignments_without_a_row(tmp_path):
    import reproduce

    row = {**asdict(Headline("task", "metric", "—", "9%")), "data": "real", "mode": "full", "runs": 2,
           "training_minutes": 1.5, "wall_minutes": 2.5, "commit": "abc", "made": "2026-12-06",
           "command": "python reproduce.py mnist_scratch --data-root ../shared/data"}
    text = reproduce.add_to_index(tmp_path, "mnist_scratch", row).read_text()
    assert "| 1.5 | 2.5 | 2026-12-06, abc |" in text
    assert "- mnist_scratch: `python reproduce.py mnist_scratch --data-root ../shared/data`" in text
    missing = [line for line in text.splitlines() if "not reproduced in this folder yet" in line]
    assert len(missing) == len(assignments()) - 1 and not any("mnist_scratch:" in line for line in missing)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"mnist_scratch": {"ours": "1%"}}', '{"x": 3}'])
def test_an_index_file_reproduce_did_not_write_is_refused_in_one_line_and_kept(tmp_path, text):
    import reproduce

    (tmp_path / "index.json").write_text(text)
    row = {**asdict(Headline("task", "metric", "—", "9%")), "data": "real", "mode": "full", "runs": 1,
           "training_minutes": 1.0, "commit": "abc", "made": "2026-12-06"}
    with pytest.raises(UserError, match="is not an index reproduce.py wrote"):
        reproduce.add_to_index(tmp_path, "mnist_scratch", row)
    assert (tmp_path / "index.json").read_text() == text


def test_a_row_names_the_commit_its_runs_were_made_at_not_the_one_rebuilding_it():
    import reproduce

    def run(commit, started):
        return RunResult("r", Path("."), {"git_commit": commit, "started": started}, {}, [])
    same = {"a": run("0123456789abcdef", "2026-12-01T10:00:00+0000"), "b": run("0123456789abcdef", "2026-12-02T1")}
    assert reproduce._runs_commit(same) == "0123456789ab" and reproduce._runs_date(same) == "2026-12-02"
    mixed = {"a": run("0123456789abcdef+dirty", "2026-12-01"), "b": run("fedcba9876543210", "2026-12-01")}
    assert reproduce._runs_commit(mixed) == "2 commits: 0123456789ab+dirty, fedcba987654"


def test_the_command_in_a_report_names_the_data_root_relative_to_the_repository():
    import reproduce

    inside = reproduce.build_parser().parse_args(["kd_cifar10", "--data-root", str(REPO / "data")])
    assert reproduce._command("kd_cifar10", inside) == "python reproduce.py kd_cifar10 --data-root data"
    outside = reproduce.build_parser().parse_args(["kd_cifar10", "--data-root", "../shared/data", "--data", "real"])
    assert reproduce._command("kd_cifar10", outside) == \
        "python reproduce.py kd_cifar10 --data real --data-root ../shared/data"


def test_a_report_names_no_absolute_path_of_this_machine(tmp_path):
    import reproduce

    args = reproduce.build_parser().parse_args(["mnist_scratch", "--data-root", str(tmp_path / "shared")])
    text = reproduce._portable(f"from {tmp_path / 'shared' / 'MNIST'}; --pretrained {REPO / 'runs' / 'w.pth'}", args)
    assert text == f"from {tmp_path / 'shared'}/MNIST; --pretrained runs/w.pth"
    relative = reproduce.build_parser().parse_args(["mnist_scratch", "--data-root", "data"])
    assert reproduce._portable(f"from {REPO / 'data' / 'MNIST'}", relative) == "from data/MNIST"


@pytest.mark.slow
def test_smoke_reproduction_then_report_only(tmp_path, capsys):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    common = ["--smoke", "--runs-dir", str(runs), "--reports-dir", str(reports)]
    first = run_script(str(REPO / "reproduce.py"), "mnist_scratch", *common, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr
    report = (reports / "mnist_scratch.md").read_text()
    assert "| 90:10 | minibatch |" in report and "| xavier | relu |" in report
    assert "embedded: scikit-learn digits" in report and "python reproduce.py mnist_scratch --smoke" in report
    assert "| max |" in report and "| avg |" in report, "the CNN pool comparison rows"
    assert all(f"| {schedule} |" in report for schedule in ("constant", "step", "exponential", "polynomial", "cosine"))
    assert "| pool1 | 4×4 | 2 |" in report, "the receptive-field table"
    for heading in ("## Foundations", "### Activations", "### XOR", "### Universal approximation", "### Gradient flow"):
        assert heading in report, heading
    assert "| sigmoid | xavier |" in report and "| relu | he |" in report, "the gradient-flow rows"
    for line in report.splitlines():
        if line.startswith("!["):
            assert (reports / line.split("](")[1].rstrip(")")).exists(), line
    summary = runs / "mnist_scratch" / "minibatch_90-10" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    wall = json.loads((summary.parent / "reproduce_wall.json").read_text())
    assert wall["seconds"] > 0 and len(wall["load"]) == 2 and "load average" in report
    assert "- mnist_scratch: `python reproduce.py mnist_scratch --smoke`" in (reports / "index.md").read_text()
    mnist_row = f"| 94.70% | {pct(json.loads(summary.read_text())['test_acc'])} |"
    assert mnist_row in _index_rows(reports)["mnist_scratch"], "the index: the original report's figure, then ours"

    again = run_script(str(REPO / "reproduce.py"), "mnist_scratch", *common, "--report-only", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "minibatch_90-10: kept" in again.stdout
    assert summary.stat().st_mtime_ns == stamp
    _damaged_runs_are_one_line(runs / "mnist_scratch" / "minibatch_90-10", common, capsys)

    # a second assignment (PyTorch, the fastest smoke reproduction) into the same reports: its row joins the first
    second = run_script(str(REPO / "reproduce.py"), "sketch_rnn", *common, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr
    rows = _index_rows(reports)
    assert list(rows) == ["mnist_scratch", "sketch_rnn"] and mnist_row in rows["mnist_scratch"]
    from sketch_rnn import report as sketch_report

    results = {spec.name: load_result(spec.name, runs / "sketch_rnn" / spec.name) for spec in sketch_report.runs(True)}
    row = sketch_report.headline(results)      # on the real smoke runs: every seed's run counted
    pen = [r.summary["test_pen_acc"] for r in results.values() if r.config["args"]["head"] == "gmm"]
    assert len(pen) == len(sketch_report.SEEDS) and row.ours.startswith(sketch_report.mean_std(pen))
    assert f"| {row.original} | {row.ours} |" in rows["sketch_rnn"] and "(smoke)" in rows["sketch_rnn"]


def _damaged_runs_are_one_line(run: Path, common: list[str], capsys) -> None:
    """--report-only on a run whose config.json lacks a field the report reads (KeyError), whose args are no object
    (TypeError), whose summary.json is empty or whose figure is gone (FileNotFoundError) gave tracebacks in every
    assignment; each is one line now, and the run is left as it was."""
    config, summary, figure = run / "config.json", run / "summary.json", run / "confusion_normalised.png"
    saved = {path: path.read_bytes() for path in (config, summary, figure)}
    good = json.loads(saved[config])
    for path, damaged, needle in (
            (config, {**good, "args": {k: v for k, v in good["args"].items() if k != "seed"}},
             "cannot build mnist_scratch's report from the runs under .* \\(KeyError: 'seed', at mnist_scratch/"
             "report.py line \\d+\\): a run's config.json"),
            (config, {**good, "args": []}, "config.json: its args or hardware are no object; delete"),
            (config, {k: v for k, v in good.items() if k != "hardware"}, "is not what this project writes there"),
            (summary, {}, "cannot build mnist_scratch's report .* \\(KeyError: "),
            (figure, None, "confusion_normalised.png is missing or no file: the report copies it from the run")):
        path.unlink() if damaged is None else path.write_text(json.dumps(damaged))
        with pytest.raises(UserError, match="1 of 1 failed \\(mnist_scratch\\)"):
            reproduce.main(["mnist_scratch", *common, "--report-only"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(needle, err[0]), err
        path.write_bytes(saved[path])


def _index_rows(reports: Path) -> dict[str, str]:
    """reports/index.md's table rows by assignment, each checked to link that assignment's report."""
    rows = {}
    for line in (reports / "index.md").read_text().splitlines():
        if line.startswith("| ["):
            name = line[3:line.index("]")]
            assert line.startswith(f"| [{name}]({name}.md) |") and (reports / f"{name}.md").exists(), line
            rows[name] = line
    return rows


@pytest.mark.slow
def test_report_only_without_runs_is_a_clear_error(tmp_path):
    done = run_script(str(REPO / "reproduce.py"), "mnist_scratch", "--smoke", "--report-only",
                      "--runs-dir", str(tmp_path / "none"), "--reports-dir", str(tmp_path / "rep"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--report-only: run" in done.stderr and "missing or unfinished" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("argv,message", [([], "name an assignment or pass --all"),
                                          (["nope"], "unknown assignment nope")])
def test_bad_assignment_names(argv, message):
    done = run_script(str(REPO / "reproduce.py"), *argv)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_report_only_for_all_prints_one_short_line_per_failure(tmp_path, capsys):
    """Issue 17, defect 12: `--all --report-only` without runs gave one ~1 KB line."""
    import reproduce

    with pytest.raises(UserError, match=r"of \d+ failed \(.*\): their errors are above") as info:
        reproduce.main(["--all", "--report-only", "--runs-dir", str(tmp_path / "none"),
                        "--reports-dir", str(tmp_path / "rep")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(reproduce.assignments()) and all(len(line) < 300 for line in lines)
    assert len(str(info.value)) < 300


def test_an_unwritable_reports_dir_is_one_line(tmp_path):
    import reproduce

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--reports-dir .* is a file, not a folder"):
        reproduce.main(["mnist_scratch", "--report-only", "--reports-dir", str(tmp_path / "file" / "rep")])


@pytest.mark.parametrize("options", [True, False])
def test_text2math_headline_puts_each_reranked_figure_beside_the_knn_figure_it_compares_with(options):
    from text2math import report

    def summary(seed):
        aware, plain = {"exec_acc": 0.46 + seed / 100, "option_acc": 0.46}, {"exec_acc": 0.36, "option_acc": 0.45}
        first, other = (aware, plain) if options else (plain, aware)
        knn = {"exec_acc": 0.35, "option_acc": 0.43 + seed / 100}
        return {"exec_acc": 0.3, "rerank": {**first, "options": options, "other": other, "knn": knn}}
    results = {run: RunResult(run, Path("."), {}, summary(seed), []) for seed, run in report.SEEDS.items()}
    row = report.headline(results)
    assert row.ours == "47.00 ± 1.00 option-aware (kNN 44.00 ± 1.00); 36.00 ± 0.00 plain top-1 (kNN 35.00 ± 0.00)"
    for seed, run in report.LEARNED_KNN.items():       # knn.py --learned's runs: their top-1 joins the kNN's
        results[run] = RunResult(run, Path("."), {}, {"learned": {"exec_acc": 0.38 + seed / 100}}, [])
    assert report.headline(results).ours.endswith("plain top-1 (kNN 35.00 ± 0.00, learned kNN 39.00 ± 1.00)")
    del results[report.SEEDS[2]].summary["rerank"]
    assert "greedy" in report.headline(results).metric     # a run without the reranker: the greedy figure


def test_a_failed_runs_last_log_line_is_read_from_the_logs_end(tmp_path):
    """A failed run's one-line report quotes its log's last line; the log was read whole (and a byte that was no
    UTF-8 gave a traceback)."""
    log = tmp_path / "log.txt"
    log.write_bytes(b"epoch 1 \xff\n" + b"x" * 200_000 + b"\rprogress 99%\nerror: out of memory\n\n")
    assert last_line(log) == "error: out of memory"
    assert "error: out of memory".endswith(last_line(log, tail=20))   # a line longer than the tail: its end
    log.write_bytes(b"\xffend")
    assert last_line(log) == "\ufffdend"
    log.write_bytes(b"")
    assert last_line(log) == "(no output)"


def test_a_runs_recorded_wall_time_reads_as_zero_when_missing_or_damaged(tmp_path):
    """reproduce_wall.json is read for the report's timings only: what is missing or damaged counts as nothing."""
    wall = tmp_path / reproduce.WALL_FILE
    assert reproduce._timing(tmp_path) == (0.0, [])
    for text in ("x", "[]", '{"seconds": "a"}', '{"seconds": null}', '{"load": [1]}', '{"seconds": 5, "load": 3}'):
        wall.write_text(text)
        assert reproduce._timing(tmp_path) == (0.0, []), text
    wall.write_text('{"seconds": 5, "load": [1, "a", 2, 2e7]}')
    assert reproduce._timing(tmp_path) == (5.0, [1.0, 2.0])
    wall.unlink()
    wall.mkdir()
    assert reproduce._timing(tmp_path) == (0.0, [])


def test_an_interrupted_run_keeps_its_seconds_and_its_log_when_resumed(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM to reproduce.py mid-run recorded no wall time (the file was written after the child
    returned), and the resumed run's log replaced the interrupted one's. Both now carry over."""
    import argparse
    import time

    from common.reporting import RunSpec

    calls = []

    def child(command, log, *, cwd=None, append=False, seconds=0.3, stop=True):
        calls.append(("--resume" in command, append))
        with open(log, "a" if append else "w") as handle:
            handle.write(f"part {len(calls)}\n")
        time.sleep(seconds)
        if stop:
            raise KeyboardInterrupt
        return 0

    args = argparse.Namespace(quick=True, smoke=False, data="auto", data_root=tmp_path, report_only=False)
    out, spec = tmp_path / "run", RunSpec("run", ("--epochs", "1"))
    monkeypatch.setattr(reproduce, "run_child", child)
    with pytest.raises(KeyboardInterrupt):
        reproduce.ensure_run("mnist_scratch", spec, out, args)
    first = reproduce._timing(out)[0]
    assert first >= 0.3
    (out / "config.json").write_text("{}")          # the child got as far as starting its run
    monkeypatch.setattr(reproduce, "run_child", lambda *a, **k: child(*a, **k, seconds=0.2, stop=False))
    assert reproduce.ensure_run("mnist_scratch", spec, out, args) == "resumed"
    assert calls == [(False, False), (True, True)]
    assert (out / "log.txt").read_text() == "part 1\npart 2\n"
    assert reproduce._timing(out)[0] >= first + 0.2


def test_run_child_appends_to_the_log_only_when_asked(tmp_path):
    import sys

    from common.runtime import run_child

    log = tmp_path / "log.txt"
    say = [sys.executable, "-c", "print('hello')"]
    assert run_child(say, log) == 0 and run_child(say, log, append=True) == 0
    assert log.read_text() == "hello\nhello\n"
    assert run_child(say, log) == 0 and log.read_text() == "hello\n"


def test_a_report_error_names_the_projects_line_it_came_from():
    """The report's catch-all said every KeyError was a damaged run to delete; it names the line now, so a bug in
    a report's code reads as one."""
    import json as json_module

    def report_code():
        return {}["missing"]

    for raise_it, where in ((report_code, r"tests/test_reproduce\.py line \d+"),
                            (lambda: json_module.loads("{"), r"tests/test_reproduce\.py line \d+")):
        with pytest.raises((KeyError, ValueError)) as caught:
            raise_it()
        assert re.fullmatch(where, reproduce._where(caught.value)), reproduce._where(caught.value)
    assert reproduce._where(KeyError("never raised")) == "an unknown line"


def test_a_run_reproduce_did_not_make_is_never_overwritten(tmp_path, monkeypatch):
    """--runs-dir pointed at a folder of the user's own runs: a run there under a spec's name (config.json, no
    reproduce_spec.json) was trained again with --overwrite, deleting it. It is refused in one line, untouched."""
    import argparse

    from common.reporting import RunSpec

    monkeypatch.setattr(reproduce, "run_child", lambda *a, **k: pytest.fail("nothing may run"))
    out = tmp_path / "mnist_scratch" / "minibatch_90-10"
    out.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
        (out / name).write_text("mine")
    args = argparse.Namespace(quick=False, smoke=False, data="auto", data_root=tmp_path, report_only=False)
    with pytest.raises(UserError, match="holds a run reproduce.py did not make; move it away"):
        reproduce.ensure_run("mnist_scratch", RunSpec("minibatch_90-10", ()), out, args)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    assert all((out / name).read_text() == "mine" for name in ("config.json", "metrics.jsonl", "checkpoint.pt"))
