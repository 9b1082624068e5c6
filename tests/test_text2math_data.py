"""text2math's loaders on small files written here in the real formats, and their errors."""
import json

import numpy as np
import pytest

from common.errors import UserError
from tests.conftest import REPO, run_script
from text2math.data import extract_numbers, generated_rows, load_mathqa, read_glove, read_mathqa_json
from text2math.program import execute_tokens, matches

ROWS = [
    {"Problem": "what is 20 % of 1,200 ?", "Rationale": "...",
     "options": "a ) 24 , b ) 240 , c ) 120 , d ) 2 , e ) none",
     "correct": "b", "annotated_formula": "multiply(20, divide(1200, 100))",
     "linear_formula": "divide(n1,const_100)|multiply(n0,#0)|", "category": "gain"},
    {"Problem": "a train covers 0.5 km in 30 seconds . speed ?", "Rationale": "...",
     "options": ["a ) 60 kmph", "b ) 50 kmph"], "correct": "a", "annotated_formula": "",
     "linear_formula": "divide(n0,n1)|multiply(#0,const_3600)", "category": "physics"},
]


def write_mathqa(root, rows, name="dev.json"):
    folder = root / "MathQA"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(rows))
    return folder


def test_numbers_become_placeholders():
    assert extract_numbers("a 3 - digit number , 1,200 and 2.5 and .5 of m2") == (
        "a n0 - digit number , n1 and n2 and n3 of m2", [3.0, 1200.0, 2.5, 0.5])


def test_mathqa_json_loader_and_the_dev_split(tmp_path):
    problems = read_mathqa_json(write_mathqa(tmp_path, ROWS * 10) / "dev.json")
    first = problems[0]
    assert first.text == "what is n0 % of n1 ?" and first.numbers == [20, 1200]
    assert first.program == ["divide", "n1", "const_100", "|", "multiply", "n0", "#0", "|"]
    assert first.answers == [240] and matches(execute_tokens(first.program, first.numbers), first.answers, 1e-9)
    assert problems[1].answers == [60] and problems[1].numbers == [0.5, 30]
    data = load_mathqa("real", tmp_path, seed=0)
    assert (len(data.train), len(data.test)) == (18, 2) and data.source.startswith("real: MathQA dev.json split")
    again = load_mathqa("real", tmp_path, seed=0)
    assert [p.text for p in again.test] == [p.text for p in data.test]


def test_train_json_is_used_when_present(tmp_path):
    write_mathqa(tmp_path, ROWS * 3, "train.json")
    write_mathqa(tmp_path, ROWS, "test.json")
    data = load_mathqa("auto", tmp_path, seed=0)
    assert (len(data.train), len(data.test)) == (6, 2) and "train.json" in data.source


def test_generated_problems_share_the_schema_and_their_programs_are_right():
    rows = generated_rows(100, seed=1)
    assert rows == generated_rows(100, seed=1)
    problems = load_mathqa("generated", None, seed=1, n_generated=100)
    for p in problems.train + problems.test:
        assert matches(execute_tokens(p.program, p.numbers), p.answers, 0.01)


@pytest.mark.parametrize("content, message", [
    ("[{\"Problem\": \"x\"}]", "missing field"), ("{not json", "cannot read"), ("[]", "no list"),
    (json.dumps([{**ROWS[0], "linear_formula": "add n0 n1"}]), "unreadable linear_formula"),
])
def test_bad_mathqa_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "dev.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_mathqa_json(path)


def test_missing_data_with_real_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    import text2math.data as data_module
    from common.download import DownloadUnavailable

    def offline(folder, announce):
        raise DownloadUnavailable("offline")

    monkeypatch.setattr(data_module, "_download", offline)
    with pytest.raises(UserError, match="MathQA not found under"):
        load_mathqa("real", tmp_path, seed=0)
    assert load_mathqa("auto", tmp_path, seed=0, n_generated=50).source.startswith("generated")


def test_glove_reader(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\ntrain -1 0 1\nspeed 2 2 2\n")
    vectors = read_glove(path, ["train", "speed", "unseen"])
    assert sorted(vectors) == ["speed", "train"]
    np.testing.assert_allclose(vectors["train"], [-1, 0, 1])
    path.write_text("the 0.1 0.2 0.3\ntrain -1 0\n")
    with pytest.raises(UserError, match="damaged"):
        read_glove(path)


@pytest.mark.slow
def test_real_data_missing_from_the_command_line_is_one_line(tmp_path):
    done = run_script(str(REPO / "text2math/train.py"), "--data", "real", "--data-root", str(tmp_path),
                      "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "MathQA not found under" in done.stderr


@pytest.mark.slow
def test_gold_check_counts_and_classifies(tmp_path):
    rows = [ROWS[0], {**ROWS[0], "correct": "a"}, {**ROWS[0], "correct": "e"},
            {**ROWS[0], "linear_formula": "divide(n0,n5)"}, {**ROWS[0], "linear_formula": "add(n0,n1)"}]
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(rows))
    out = tmp_path / "gold.json"
    done = run_script(str(REPO / "text2math/gold_check.py"), "--file", str(path), "--tolerance", "0.01",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    counts = json.loads(out.read_text())["tolerances"]["0.01"]
    assert counts == {"ok": 1, "unparseable_option": 1, "execution_error": 1, "wrong_value_other_option": 1,
                      "wrong_value": 1}
    assert run_script(str(REPO / "text2math/gold_check.py"), "--smoke").returncode == 0
