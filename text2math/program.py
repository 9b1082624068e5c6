"""MathQA's program language: the operation and constant registries, the tokeniser and the executor,
and the parser of an answer-options string.

A linear formula is `op(arg,arg)|op(arg,...)|...`: arguments are the problem's numbers `n0, n1, ...`,
earlier results `#0, #1, ...` and constants `const_*`. Tokens are the operation name, its arguments
and a `|` closing each operation: `divide(n0,n1)|multiply(#0,const_100)` ->
`divide n0 n1 | multiply #0 const_100 |`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

END_OP = "|"
PI = math.pi


class ExecutionError(ValueError):
    """A program that cannot run: unknown name, wrong arity, missing number, math domain error."""


@dataclass(frozen=True)
class Operation:
    arity: int
    fn: Callable[..., float]


def _integer(x: float, what: str) -> int:
    if abs(x - round(x)) > 1e-9 or x < 0 or x > 1000:
        raise ExecutionError(f"{what} needs a non-negative integer up to 1000, got {x:g}")
    return int(round(x))


def _factorial(x: float) -> float:
    return float(math.factorial(_integer(x, "factorial")))


def _gcd(a: float, b: float) -> float:
    return float(math.gcd(int(round(a)), int(round(b))))


def _lcm(a: float, b: float) -> float:
    return float(math.lcm(int(round(a)), int(round(b))))


def _combination(n: float, k: float) -> float:
    return float(math.comb(_integer(n, "combination"), _integer(k, "combination")))


def _permutation(n: float, k: float) -> float:
    return float(math.perm(_integer(n, "permutation"), _integer(k, "permutation")))


def _heron(a: float, b: float, c: float) -> float:
    s = (a + b + c) / 2
    return math.sqrt(s * (s - a) * (s - b) * (s - c))


def _sum_consecutive(a: float, b: float) -> float:
    """Sum of the integers from a to b inclusive."""
    lo, hi = sorted((int(round(a)), int(round(b))))
    return float((lo + hi) * (hi - lo + 1) / 2)


# name -> (arity, function). Every name of MathQA's operation_list.txt, plus `choose`, which its
# annotated programs use for combinations.
OPERATIONS: dict[str, Operation] = {name: Operation(arity, fn) for name, arity, fn in [
    ("add", 2, lambda a, b: a + b),
    ("subtract", 2, lambda a, b: a - b),
    ("multiply", 2, lambda a, b: a * b),
    ("divide", 2, lambda a, b: a / b),
    ("log", 1, math.log),
    ("sqrt", 1, math.sqrt),
    ("factorial", 1, _factorial),
    ("gcd", 2, _gcd),
    ("lcm", 2, _lcm),
    ("power", 2, lambda a, b: float(a ** b)),
    ("max", 2, max),
    ("min", 2, min),
    ("reminder", 2, lambda a, b: a % b),
    ("negate", 1, lambda a: -a),
    ("inverse", 1, lambda a: 1 / a),
    ("round", 1, lambda a: float(round(a))),
    ("floor", 1, lambda a: float(math.floor(a))),
    ("sine", 1, math.sin),
    ("cosine", 1, math.cos),
    ("tangent", 1, math.tan),
    ("radians_to_degree", 1, lambda a: a * 180 / PI),
    ("degree_to_radians", 1, lambda a: a * PI / 180),
    ("sum_consecutive_number", 2, _sum_consecutive),
    ("circle_area", 1, lambda r: PI * r ** 2),
    ("circumface", 1, lambda r: 2 * PI * r),
    ("circle_arc", 2, lambda r, angle: 2 * PI * r * angle / 360),
    ("semi_circle_perimiter", 1, lambda r: PI * r + 2 * r),
    ("circle_sector_area", 2, lambda r, angle: PI * r ** 2 * angle / 360),
    ("rectangle_perimeter", 2, lambda a, b: 2 * (a + b)),
    ("rectangle_area", 2, lambda a, b: a * b),
    ("square_perimeter", 1, lambda a: 4 * a),
    ("square_area", 1, lambda a: a ** 2),
    ("trapezium_area", 3, lambda a, b, h: (a + b) * h / 2),
    ("rhombus_perimeter", 1, lambda a: 4 * a),
    ("rhombus_area", 2, lambda d1, d2: d1 * d2 / 2),
    ("quadrilateral_area", 3, lambda h, a, b: h * (a + b) / 2),
    ("volume_cone", 2, lambda r, h: PI * r ** 2 * h / 3),
    ("volume_rectangular_prism", 3, lambda a, b, c: a * b * c),
    ("volume_cube", 1, lambda a: a ** 3),
    ("volume_sphere", 1, lambda r: 4 / 3 * PI * r ** 3),
    ("volume_cylinder", 2, lambda r, h: PI * r ** 2 * h),
    ("surface_cone", 2, lambda r, slant: PI * r * (r + slant)),
    ("surface_cylinder", 2, lambda r, h: 2 * PI * r * (r + h)),
    ("surface_cube", 1, lambda a: 6 * a ** 2),
    ("surface_rectangular_prism", 3, lambda a, b, c: 2 * (a * b + b * c + c * a)),
    ("surface_sphere", 1, lambda r: 4 * PI * r ** 2),
    ("side_by_diagonal", 1, lambda d: d / math.sqrt(2)),
    ("cube_edge_by_volume", 1, lambda v: v ** (1 / 3)),
    ("diagonal", 2, lambda a, b: math.sqrt(a ** 2 + b ** 2)),
    ("square_edge_by_perimeter", 1, lambda p: p / 4),
    ("square_edge_by_area", 1, math.sqrt),
    ("triangle_perimeter", 3, lambda a, b, c: a + b + c),
    ("triangle_area", 2, lambda base, h: base * h / 2),
    ("triangle_area_three_edges", 3, _heron),
    ("union_prob", 3, lambda a, b, both: a + b - both),
    ("negate_prob", 1, lambda p: 1 - p),
    ("combination", 2, _combination),
    ("choose", 2, _combination),
    ("permutation", 2, _permutation),
    ("count_interval", 2, lambda a, b: b - a + 1),
    ("percent", 2, lambda a, b: a * b / 100),
    ("p_after_gain", 2, lambda p, x: x * (100 + p) / 100),
    ("p_after_loss", 2, lambda p, x: x * (100 - p) / 100),
    ("price_after_gain", 2, lambda p, x: x * (100 + p) / 100),
    ("price_after_loss", 2, lambda p, x: x * (100 - p) / 100),
    ("from_percent", 1, lambda a: a / 100),
    ("gain_percent", 2, lambda cost, sell: (sell - cost) / cost * 100),
    ("loss_percent", 2, lambda cost, sell: (cost - sell) / cost * 100),
    ("negate_percent", 1, lambda a: 100 - a),
    ("original_price_before_gain", 2, lambda p, x: x * 100 / (100 + p)),
    ("original_price_before_loss", 2, lambda p, x: x * 100 / (100 - p)),
    ("to_percent", 1, lambda a: a * 100),
    ("speed", 2, lambda distance, time: distance / time),
    ("combined_work", 2, lambda a, b: 1 / (1 / a + 1 / b)),
    ("find_work", 2, lambda together, a: 1 / (1 / together - 1 / a)),
    ("speed_ratio_steel_to_stream", 2, lambda down, up: (down + up) / (down - up)),
    ("speed_in_still_water", 2, lambda down, up: (down + up) / 2),
    ("stream_speed", 2, lambda down, up: (down - up) / 2),
]}

# Every constant of MathQA's constant_list.txt (lower-cased as the formulas write them).
CONSTANTS: dict[str, float] = {
    "const_pi": PI, "const_2": 2, "const_1": 1, "const_3": 3, "const_4": 4, "const_6": 6, "const_10": 10,
    "const_100": 100, "const_1000": 1000, "const_60": 60, "const_3600": 3600, "const_1_6": 1.6,
    "const_0_6": 0.6, "const_0_2778": 0.2778, "const_0_3937": 0.3937, "const_2_54": 2.54,
    "const_0_4535": 0.4535, "const_2_2046": 2.2046, "const_3_6": 3.6, "const_deg_to_rad": PI / 180,
    "const_180": 180, "const_0_25": 0.25, "const_0_33": 0.33,
}
_NUMERIC_CONST = re.compile(r"const_(\d+(?:[._]\d+)?)$")


def constant_value(name: str) -> float:
    """A registered constant, or a numeric one the annotators wrote outside the list (const_12, const_2.0)."""
    if name in CONSTANTS:
        return CONSTANTS[name]
    match = _NUMERIC_CONST.match(name)
    if match:
        return float(match.group(1).replace("_", "."))
    raise ExecutionError(f"unknown constant {name}")


# --- tokeniser ---------------------------------------------------------------------------------
_STEP = re.compile(r"^\s*([a-z_0-9]+)\s*\((.*)\)\s*$")


def canonical(formula: str) -> str:
    """The formula without spaces, empty steps or a trailing '|'."""
    return "|".join(s for s in formula.replace(" ", "").split("|") if s)


def tokenize(formula: str) -> list[str]:
    """`divide(n0,n1)|multiply(#0,const_100)` -> ['divide', 'n0', 'n1', '|', 'multiply', '#0', 'const_100', '|']."""
    tokens: list[str] = []
    for step in canonical(formula).split("|") if canonical(formula) else []:
        match = _STEP.match(step)
        if not match:
            raise ExecutionError(f"malformed step '{step}'")
        args = [a for a in match.group(2).split(",") if a]
        tokens += [match.group(1), *args, END_OP]
    return tokens


def detokenize(tokens: Sequence[str]) -> str:
    """The inverse of tokenize (a missing final '|' is tolerated)."""
    steps, current = [], []
    for token in tokens:
        if token == END_OP:
            if current:
                steps.append(f"{current[0]}({','.join(current[1:])})")
            current = []
        else:
            current.append(token)
    if current:
        steps.append(f"{current[0]}({','.join(current[1:])})")
    return "|".join(steps)


# --- executor ----------------------------------------------------------------------------------
def _index(digits: str) -> int:
    """The index of `#12` or `n3`; -1 unless plain ASCII digits. Indices of over 9 digits (far beyond
    any program or problem, and past Python's int-digit limit at thousands) read as out of range."""
    if not (digits.isascii() and digits.isdigit()):
        return -1
    return int(digits) if len(digits) <= 9 else 10 ** 9


def _short(token: str, keep: int = 24) -> str:
    return token if len(token) <= keep else f"{token[:keep]}... ({len(token):,} characters)"


def _argument(token: str, numbers: Sequence[float], results: list[float]) -> float:
    if token.startswith("#"):
        index = _index(token[1:])
        if not 0 <= index < len(results):
            raise ExecutionError(f"{_short(token)} refers to a step not computed yet")
        return results[index]
    if token.startswith("n") and _index(token[1:]) >= 0:
        if _index(token[1:]) >= len(numbers):
            raise ExecutionError(f"{_short(token)} but the problem has {len(numbers)} numbers")
        return numbers[_index(token[1:])]
    if token.startswith("const_"):
        return constant_value(token)
    raise ExecutionError(f"unknown argument {_short(token)}")


def execute_tokens(tokens: Sequence[str], numbers: Sequence[float]) -> float:
    """Run a tokenised program; the value of its last step. Raises ExecutionError."""
    results: list[float] = []
    step: list[str] = []
    for token in [*tokens, END_OP]:
        if token != END_OP:
            step.append(token)
            continue
        if not step:
            continue
        name, args = step[0], step[1:]
        op = OPERATIONS.get(name)
        if op is None:
            raise ExecutionError(f"unknown operation {name}")
        if len(args) != op.arity:
            raise ExecutionError(f"{name} takes {op.arity} arguments, got {len(args)}")
        values = [_argument(a, numbers, results) for a in args]
        try:
            value = float(op.fn(*values))
        except (ArithmeticError, ValueError, TypeError) as err:
            raise ExecutionError(f"{name}{tuple(values)}: {err}") from None
        if not math.isfinite(value):
            raise ExecutionError(f"{name}{tuple(values)} is not finite")
        results.append(value)
        step = []
    if not results:
        raise ExecutionError("empty program")
    return results[-1]


def execute(formula: str, numbers: Sequence[float]) -> float:
    return execute_tokens(tokenize(formula), numbers)


# --- answer options ----------------------------------------------------------------------------
_OPTION = re.compile(r"(?:^|,|\[|')\s*'?([a-e])\s*\)")
_NUMBER = r"-?\s*\d[\d,]*(?:\s*\.\s*\d+)?|-?\s*\.\d+"   # '.5', but not the '. 1' of 'b . 1.2\'


def split_options(options: str | list) -> dict[str, str]:
    """'a ) 24 , b ) 1 / 2 , ...' (or the list form some rows use) -> {'a': '24', 'b': '1 / 2', ...}."""
    text = " , ".join(options) if isinstance(options, list) else options
    marks = list(_OPTION.finditer(text))
    parts = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end():end].strip(" ,'[]")
        body = re.sub(rf"^{mark.group(1)}\s*\)\s*", "", body)  # 'a ) a ) 270'
        parts.setdefault(mark.group(1), body)
    return parts


