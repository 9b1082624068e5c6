"""text2math's program language: every operation and constant by hand, the tokeniser, options."""
import math

import pytest

from text2math.program import (CONSTANTS, OPERATIONS, ExecutionError, canonical, correct_values, detokenize,
                               execute, matches, option_values, split_options, tokenize)

OPERATION_LIST = """add subtract multiply divide log sqrt factorial gcd lcm power max min reminder negate inverse
round floor sine cosine tangent radians_to_degree degree_to_radians sum_consecutive_number circle_area circumface
circle_arc semi_circle_perimiter circle_sector_area rectangle_perimeter rectangle_area square_perimeter square_area
trapezium_area rhombus_perimeter rhombus_area quadrilateral_area volume_cone volume_rectangular_prism volume_cube
volume_sphere volume_cylinder surface_cone surface_cylinder surface_cube surface_rectangular_prism surface_sphere
side_by_diagonal cube_edge_by_volume diagonal square_edge_by_perimeter square_edge_by_area triangle_perimeter
triangle_area triangle_area_three_edges union_prob negate_prob combination permutation count_interval percent
p_after_gain p_after_loss price_after_gain price_after_loss from_percent gain_percent loss_percent negate_percent
original_price_before_gain original_price_before_loss to_percent speed combined_work find_work
speed_ratio_steel_to_stream speed_in_still_water stream_speed""".split()
CONSTANT_LIST = ("CONST_pi CONST_2 CONST_1 CONST_3 CONST_4 CONST_6 CONST_10 CONST_100 CONST_1000 CONST_60 CONST_3600 "
                 "CONST_1.6 CONST_0.6 CONST_0.2778 CONST_0.3937 CONST_2.54 CONST_0.4535 CONST_2.2046 CONST_3.6 "
                 "CONST_DEG_TO_RAD CONST_180 CONST_0.25 CONST_0.33").split()
pi = math.pi
# operation -> (arguments, value worked out by hand)
HAND = {
    "add": ((2, 3), 5), "subtract": ((2, 3), -1), "multiply": ((2, 3), 6), "divide": ((3, 2), 1.5),
    "log": ((math.e ** 2,), 2), "sqrt": ((16,), 4), "factorial": ((5,), 120), "gcd": ((12, 18), 6),
    "lcm": ((4, 6), 12), "power": ((2, 10), 1024), "max": ((2, 7), 7), "min": ((2, 7), 2),
    "reminder": ((17, 5), 2), "negate": ((4,), -4), "inverse": ((4,), 0.25), "round": ((2.6,), 3),
    "floor": ((2.6,), 2), "sine": ((pi / 6,), 0.5), "cosine": ((pi / 3,), 0.5), "tangent": ((pi / 4,), 1),
    "radians_to_degree": ((pi,), 180), "degree_to_radians": ((90,), pi / 2),
    "sum_consecutive_number": ((1, 10), 55), "circle_area": ((2,), 4 * pi), "circumface": ((2,), 4 * pi),
    "circle_arc": ((2, 90), pi), "semi_circle_perimiter": ((2,), 2 * pi + 4),
    "circle_sector_area": ((2, 90), pi), "rectangle_perimeter": ((3, 4), 14), "rectangle_area": ((3, 4), 12),
    "square_perimeter": ((3,), 12), "square_area": ((3,), 9), "trapezium_area": ((3, 5, 2), 8),
    "rhombus_perimeter": ((5,), 20), "rhombus_area": ((6, 8), 24), "quadrilateral_area": ((4, 15, 9), 48),
    "volume_cone": ((3, 4), 12 * pi), "volume_rectangular_prism": ((2, 3, 4), 24), "volume_cube": ((3,), 27),
    "volume_sphere": ((3,), 36 * pi), "volume_cylinder": ((2, 5), 20 * pi), "surface_cone": ((3, 5), 24 * pi),
    "surface_cylinder": ((8, 3), 176 * pi), "surface_cube": ((2,), 24), "surface_rectangular_prism": ((2, 3, 4), 52),
    "surface_sphere": ((1,), 4 * pi), "side_by_diagonal": ((2 ** 0.5 * 3,), 3), "cube_edge_by_volume": ((27,), 3),
    "diagonal": ((3, 4), 5), "square_edge_by_perimeter": ((20,), 5), "square_edge_by_area": ((49,), 7),
    "triangle_perimeter": ((3, 4, 5), 12), "triangle_area": ((6, 4), 12), "triangle_area_three_edges": ((3, 4, 5), 6),
    "union_prob": ((0.5, 0.4, 0.2), 0.7), "negate_prob": ((0.3,), 0.7), "combination": ((5, 2), 10),
    "permutation": ((5, 2), 20), "count_interval": ((3, 7), 5), "percent": ((20, 50), 10),
    "p_after_gain": ((10, 200), 220), "p_after_loss": ((10, 200), 180), "price_after_gain": ((25, 80), 100),
    "price_after_loss": ((25, 80), 60), "from_percent": ((35,), 0.35), "gain_percent": ((80, 100), 25),
    "loss_percent": ((100, 80), 20), "negate_percent": ((30,), 70), "original_price_before_gain": ((25, 100), 80),
    "original_price_before_loss": ((50, 5000), 10000), "to_percent": ((0.35,), 35), "speed": ((100, 4), 25),
    "combined_work": ((3, 6), 2), "find_work": ((2, 3), 6), "speed_ratio_steel_to_stream": ((6, 2), 2),
    "speed_in_still_water": ((19, 9), 14), "stream_speed": ((19, 9), 5),
}


