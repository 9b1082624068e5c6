"""MathQA: the json loader (numbers -> n0, n1, ...), the download, the seeded 90/10 split of dev when
no train.json is present, GloVe's text format, and generated template problems in MathQA's schema."""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.data_source import resolve_data, with_source
from common.download import download_file, fetch
from common.errors import UserError
from common.formats import bounded_lines, given_file, read_text, regular_file
from text2math.program import (ExecutionError, correct_values, execute, execute_tokens, option_values, split_options,
                               tokenize)

MATHQA_URL = "https://math-qa.github.io/math-QA/data/MathQA.zip"
FIELDS = ("Problem", "options", "correct", "linear_formula")
MAX_GENERATED = 200_000   # --n-generated: the stand-in's problems
N_GENERATED = 3000         # --n-generated's default (train.py, knn.py)
MAX_GLOVE_LINE = 1 << 20   # characters: a GloVe line is a word and its values (300d: about 3 kB)
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w])|(?<![\w.])\.\d+")


@dataclass
class Problem:
    text: str                 # the problem with its numbers replaced by n0, n1, ...
    numbers: list[float]      # the values of n0, n1, ...
    program: list[str]        # the tokenised linear formula
    answers: list[float]      # what the correct option can mean ([] when it is not numeric)
    category: str
    formula: str
    options: list[list[float]] = field(default_factory=list)   # what each of the five options can mean
    gold_value: float | None = None                             # the gold program's value (None: it fails)


@dataclass
class MathQASplits:
    train: list[Problem]
    test: list[Problem]
    source: str
    val: list[Problem] = field(default_factory=list)   # carved from train (early stopping), never from test


def extract_numbers(text: str) -> tuple[str, list[float]]:
    """'a train 120 m long runs at 1,200 m / s' -> ('a train n0 m long runs at n1 m / s', [120, 1200])."""
    numbers: list[float] = []

    def replace(match: re.Match) -> str:
        numbers.append(float(match.group(0).replace(",", "")))
        return f"n{len(numbers) - 1}"

    return NUMBER.sub(replace, text), numbers


def check_row(row: object, where: str) -> dict:
    """A MathQA row with the fields the loaders read, of the types MathQA writes (Problem, correct and
    linear_formula strings; options a string or a list of strings); else a one-line UserError."""
    if not isinstance(row, dict):
        raise UserError(f"{where} is a {type(row).__name__}, not a problem object; is this a MathQA json file?")
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}; is this a MathQA json file?")
    wrong = [f for f in ("Problem", "correct", "linear_formula") if not isinstance(row[f], str)]
    options = row["options"]
    if not (isinstance(options, str) or (isinstance(options, list) and all(isinstance(o, str) for o in options))):
        wrong.append("options")
    if wrong:
        found = ", ".join(f"{f} is {_kind(row[f])}" for f in wrong)
        raise UserError(f"{where}: {found}, not text; is this a MathQA json file? (fix or delete the row)")
    return row


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def problem_from_row(row: dict, where: str) -> Problem:
    row = check_row(row, where)
    text, numbers = extract_numbers(row["Problem"].strip().lower())
    try:
        program = tokenize(row["linear_formula"])
    except ExecutionError as err:
        raise UserError(f"{where}: unreadable linear_formula '{row['linear_formula'][:80]}' ({err})") from None
    try:
        gold_value = execute_tokens(program, numbers)
    except ExecutionError:
        gold_value = None
    options = [option_values(text) for text in split_options(row["options"]).values()]
    return Problem(text, numbers, program, correct_values(row["options"], row["correct"]),
                   str(row.get("category", "")), row["linear_formula"], options, gold_value)