def _to_float(text: str) -> float:
    """'1,200' -> 1200 (thousands); '93,75' -> 93.75 and '40,0' -> 40 (a decimal comma: 1 or 2 digits after it)."""
    text = re.sub(r"\s+", "", text)
    if re.fullmatch(r"-?\d+,\d{1,2}", text):
        return float(text.replace(",", "."))
    return float(text.replace(",", ""))


# An option is read as a sequence of tokens (numbers and the symbols below), made by one regex scan,
# and its value is the first of these token patterns found (earlier patterns first, then leftmost).
# Matching tokens rather than searching the text with one regex per pattern keeps it linear in the
# option's length: a regex search restarted at every digit of a long number is quadratic.
_OPTION_TOKEN = re.compile(rf"(\s*)(?:(?P<num>{_NUMBER})|(?P<sym>[/:π√%+()])|\S)")
_OPTION_PATTERNS: list[tuple[tuple[str, ...], Callable[..., list[float]]]] = [
    (("num", "+", "(", "num", "/", "num", ")", "%"),                                   # 78 + ( 4 / 7 ) %
     lambda w, a, b: [_to_float(w) + _to_float(a) / _to_float(b), (_to_float(w) + _to_float(a) / _to_float(b)) / 100]),
    (("num", "+", "(", "num", "/", "num", ")"), lambda w, a, b: [_to_float(w) + _to_float(a) / _to_float(b)]),
    (("num", "spaced num", "/", "num"), lambda w, a, b: [_to_float(w) + _to_float(a) / _to_float(b)]),  # 2 1 / 2
    (("num", "/", "num"), lambda a, b: [_to_float(a) / _to_float(b)]),
    (("num", ":", "num"), lambda a, b: [_to_float(a) / _to_float(b)]),
    (("num", "π"), lambda a: [_to_float(a) * PI]),
    (("num", "√", "num"), lambda a, b: [_to_float(a) * math.sqrt(_to_float(b))]),
    (("√", "num"), lambda a: [math.sqrt(_to_float(a))]),
    (("num", "%"), lambda a: [_to_float(a), _to_float(a) / 100]),
    (("num",), lambda a: [_to_float(a)]),
]


