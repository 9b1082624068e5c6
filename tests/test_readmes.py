"""Every README is a report a grader can trust: its commands parse with their script's own parser, its links
and images exist, it stays within its length, and it names no temporary path."""
import importlib
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO

READMES = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "README.md", *REPO.glob("*/README.md")]
                 if p.parent.name not in ("tests", "bench") and not p.parent.name.startswith("."))   # .pytest_cache
LIMITS = {"README.md": 120}          # the root README; an assignment's report: 150
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
TEMPORARY = re.compile(r"(?<![\w.])/tmp/|/work/|/root/|\.pytest_cache|/var/folders/")


def commands(text: str) -> list[list[str]]:
    """The `python X/Y.py ...` / `torchrun ... X/Y.py ...` commands of the fenced blocks, continuation lines
    joined, each cut at the first shell operator; [script, *args]."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            for stop in ("|", "&&", ";", ">", "2>&1", "||", "&"):
                if stop in words:
                    words = words[:words.index(stop)]
            scripts = [i for i, w in enumerate(words) if w.endswith(".py") and "=" not in w]
            if scripts and words[0] in ("python", "python3", "torchrun", ".venv/bin/python") or \
                    (scripts and words[0].endswith("python")):
                i = scripts[0]
                found.append([words[i], *words[i + 1:]])
    return found


def parser_of(script: str):
    """The argparse parser of a project script named as in a README (`sketch_rnn/train.py`, `reproduce.py`)."""
    path = Path(script)
    if path.parts and path.parts[0] in ("..", "/"):
        return None
    module = ".".join(path.with_suffix("").parts)
    if not (REPO / path).exists():
        raise AssertionError(f"{script}: no such script")
    loaded = importlib.import_module(module)
    return loaded.build_parser() if hasattr(loaded, "build_parser") else None


def test_the_readmes_are_found():
    assert "README.md" in READMES and "slot_attention/README.md" in READMES


@pytest.mark.parametrize("readme", READMES)
def test_readme_length(readme):
    lines = (REPO / readme).read_text().count("\n")
    assert lines <= LIMITS.get(readme, 150), f"{readme}: {lines} lines"


@pytest.mark.parametrize("readme", READMES)
def test_readme_links_and_images_exist(readme):
    path = REPO / readme
    missing = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{readme}: {missing}"


@pytest.mark.parametrize("readme", READMES)
def test_readme_names_no_temporary_path(readme):
    bad = [line.strip() for line in (REPO / readme).read_text().splitlines() if TEMPORARY.search(line)]
    assert not bad, bad


@pytest.mark.parametrize("readme", READMES)
def test_readme_commands_parse_with_their_scripts_parser(readme, capsys):
    wrong = []
    for script, *argv in commands((REPO / readme).read_text()):
        parser = parser_of(script)
        if parser is None:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as stop:
            if stop.code:
                wrong.append(f"{script} {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert not wrong, "\n".join(wrong)


def test_the_command_reader_reads_continuations_and_stops_at_pipes():
    text = "```bash\npython a/train.py --epochs 2 \\\n    --lr 0.1 | tee log  # note\ntorchrun --nproc_per_node=2 " \
           "b/train.py --smoke\nmake test\n```\n"
    assert commands(text) == [["a/train.py", "--epochs", "2", "--lr", "0.1"], ["b/train.py", "--smoke"]]


def test_make_clean_removes_scratch_and_never_a_real_run(tmp_path):
    """`make clean` was `rm -rf runs ...`: every real run (hours of training, runs/reproduce among them) went with
    the scratch. It removes the smoke and --quick folders and pytest's cache only (run in a copy of the Makefile)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    kept = ["runs/mnist_scratch/minibatch/metrics.jsonl", "runs/reproduce/text2math/seed0/checkpoint.pt",
            "reports/index.md", "runs/text2math/feature_cache/a.pt"]
    gone = ["runs/smoke/mnist_scratch/x/metrics.jsonl", "runs/reproduce-quick/a/b", "runs/reproduce-smoke/a/b",
            "reports/quick/index.md", "reports/smoke/index.md", ".pytest_cache/v"]
    for name in kept + gone:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / name).exists() for name in kept)
    assert not any((tmp_path / name.split("/")[0] / name.split("/")[1]).exists() for name in gone)
