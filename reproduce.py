"""Run the runs behind an assignment's report table and write reports/<assignment>.md, and the grader's index
reports/index.md (one row per assignment: the original report's figure, ours, data, time, link).

    python reproduce.py mnist_scratch --quick     # the embedded data, a few minutes on a laptop
    python reproduce.py mnist_scratch             # real data when present or downloadable
    python reproduce.py --all --quick
    python reproduce.py mnist_scratch --report-only   # rebuild from existing summaries, no training

A full reproduction writes reports/ (committed: the real-data reports and index); --quick and --smoke write
reports/quick/ and reports/smoke/, so an offline check never replaces a real-data row. Finished runs are not
retrained (their flags are recorded next to them); an interrupted one is resumed. Every assignment is
attempted; failures are listed together at the end (exit 1)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from common import REPO_ROOT
from common.cli import DATA_MODES, OneLineParser
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.formats import read_text
from common.progress import progress
from common.reporting import Headline, RunResult, RunSpec, load_result, markdown_table
from common.rundir import make_dir, read_json, write_json, write_text_atomic
from common.runtime import git_commit, last_line, run_child

SPEC_FILE = "reproduce_spec.json"
WALL_FILE = "reproduce_wall.json"   # the seconds the run's command took (summed over resumes)


def assignments() -> list[str]:
    """Every assignment folder that declares its report runs."""
    return sorted(p.parent.name for p in REPO_ROOT.glob("*/report.py") if (p.parent / "train.py").exists())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("assignments", nargs="*", help=f"which to reproduce: {', '.join(assignments())}")
    add("--all", action="store_true", help="every assignment")
    add("--quick", action="store_true", help="the embedded data (--data generated): offline, minutes")
    add("--smoke", action="store_true", help="every run with --smoke (tiny data): checks the pipeline in seconds")
    add("--report-only", action="store_true", help="rebuild the reports from existing runs; never train")
    add("--data", choices=DATA_MODES, default="auto", help="data mode for a full reproduction (default: %(default)s)")
    add("--data-root", type=Path, default=REPO_ROOT / "data", help="real data sets (default: <repo>/data)")
    add("--runs-dir", type=Path, default=None, help="where the runs go (default: runs/reproduce[-quick|-smoke])")
    add("--reports-dir", type=Path, default=None,
        help="where reports go (default: <repo>/reports, or reports/quick, reports/smoke)")
    return parser


def _mode(args) -> str:
    return "smoke" if args.smoke else ("quick" if args.quick else "full")


def run_command(assignment: str, spec: RunSpec, out: Path, args) -> list[str]:
    data = "generated" if args.quick or args.smoke else args.data
    command = [sys.executable, str(REPO_ROOT / assignment / spec.script), *spec.args,
               "--data", data, "--data-root", str(args.data_root.resolve()), "--out", str(out)]
    return command + (["--smoke"] if args.smoke else [])


def ensure_run(assignment: str, spec: RunSpec, out: Path, args) -> str:
    """Train (or resume) one run unless it is already finished with the same flags. Returns what was done."""
    command = run_command(assignment, spec, out, args)
    recorded = out / SPEC_FILE
    identity = {"script": spec.script, "args": list(spec.args), "mode": _mode(args)}
    same = recorded.exists() and read_json(recorded, f"move {out} away to train it again") == identity
    if same and (out / "summary.json").exists():
        return "kept"
    if args.report_only:
        raise UserError(f"--report-only: run {out} is missing or unfinished; drop --report-only to train it")
    if not recorded.exists() and (out / "config.json").exists():   # --overwrite would delete a run of the user's
        raise UserError(f"{out} holds a run reproduce.py did not make; move it away, or pick another --runs-dir")
    action = "resumed" if same and (out / "config.json").exists() else "trained"
    command.append("--resume" if action == "resumed" else "--overwrite")
    make_dir(out, "--runs-dir")
    write_json(recorded, identity)
    earlier = _timing(out)[0] if action == "resumed" else 0.0
    tic, load = time.perf_counter(), os.getloadavg()[0]
    try:   # a resumed run's log continues the interrupted one's; an interrupted run's seconds count too
        returncode = run_child(command, out / "log.txt", cwd=REPO_ROOT, append=action == "resumed")
    finally:
        write_json(out / WALL_FILE, {"seconds": round(earlier + time.perf_counter() - tic, 1),
                                     "load": [round(load, 2), round(os.getloadavg()[0], 2)]})
    if returncode != 0:
        raise UserError(f"{assignment}/{spec.name} failed (exit {returncode}): {last_line(out / 'log.txt')}; "
                        f"log: {out / 'log.txt'}")
    return action


def _timing(out: Path) -> tuple[float, list[float]]:
    """A run's recorded WALL_FILE: the seconds its command took (summed over resumes) and the 1-minute load
    averages when it started and ended; (0, []) where nothing readable was recorded."""
    try:
        values = read_json(out / WALL_FILE, "it is not read", keys=("seconds",))   # a failure is a UserError here
        loads = values.get("load", [])
        return float(values["seconds"]), [float(x) for x in loads if isinstance(x, (int, float)) and 0 <= x < 1e6]
    except (UserError, ValueError, TypeError):   # none recorded, damaged, or seconds / loads of another type
        return 0.0, []


def _timings(results: dict[str, RunResult]) -> tuple[float, str]:
    """The runs' wall seconds in all, and their load averages said as a clause: a wall time on a busy machine
    is not comparable with one on an idle machine."""
    timed = [_timing(r.path) for r in results.values()]
    loads = [x for _, run_loads in timed for x in run_loads]
    said = f"; load average {min(loads):.1f}-{max(loads):.1f} at the runs' starts and ends" if loads else ""
    return sum(seconds for seconds, _ in timed), said


def _runs_commit(results: dict[str, RunResult]) -> str:
    """The commit the runs were made at (each run's config.json), not the one that rebuilt the report."""
    commits = sorted({_short(str(r.config.get("git_commit") or "unknown")) for r in results.values()})
    return commits[0] if len(commits) == 1 else f"{len(commits)} commits: {', '.join(commits)}"


def _short(commit: str) -> str:
    """'30d69b9e5857+dirty': twelve digits, and whether the working tree had uncommitted changes."""
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def _runs_date(results: dict[str, RunResult]) -> str:
    days = sorted({str(r.config.get("started") or "")[:10] for r in results.values()} - {""})
    return days[-1] if days else time.strftime("%Y-%m-%d")


def reports_dir_of(args) -> Path:
    return args.reports_dir or REPO_ROOT / "reports" / {"full": "", "quick": "quick", "smoke": "smoke"}[_mode(args)]


def runs_dir_of(args) -> Path:
    return (args.runs_dir or REPO_ROOT / "runs" / f"reproduce{'' if _mode(args) == 'full' else '-' + _mode(args)}")


INDEX = "index.json"   # the index's rows, kept across invocations (one assignment at a time adds its row)


def reproduce(assignment: str, args) -> Path:
    module = importlib.import_module(f"{assignment}.report")
    runs_dir = runs_dir_of(args)
    specs: list[RunSpec] = module.runs(args.quick or args.smoke)
    results: dict[str, RunResult] = {}
    tic = time.perf_counter()
    for spec in progress(specs, desc=assignment, leave=True):
        out = runs_dir.resolve() / assignment / spec.name
        action = ensure_run(assignment, spec, out, args)
        results[spec.name] = load_result(spec.name, out)
        print(f"  {assignment}/{spec.name}: {action}", flush=True)
    reports_dir = reports_dir_of(args).resolve()
    try:   # the report reads many fields of the runs' files: one a damaged file lacks is one line, not a traceback
        body = module.build(results, reports_dir / assignment)
        header = _header(assignment, results, args, time.perf_counter() - tic)
        headline: Headline = module.headline(results)
        sources = sorted({short_source(r.config["data_source"]) for r in results.values()})
        training = sum(float(r.summary.get("train_seconds") or 0) for r in results.values())
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise UserError(f"cannot build {assignment}'s report from the runs under {runs_dir / assignment} "
                        f"({type(err).__name__}: {str(err)[:120]}, at {_where(err)}): a run's config.json, "
                        f"summary.json or metrics.jsonl may lack what the report reads (move that run away and "
                        f"reproduce again), or the report code has a bug there") from None
    report = reports_dir / f"{assignment}.md"
    write_text_atomic(report, _portable(header + body + "\n", args))
    wall, _ = _timings(results)
    add_to_index(reports_dir, assignment, {
        **asdict(headline), "data": ", ".join(sources), "mode": _mode(args), "runs": len(results),
        "training_minutes": round(training / 60, 1), "wall_minutes": round(wall / 60, 1),
        "command": _command(assignment, args), "commit": _runs_commit(results), "made": _runs_date(results)})
    return report


def _where(err: BaseException) -> str:
    """'text2math/report.py line 88': the project's innermost line the error passed through (the report's code
    or a run file's reader), so a report's bug reads as one, not only as a damaged run."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve().is_relative_to(REPO_ROOT)
              and ".venv" not in Path(f.filename).parts]
    if not frames:
        return "an unknown line"
    return f"{Path(frames[-1].filename).resolve().relative_to(REPO_ROOT)} line {frames[-1].lineno}"


def add_to_index(reports_dir: Path, assignment: str, row: dict) -> Path:
    """Add (or replace) the assignment's row in reports/index.json and rebuild reports/index.md from every row;
    an assignment with no row yet is listed below the table with the command that makes its row."""
    store = reports_dir / INDEX
    rows = _index_rows(store)
    rows[assignment] = row
    write_json(store, rows)   # atomic: a kill mid-write would leave an index the next run refuses
    table = markdown_table(
        ["assignment", "what the course asked", "metric", "original report", "ours", "data", "runs",
         "training (min)", "wall (min)", "made"],
        [[f"[{name}]({name}.md)", r["task"], r["metric"], r["original"], r["ours"], f"{r['data']} ({r['mode']})",
          r["runs"], r["training_minutes"], r.get("wall_minutes", "—"), f"{r['made']}, {r['commit']}"]
         for name, r in sorted(rows.items())])
    made = [f"- {name}: `{r['command']}`" for name, r in sorted(rows.items()) if r.get("command")]
    missing = [f"- {name}: not reproduced in this folder yet; `python reproduce.py {name}`"
               for name in assignments() if name not in rows]
    index = reports_dir / "index.md"
    write_text_atomic(index, (
        "# Reports index\n\nOne row per assignment, rebuilt by `python reproduce.py`; each row links to its report "
        "(tables and plots). \"training\" sums the runs' training time, \"wall\" the runs' commands from start to end "
        "(evaluation and plots included); \"(quick)\" and \"(smoke)\" rows ran on the embedded generated data.\n\n"
        + table + "\n"
        + ("\nThe commands that made the rows:\n\n" + "\n".join(made) + "\n" if made else "")
        + ("\nNot in this index:\n\n" + "\n".join(missing) + "\n" if missing else "")))
    return index


ROW_KEYS = ("task", "metric", "original", "ours", "data", "mode", "runs", "training_minutes", "made", "commit")


def _index_rows(store: Path) -> dict:
    """The rows an earlier invocation kept; a file that is not such an index is refused, never overwritten."""
    if not store.exists():
        return {}
    try:
        rows = json.loads(read_text(store, "move it away"))
    except (OSError, ValueError) as err:
        raise UserError(f"{store} is not an index reproduce.py wrote ({type(err).__name__}); move it away") from None
    if not isinstance(rows, dict) or not all(isinstance(r, dict) and all(k in r for k in ROW_KEYS)
                                             for r in rows.values()):
        raise UserError(f"{store} is not an index reproduce.py wrote (rows without {', '.join(ROW_KEYS)}); "
                        "move it away")
    return rows


def _command(assignment: str, args) -> str:
    command = "python reproduce.py " + assignment + {"full": "", "quick": " --quick", "smoke": " --smoke"}[_mode(args)]
    if _mode(args) == "full" and args.data != "auto":
        command += f" --data {args.data}"
    if _mode(args) == "full":
        command += f" --data-root {shlex.quote(str(_shown_root(args)))}"
    return command


def _portable(text: str, args) -> str:
    """A committed report names the data root as given on the command line and paths in the repository
    relative to it, never this machine's absolute paths."""
    text = text.replace(str(args.data_root.resolve()), str(_shown_root(args)))
    return text.replace(str(REPO_ROOT) + "/", "")


def _shown_root(args) -> Path:
    root = args.data_root.resolve()
    return root.relative_to(REPO_ROOT) if root.is_relative_to(REPO_ROOT) else args.data_root


def _header(assignment: str, results: dict[str, RunResult], args, seconds: float) -> str:
    sources = sorted({r.config["data_source"] for r in results.values()})
    seeds = sorted({r.config["args"]["seed"] for r in results.values()})
    hardware = next(iter(results.values())).config["hardware"]
    command, commit = _command(assignment, args), _runs_commit(results)
    wall, loads = _timings(results)
    return "\n".join([
        f"# {assignment} report ({_mode(args)} reproduction)", "",
        f"- data: {'; '.join(sources)}",
        f"- seeds: {', '.join(map(str, seeds))}; {len(results)} runs",
        f"- command: `{command}`",
        f"- runs made at {'' if ' commits' in commit else 'commit '}{commit} "
        f"(last started {_runs_date(results)}), report built "
        f"{time.strftime('%Y-%m-%d %H:%M')} at commit {git_commit()[:12]}, on "
        f"{hardware['processor']} ({hardware['cpu_count']} cores, {hardware['device']}); "
        f"the runs' commands took {wall / 60:.1f} min in all{loads}; this invocation "
        f"{seconds:.0f} s (runs kept from earlier invocations not counted)",
        "", "",
    ])


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    chosen = assignments() if args.all else args.assignments
    if not chosen:
        raise UserError("name an assignment or pass --all; one of: " + ", ".join(assignments()))
    unknown = [a for a in chosen if a not in assignments()]
    if unknown:
        raise UserError(f"unknown assignment {', '.join(unknown)}; choose from {', '.join(assignments())}")
    make_dir(reports_dir_of(args), "--reports-dir")
    make_dir(runs_dir_of(args).expanduser().resolve(), "--runs-dir")   # a folder that cannot be made: one line, first
    failures = []
    for assignment in chosen:
        try:
            print(f"wrote {reproduce(assignment, args)}")
        except UserError as err:
            print(f"error: {assignment}: {err}", file=sys.stderr, flush=True)
            failures.append(assignment)
    if failures:
        raise UserError(f"{len(failures)} of {len(chosen)} failed ({', '.join(failures)}): their errors are above")


if __name__ == "__main__":
    run_cli(main)