def read_mathqa_rows(path: Path) -> list[dict]:
    """One MathQA json file's rows (a list of objects with Problem, options, correct, linear_formula,
    ...), each checked; anything else is a one-line UserError naming the file (and the row)."""
    try:
        rows = json.loads(read_text(path, "fetch MathQA again"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read {path} ({why}); fetch MathQA again") from None
    if not isinstance(rows, list) or not rows:
        found = "an empty list" if isinstance(rows, list) else _kind(rows)
        raise UserError(f"{path} holds no list of problems (it holds {found}); is it a MathQA json file?")
    return [check_row(row, f"{path} row {i}") for i, row in enumerate(rows)]


def read_mathqa_json(path: Path) -> list[Problem]:
    """One MathQA json file (a list of rows with Problem, options, correct, linear_formula, ...)."""
    return [problem_from_row(row, f"{path} row {i}") for i, row in enumerate(read_mathqa_rows(path))]


def read_given_file(path: Path, flag: str) -> list[Problem]:
    """A file named on the command line (--train-file, --eval-file); a bad one is one line naming the flag."""
    return read_mathqa_json(given_file(path, flag, "give a MathQA json file (e.g. MathQA/test.json)"))


def with_files(data: MathQASplits, train_file: Path | None, eval_file: Path | None, *, seed: int,
               test_fraction: float) -> MathQASplits:
    """--train-file / --eval-file over the resolved data: a train file alone is split like dev.json; an
    eval file alone replaces the evaluation part (training stays the default training part)."""
    train, test, source = data.train, data.test, data.source
    if train_file is not None:
        train = read_given_file(train_file, "--train-file")
        if eval_file is None:
            train, test = split(train, test_fraction, seed)
            return MathQASplits(train, test, f"real: {Path(train_file).name} split {1 - test_fraction:.0%}/"
                                             f"{test_fraction:.0%} (seed {seed}): {len(train):,} train / "
                                             f"{len(test):,} test")
        source = f"real: {Path(train_file).name} ({len(train):,} train)"
    if eval_file is not None:
        test = read_given_file(eval_file, "--eval-file")
        source = f"{source}; evaluated on {Path(eval_file).name} ({len(test):,} problems)"
    return MathQASplits(train, test, source)


def carve_validation(data: MathQASplits, fraction: float, seed: int) -> MathQASplits:
    """A seeded share of the training problems set aside for early stopping (the test part is untouched)."""
    if fraction <= 0 or len(data.train) < 2:
        return MathQASplits(data.train, data.test, data.source, data.train[:0])
    order = np.random.default_rng([seed, 11]).permutation(len(data.train))
    n_val = max(1, int(round(len(data.train) * fraction)))
    return MathQASplits([data.train[i] for i in order[n_val:]], data.test, data.source,
                        [data.train[i] for i in order[:n_val]])


def split(problems: Sequence[Problem], test_fraction: float, seed: int) -> tuple[list, list]:
    order = np.random.default_rng([seed, 7]).permutation(len(problems))
    n_test = max(1, int(round(len(problems) * test_fraction)))
    return [problems[i] for i in order[n_test:]], [problems[i] for i in order[:n_test]]


# --- generated template problems (the offline stand-in), in MathQA's json schema ------------------
@dataclass(frozen=True)
class Template:
    category: str
    phrasings: tuple[str, ...]        # str.format with the names of `numbers`
    numbers: Callable[[np.random.Generator], dict[str, float]]
    formula: str                      # in terms of n0, n1, ... in order of appearance


def _ints(**ranges: tuple[int, int]) -> Callable[[np.random.Generator], dict[str, float]]:
    return lambda rng: {k: int(rng.integers(lo, hi + 1)) for k, (lo, hi) in ranges.items()}


TEMPLATES: tuple[Template, ...] = (
    Template("gain", ("what is {a} % of {b} ?", "find {a} percent of {b} .", "{a} % of a number {b} is ?"),
             _ints(a=(2, 95), b=(10, 900)),
             "multiply(n0,n1)|divide(#0,const_100)"),
    Template("physics", ("a car travels {d} km in {t} hours . what is its speed in km / hr ?",
                         "a cyclist covers {d} km in {t} hours . find the speed ."),
             _ints(d=(20, 600), t=(2, 12)), "divide(n0,n1)"),
    Template("physics", ("a train runs at {v} km / hr . how many meters does it cover in {t} seconds ?",
                         "in {t} seconds , how far in meters does a train at {v} km / hr go ?"),
             _ints(v=(30, 150), t=(5, 60)), "multiply(n0,const_0_2778)|multiply(#0,n1)"),
    Template("geometry", ("a rectangular field is {a} m long and {b} m wide . find its area .",
                          "find the area of a rectangle with sides {a} cm and {b} cm ."),
             _ints(a=(3, 90), b=(2, 60)), "rectangle_area(n0,n1)"),
    Template("geometry", ("find the area of a circle of radius {r} cm .",
                          "what is the area of a circular garden whose radius is {r} m ?"),
             _ints(r=(1, 40)), "circle_area(n0)"),
    Template("geometry", ("a cylinder has radius {r} cm and height {h} cm . find its volume .",),
             _ints(r=(1, 20), h=(2, 30)), "volume_cylinder(n0,n1)"),
    Template("gain", ("find the simple interest on rs . {p} at {r} % per annum for {t} years .",
                      "what interest does rs . {p} earn in {t} years at {r} % simple interest ?"),
             _ints(p=(100, 9000), r=(2, 15), t=(2, 9)),
             "multiply(n0,n1)|multiply(#0,n2)|divide(#1,const_100)"),
    Template("general", ("the sum of the ages of a father and son is {s} years . the father is {d} years "
                         "older than the son . how old is the son ?",),
             lambda rng: {"s": int(rng.integers(40, 100)), "d": int(rng.integers(18, 38))},
             "subtract(n0,n1)|divide(#0,const_2)"),
    Template("gain", ("an article bought for rs . {c} is sold for rs . {s} . find the gain percent .",
                      "the price of a book rises from {c} to {s} . by what percent did it rise ?"),
             lambda rng: (lambda c: {"c": c, "s": c + int(rng.integers(1, c))})(int(rng.integers(50, 900))),
             "subtract(n1,n0)|divide(#0,n0)|multiply(#1,const_100)"),
    Template("physics", ("a can finish a work in {a} days and b in {b} days . in how many days can they "
                         "finish it together ?", "pipe a fills a tank in {a} hours and pipe b in {b} hours . "
                         "how long do both take together ?"),
             _ints(a=(2, 30), b=(2, 30)), "divide(const_1,n0)|divide(const_1,n1)|add(#0,#1)|divide(const_1,#2)"),
    Template("general", ("the average of {k} numbers is {m} . what is their sum ?",
                         "{k} students have an average score of {m} . find the total score ."),
             _ints(k=(3, 40), m=(10, 99)), "multiply(n0,n1)"),
    Template("probability", ("in how many ways can {k} of {n} people be chosen ?",),
             lambda rng: (lambda n: {"n": n, "k": int(rng.integers(2, n))})(int(rng.integers(4, 12))),
             "choose(n1,n0)"),
)
_DISTRACTOR_FACTORS = (0.5, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0)


def _format(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def generated_rows(n: int, seed: int) -> list[dict]:
    """`n` template problems as MathQA json rows (Problem, Rationale, options, correct, formulas)."""
    rng = np.random.default_rng([seed, 13])
    rows = []
    while len(rows) < n:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        phrasing = template.phrasings[int(rng.integers(len(template.phrasings)))]
        values = template.numbers(rng)
        text = phrasing.format(**values)
        _, numbers = extract_numbers(text)
        answer = execute(template.formula, numbers)
        letters = "abcde"
        correct = letters[int(rng.integers(5))]
        factors = iter(rng.choice(_DISTRACTOR_FACTORS, size=4, replace=False))
        options = [_format(answer) if letter == correct else _format(answer * next(factors)) for letter in letters]
        rows.append({"Problem": text, "Rationale": "generated from a template", "correct": correct,
                     "options": " , ".join(f"{letter} ) {o}" for letter, o in zip(letters, options)),
                     "annotated_formula": template.formula, "linear_formula": template.formula + "|",
                     "category": template.category})
    return rows


# --- resolving --data --------------------------------------------------------------------------
def _download(folder: Path, announce: Callable[[str], None]) -> None:
    def run() -> None:
        archive = download_file(MATHQA_URL, folder / "MathQA.zip")
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder)

    fetch([MATHQA_URL], run, lambda: announce(f"downloading MathQA into {folder} ..."))


def load_mathqa(mode: str, root: Path | None, *, seed: int, smoke: bool = False, n_generated: int = N_GENERATED,
                test_fraction: float = 0.1, announce: Callable[[str], None] = print) -> MathQASplits:
    """train.json (+ test.json or dev.json) when present; else a seeded 90/10 split of dev.json;
    else (auto) the generated template problems, announced. `root` may be None for generated data."""
    folder = Path(root) / "MathQA" if root is not None else None
    data, _ = resolve_data(
        mode, name="MathQA", where=folder, needs="dev.json or train.json",
        present=lambda: (folder / "train.json").exists() or (folder / "dev.json").exists(),
        download=lambda: _download(folder, announce), read=lambda: with_source(_read_real(folder, seed, test_fraction)),
        stand_in=lambda: with_source(_generated(64 if smoke else n_generated, seed, test_fraction)),
        hint=f"put MathQA's json files there (from {MATHQA_URL}) or point --data-root at them",
        smoke=smoke, announce=announce)
    return data


def _read_real(folder: Path, seed: int, test_fraction: float) -> MathQASplits:
    if (folder / "train.json").exists():
        evaluation = next((folder / n for n in ("test.json", "dev.json") if (folder / n).exists()), None)
        if evaluation is None:
            raise UserError(f"{folder} has train.json but neither test.json nor dev.json to evaluate on")
        train, test = read_mathqa_json(folder / "train.json"), read_mathqa_json(evaluation)
        return MathQASplits(train, test, f"real: MathQA train.json ({len(train):,}) / {evaluation.name} "
                                         f"({len(test):,}) from {folder}")
    train, test = split(read_mathqa_json(folder / "dev.json"), test_fraction, seed)
    if (folder / "test.json").exists():
        print(f"{folder / 'test.json'} is not used by default (no train.json): pass --eval-file to evaluate on it")
    return MathQASplits(train, test, f"real: MathQA dev.json split {1 - test_fraction:.0%}/{test_fraction:.0%} "
                                     f"(seed {seed}): {len(train):,} train / {len(test):,} test, from {folder}")


def _generated(n: int, seed: int, test_fraction: float) -> MathQASplits:
    if n > MAX_GENERATED:   # 1e9 generated for ever, filling the memory
        raise UserError(f"--n-generated {n:,}: the generated stand-in makes at most {MAX_GENERATED:,} problems "
                        "(about 30 s)")
    problems = [problem_from_row(row, "generated") for row in generated_rows(n, seed)]
    train, test = split(problems, test_fraction, seed)
    return MathQASplits(train, test, f"generated: {n:,} template word problems in MathQA's schema "
                                     f"({len(TEMPLATES)} templates, seed {seed}): {len(train):,} train / "
                                     f"{len(test):,} test")


# --- GloVe -------------------------------------------------------------------------------------
def read_glove(path: Path, words: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """GloVe's text format (`word v1 v2 ...` a line); only `words` when given. All vectors one size."""
    wanted = set(words) if words is not None else None
    vectors: dict[str, np.ndarray] = {}
    try:
        fix = "pass --glove PATH to glove.6B.*d.txt"
        with open(regular_file(path, fix), encoding="utf8") as handle:
            for line_number, line in enumerate(bounded_lines(handle, path, MAX_GLOVE_LINE, fix), 1):
                parts = line.rstrip().split(" ")
                if len(parts) < 2:
                    continue
                if wanted is not None and parts[0] not in wanted:
                    continue
                try:
                    with np.errstate(over="ignore", invalid="ignore"):   # too large for float32: inf, refused below
                        vector = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise UserError(f"{path} line {line_number} is not 'word v1 v2 ...'; is it a GloVe text "
                                    f"file?") from None
                if not np.isfinite(vector).all():   # NaN / inf (or a number too large for float32): corrupt input
                    raise UserError(f"{path} line {line_number} ('{parts[0][:40]}') holds a NaN or infinite value; "
                                    f"the file is damaged: fetch glove.6B again")
                if vectors and len(vector) != len(next(iter(vectors.values()))):
                    raise UserError(f"{path} line {line_number} has {len(vector)} values, earlier lines "
                                    f"{len(next(iter(vectors.values())))}; the file is damaged")
                vectors[parts[0]] = vector
    except OSError as err:
        raise UserError(f"cannot read GloVe file {path} ({err.strerror}); pass --glove PATH to "
                        f"glove.6B.*d.txt") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; is it a GloVe text file (glove.6B.*d.txt)?") from None
    return vectors
