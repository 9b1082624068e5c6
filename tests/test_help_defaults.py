"""`--help` tells the truth: for every script, each flag's default that --help shows is the value a run uses.

Every script exposes `build_parser()` (what --help prints) and `parse(argv)` (the arguments `main` runs with,
after presets, derived values and checks). A flag whose value is resolved later (from a preset, from the data
set) has the default None, and its help says how it is resolved."""
import argparse
import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO

# resolved by the shared flags for every script (common.cli.parse_args): paths made absolute, threads counted
RESOLVED_BY_COMMON = {"help", "out", "data_root", "threads", "wandb"}


def scripts_with_parsers() -> list[str]:
    found = []
    for path in sorted(REPO.glob("*/*.py")):
        if path.parts[-2] in ("tests", "bench", "common", ".venv"):
            continue
        names = {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}
        if {"build_parser", "parse"} <= names:
            found.append(path.relative_to(REPO).with_suffix("").as_posix().replace("/", "."))
    return found


SCRIPTS = scripts_with_parsers()


def test_every_train_script_exposes_its_parser_and_parse():
    trains = sorted(p.parent.name + ".train" for p in REPO.glob("*/train.py"))
    assert len(trains) == 10
    assert not sorted(set(trains) - set(SCRIPTS))


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_defaults_are_the_defaults_a_run_uses(module, tmp_path, monkeypatch):
    script = importlib.import_module(module)
    parser = script.build_parser()
    monkeypatch.chdir(tmp_path)     # nothing is written, but a relative path would show here
    # a script with required flags names minimal values for them in HELP_TEST_ARGS (parse opens no file)
    args = script.parse([*getattr(script, "HELP_TEST_ARGS", []), "--out", str(tmp_path / "run")])
    shown = [action for action in parser._actions
             if action.dest not in RESOLVED_BY_COMMON and action.default not in (None, argparse.SUPPRESS)]
    assert shown
    wrong = {}
    for action in shown:
        used = getattr(args, action.dest)
        default = action.default
        if isinstance(default, Path) or isinstance(used, Path):
            default, used = Path(default).expanduser().resolve(), Path(used).expanduser().resolve()
        if isinstance(default, (list, tuple)) and isinstance(used, (list, tuple)):
            default, used = list(default), list(used)
        if used != default:
            wrong[action.option_strings[0] if action.option_strings else action.dest] = (default, used)
    assert not wrong, f"--help shows (shown, used): {wrong}"


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_names_every_default(module):
    """Each flag that has a default says so in --help (argparse's %(default)s, or its own words)."""
    parser = importlib.import_module(module).build_parser()
    silent = [action.option_strings[0] for action in parser._actions
              if action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
              and "default" not in (action.help or "").lower()]
    assert not silent, silent