def test_every_listed_operation_and_constant_is_registered():
    assert set(OPERATION_LIST) <= set(OPERATIONS)
    for name in CONSTANT_LIST:
        assert name.lower().replace(".", "_") in CONSTANTS, name
    assert CONSTANTS["const_deg_to_rad"] == pytest.approx(pi / 180)


@pytest.mark.parametrize("name", OPERATION_LIST)
def test_each_operation_on_a_hand_computed_program(name):
    args, expected = HAND[name]
    numbers = list(args)
    formula = f"{name}({','.join(f'n{i}' for i in range(len(args)))})"
    assert execute(formula, numbers) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_multi_step_program_with_references_and_constants():
    # 10 % of 250, then add 1000 and divide by 60
    assert execute("multiply(n0,n1)|divide(#0,const_100)|add(#1,const_1000)|divide(#2,const_60)",
                   [10, 250]) == pytest.approx(1025 / 60)
    assert execute("multiply(n0,const_0_2778)|multiply(const_pi,const_2.0)", [1]) == pytest.approx(2 * pi)


@pytest.mark.parametrize("formula, numbers, why", [
    ("divide(n0,n1)", [1, 0], "division"), ("add(n0,n3)", [1, 2], "numbers"), ("frobnicate(n0)", [1], "unknown"),
    ("add(n0)", [1], "arguments"), ("add(#1,n0)", [1], "step"), ("add(n0,const_x)", [1], "constant"),
    ("factorial(n0)", [2.5], "integer"), ("sqrt(n0)", [-1], "sqrt"),
])
def test_bad_programs_raise_execution_errors(formula, numbers, why):
    with pytest.raises(ExecutionError, match=why):
        execute(formula, numbers)


@pytest.mark.parametrize("formula", [
    "divide(n0,n1)|multiply(#0,const_100)", "power(n1,n0)|", "add(n1,const_1)|",
    "triangle_area_three_edges(n0,n0,n0)|", "divide(const_1,n1)|divide(const_1,n2)|subtract(#1,#0)|",
])
def test_tokeniser_round_trip(formula):
    tokens = tokenize(formula)
    assert "(" not in "".join(tokens) and tokens[-1] == "|"
    assert detokenize(tokens) == canonical(formula) == formula.rstrip("|")


def test_tokens_are_operations_arguments_and_separators():
    assert tokenize("divide(n0,n1)|multiply(#0,const_100)") == [
        "divide", "n0", "n1", "|", "multiply", "#0", "const_100", "|"]


@pytest.mark.parametrize("text, expected", [
    ("24", [24]), ("1 / 2", [0.5]), ("2 1 / 2", [2.5]), ("25 %", [25, 0.25]), ("3 : 7", [3 / 7]),
    ("625 √ 3", [625 * 3 ** 0.5]), ("rs . 1,200", [1200]), ("$ 4,040", [4040]), ("8 mph", [8]),
    ("14 π cm", [14 * pi]), ("s . 486", [486]), ("none of these", []), ("- 5", [-5]),
])
def test_option_values(text, expected):
    assert option_values(text) == pytest.approx(expected)


def test_options_string_and_the_correct_value():
    options = "a ) 1 / 35 , b ) 3 / 35 , c ) 10,000 , d ) 2 / 35 , e ) none"
    assert split_options(options) == {"a": "1 / 35", "b": "3 / 35", "c": "10,000", "d": "2 / 35", "e": "none"}
    assert correct_values(options, "c") == [10000]
    assert correct_values(["a ) 135", "b ) 125"], "b") == [125]
    assert matches(101, [100], 0.02) and not matches(103, [100], 0.02)


@pytest.mark.parametrize("text, expected", [
    ("b . 1.2", [1.2]),                      # a stray option letter, not the decimal '. 1'
    ("1 , 000,000", [1_000_000.0]),          # MathQA's spaced thousands separator
    ("1,000 , 000,000", [1e9]),
    ("( 40,0 )", [40.0]),                    # a decimal comma (one or two digits after it)
    ("93,75", [93.75]),
    ("78 + ( 4 / 7 ) %", [78 + 4 / 7, (78 + 4 / 7) / 100]),
    ("1,200", [1200.0]),                     # a thousands comma stays one
])
def test_option_parsing_edge_cases(text, expected):
    assert option_values(text) == pytest.approx(expected)


def test_spaced_thousands_inside_a_whole_options_string():
    options = "a ) 100 , 000,000 , b ) 1,000 , 000,000 , c ) 1 , 000,000 , 000,000 , d ) 100 , e ) 1 , 000,000"
    assert correct_values(options, "b") == [1e9] and correct_values(options, "e") == [1e6]
