"""reproduce.py: runs the declared runs, writes the report with its plots, rebuilds without retraining."""
import importlib

import pytest

from common.errors import UserError
from reproduce import assignments
from tests.conftest import REPO, run_script


def test_every_assignment_declares_runs_and_a_builder():
    for name in assignments():
        module = importlib.import_module(f"{name}.report")
        specs = module.runs(True)
        assert specs and len({s.name for s in specs}) == len(specs)
        assert callable(module.build)


@pytest.mark.slow
def test_smoke_reproduction_then_report_only(tmp_path):
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

    again = run_script(str(REPO / "reproduce.py"), "mnist_scratch", *common, "--report-only", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "minibatch_90-10: kept" in again.stdout
    assert summary.stat().st_mtime_ns == stamp


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