def _option_tokens(text: str) -> tuple[list[str], list[str]]:
    """(kinds, texts): kind 'num' (or 'spaced num' after whitespace), a symbol of _OPTION_TOKEN, or ''."""
    kinds, texts = [], []
    for match in _OPTION_TOKEN.finditer(text):
        if match.group("num") is not None:
            kinds.append("spaced num" if match.group(1) else "num")
            texts.append(match.group("num"))
        else:
            kinds.append(match.group("sym") or "")
            texts.append("")
    return kinds, texts


def option_values(text: str) -> list[float]:
    """The values an option can mean: '1 / 2' -> [0.5]; '2 1 / 2' -> [2.5]; '25 %' -> [25, 0.25];
    '3 : 7' -> [3/7]; '625 √ 3' -> [625*sqrt 3]; 'rs . 1,200' -> [1200]. [] when nothing numeric (or
    not finite). Linear in the length of `text`."""
    text = re.sub(r"\s+", " ", text.replace("−", "-").lower())
    text = re.sub(r"\b(rs|s|inr|mph|kmph|km|cm|sq|m|hrs|hours|sec) ?\.", " ", text)
    text = re.sub(r"(\d) , (?=\d{3}(?!\d))", r"\1,", text)      # '1 , 000,000': MathQA's spaced thousands
    kinds, texts = _option_tokens(text)
    for pattern, read in _OPTION_PATTERNS:
        start = _find_run(kinds, pattern)
        if start is None:
            continue
        numbers = [texts[start + k] for k, kind in enumerate(pattern) if kind.endswith("num")]
        try:
            values = read(*numbers)
        except (ValueError, ZeroDivisionError, OverflowError):
            return []
        return values if all(math.isfinite(v) for v in values) else []
    return []


def _find_run(kinds: list[str], pattern: tuple[str, ...]) -> int | None:
    """The first index where `pattern` occurs in `kinds` ('num' matches a 'spaced num' too)."""
    for i in range(len(kinds) - len(pattern) + 1):
        if all(kinds[i + k] == kind or (kind == "num" and kinds[i + k] == "spaced num")
               for k, kind in enumerate(pattern)):
            return i
    return None


def correct_values(options: str | list, correct: str) -> list[float]:
    """The numeric values of the correct option ([] when it has none, e.g. 'none of these')."""
    return option_values(split_options(options).get(correct.strip().lower(), ""))


def matches(value: float, targets: Sequence[float], rel_tol: float) -> bool:
    """Within rel_tol of one of the targets (relative to the target; absolute near zero)."""
    return any(abs(value - t) <= rel_tol * max(abs(t), 1e-6) for t in targets)
