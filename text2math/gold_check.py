"""How many of MathQA's gold programs execute to the correct option, and why the others do not.

    python text2math/gold_check.py --data-root ../shared/data          # dev.json (or --file PATH)
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import REPO_ROOT
from common.cli import OneLineParser, positive_float
from common.errors import UserError, run_cli
from common.rundir import make_dir, output_file, write_json
from text2math.data import generated_rows, problem_from_row, read_mathqa_rows
from text2math.program import ExecutionError, execute_tokens, matches, option_values, split_options

OUTCOMES = {
    "ok": "executes to the correct option's value",
    "unparseable_option": "the correct option has no numeric value (e.g. 'none of these', an expression)",
    "execution_error": "the program does not run (unknown name, missing number, math domain error)",
    "wrong_value_other_option": "runs, but to the value of another option",
    "wrong_value": "runs, to a value no option has",
}


def classify(row: dict, tolerance: float, where: str = "row") -> tuple[str, str]:
    problem = problem_from_row(row, where)
    if not problem.answers:
        return "unparseable_option", ""
    try:
        value = execute_tokens(problem.program, problem.numbers)
    except ExecutionError as err:
        return "execution_error", str(err)
    if matches(value, problem.answers, tolerance):
        return "ok", ""
    others = [option_values(text) for letter, text in split_options(row["options"]).items()
              if letter != str(row["correct"]).strip().lower()]
    return ("wrong_value_other_option" if any(matches(value, o, tolerance) for o in others if o)
            else "wrong_value"), ""


def build_parser() -> OneLineParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-root", type=Path, default=REPO_ROOT / "data", help="holds MathQA/ (default: <repo>/data)")
    add("--file", type=Path, default=None, help="a MathQA json file (default: <data-root>/MathQA/dev.json)")
    add("--tolerance", type=positive_float, nargs="+", default=[0.01, 0.02, 0.05],
        help="relative tolerances to report (default: %(default)s)")
    add("--out", type=Path, default=None, help="also write the counts as json here (default: none written)")
    add("--smoke", action="store_true", help="check 200 generated problems instead")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.file is None and not args.smoke:
        args.file = args.data_root / "MathQA" / "dev.json"
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    if args.out:
        args.out = output_file(args.out, "--out", ".json")   # checked before the counting, not after
    if args.smoke:
        rows, name = generated_rows(200, 0), "200 generated problems"
    else:
        path = args.file
        if not Path(path).is_file():
            raise UserError(f"no MathQA json file at {path}; pass --data-root (holding MathQA/dev.json) or --file")
        rows, name = read_mathqa_rows(path), str(path)
        for i, row in enumerate(rows):  # every row readable before any is counted
            problem_from_row(row, f"{path} row {i}")
    result = {"file": name, "problems": len(rows), "tolerances": {}}
    for tolerance in args.tolerance:
        counts = Counter(classify(row, tolerance)[0] for row in rows)
        result["tolerances"][str(tolerance)] = {k: counts.get(k, 0) for k in OUTCOMES}
        print(f"tolerance {tolerance:g}: {counts.get('ok', 0) / len(rows):.2%} of {len(rows):,} gold programs "
              f"execute to the correct option; " + ", ".join(f"{k} {counts.get(k, 0)}" for k in OUTCOMES if k != "ok"))
    errors = Counter(classify(row, args.tolerance[0])[1].split(" ")[0] for row in rows) - Counter({"": 10**9})
    result["execution_errors"] = dict(errors)
    if args.out:
        make_dir(args.out.parent, "--out")
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    run_cli(main)
