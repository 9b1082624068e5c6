"""knn.py's learned ranking (--learned): its features, a fit that learns which words call for which operation
(and so beats the plain nearest program where the nearest text is the wrong one), leave-one-out fitting, the
bounded fit, and the command end to end."""
import json

import numpy as np
import pytest

from common.errors import UserError
from text2math.data import Problem, generated_rows
from text2math.knn import (LearnedRanking, knn_scores, learned_scores, main, neighbour_candidates, parse,
                           program_units, text_program_features)

FILLER = [f"w{i}" for i in range(40)]


def _problem(rng, gains: bool) -> Problem:
    """'... gets n1 ...' adds the two numbers, '... loses n1 ...' subtracts them; the rest of the text is shared
    filler, so the most similar problem is as often one of the other kind."""
    a, b = float(rng.integers(20, 90)), float(rng.integers(1, 19))
    words = " ".join(rng.choice(FILLER, 6, replace=False))
    verb, op, value = ("gets", "add", a + b) if gains else ("loses", "subtract", a - b)
    return Problem(f"{words} has n0 and {verb} n1 .", [a, b], [op, "n0", "n1", "|"], [value], "general",
                   f"{op}(n0,n1)", [[value], [a * b], [a / b], [b - a], [a + 2 * b]], value)


def _files(folder, train_rows, test_rows):
    """train.json and test.json in `folder`, in MathQA's schema."""
    train, test = folder / "train.json", folder / "test.json"
    train.write_text(json.dumps(train_rows))
    test.write_text(json.dumps(test_rows))
    return train, test


def _problems(n: int, seed: int) -> list[Problem]:
    rng = np.random.default_rng(seed)
    return [_problem(rng, bool(i % 2)) for i in range(n)]


def test_program_units_name_operations_patterns_constants_and_order():
    units = program_units(["divide", "n1", "n3", "|", "multiply", "#0", "const_100", "|"])
    assert units == ["divide", "divide(n,n)", "^>divide", "multiply", "multiply(#,const_100)", "divide>multiply",
                     "const_100", "multiply>$", "steps2"]
    features = text_program_features("what is n0 percent of n1 ?", ["multiply", "n0", "n1", "|"])
    assert "x:percent|multiply" in features and not any(f.startswith("x:n0") for f in features)   # numbers left out


def test_learned_ranking_learns_which_word_calls_for_which_operation():
    pool, test = _problems(200, seed=0), _problems(100, seed=1)
    plain = knn_scores(pool, test, k=10, tolerance=0.02)["exec_acc"]
    learned = learned_scores(pool, test, k=10, tolerance=0.02)
    assert plain < 0.8 and learned["exec_acc"] > plain + 0.15 and learned["exec_acc"] >= 0.95
    assert learned["fitted_on"] == 200 and learned["option_acc"] >= learned["exec_acc"]


def test_the_fit_never_sees_a_problem_s_own_program_from_itself():
    """Leave-one-out: every program below is written once, so no training problem has a correct candidate and
    the fit is skipped (the nearest program stays first); a fit that retrieved each problem itself would not be."""
    rng = np.random.default_rng(0)
    pool = []
    for steps in range(1, 31):                 # n0 + steps * n1 = steps: no other program's value is within 2%
        program = ["add", "n0", "n1", "|"] + [t for i in range(steps - 1) for t in ("add", f"#{i}", "n1", "|")]
        value = float(steps)
        pool.append(Problem(" ".join(rng.choice(FILLER, 5, replace=False)) + " n0 n1 ?", [0.0, 1.0], program,
                            [value], "general", "", [[value]], value))
    ranking = LearnedRanking(pool, k=5, tolerance=0.02)
    assert ranking.model is None and ranking.fitted_on == 30


def test_the_fit_is_bounded_by_a_seeded_sample():
    pool = _problems(120, seed=2)
    first, again = LearnedRanking(pool, 5, 0.02, seed=3, max_fit=50), LearnedRanking(pool, 5, 0.02, seed=3, max_fit=50)
    assert first.fitted_on == 50 and np.array_equal(first.model.coef_, again.model.coef_)


def test_knn_learned_end_to_end_on_two_files(tmp_path):
    train, test = _files(tmp_path, generated_rows(80, seed=5), generated_rows(20, seed=6))
    out = tmp_path / "run"
    scores = main(["--train-file", str(train), "--eval-file", str(test), "--k", "5", "--learned", "--out", str(out)])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["learned"]["fitted_on"] == 80 and 0.5 < saved["learned"]["exec_acc"] <= 1
    assert saved["learned"] == scores["learned"] and saved["data_source"] == scores["data_source"]
    assert json.loads((out / "config.json").read_text())["args"]["learned"] is True
    with pytest.raises(UserError, match="already holds a run"):      # a run is never lost to the next one
        main(["--train-file", str(train), "--eval-file", str(test), "--k", "3", "--out", str(out)])
    assert json.loads((out / "summary.json").read_text()) == saved
    again = main(["--train-file", str(train), "--eval-file", str(test), "--k", "3", "--out", str(out), "--resume"])
    assert json.loads((out / "summary.json").read_text())["k"] == again["k"] == 3 and "learned" not in again


def test_a_number_too_large_for_a_float_is_no_traceback(tmp_path):
    """'9' * 400 in a problem reads as inf; the value features compare with the finite numbers only."""
    rows = generated_rows(40, seed=5)
    rows[0]["Problem"] += " and " + "9" * 400 + " more"
    train, test = _files(tmp_path, rows, generated_rows(10, seed=6))
    scores = main(["--train-file", str(train), "--eval-file", str(test), "--learned"])
    assert 0 <= scores["learned"]["exec_acc"] <= 1 and scores["learned"]["fitted_on"] == 40


def test_a_learned_fit_that_would_fill_the_memory_is_refused_in_one_line():
    """--k is 1-1000 (test_hostile_inputs), 50 with --learned (every candidate of every training problem is a row of
    the fit); a problem of thousands of distinct words pairs only its first 200 with the program."""
    with pytest.raises(UserError, match="--learned ranks at most 50"):
        parse(["--k", "51", "--learned"])
    parse(["--k", "51"])                       # without --learned, 51 is fine
    text = " ".join(f"w{i}" for i in range(5000))
    assert len(text_program_features(text, ["add", "n0", "n1", "|"])) == 5 + 200 * 5


def test_value_size_features_stay_finite_for_extreme_numbers():
    """A value of 1e300 against tiny numbers: their ratio overflowed to inf, which the fit cannot take."""
    problem = Problem("x n0 ?", [1e-300], ["power", "const_1000", "const_100", "|"], [1e300], "", "", [[1e300]], 1e300)
    (program, value, dense), = neighbour_candidates(problem, [(0, 1.0)], [problem.program], 0.02)
    assert value == 1e300 and all(np.isfinite(dense))
