"""Table-driven cases per answer type: extraction, normalisation rules, equivalence, verdicts."""

from __future__ import annotations

import pytest

from curate.verify import VerifyConfig, check
from curate.verify.extract import extract_boxed, extract_choice, extract_final_answer, gold_choice, last_boxed
from curate.verify.normalize import normalize, string_key

CFG = VerifyConfig(num_proc=0)

# (gold, model text, expected verdict)
CASES = {
    "integer": [("42", "so the answer is \\boxed{42}", "correct"), ("42", "\\boxed{43}", "incorrect")],
    "leading_zeros_sign": [("\\boxed{033}", "33", "correct"), ("\\boxed{-0}", "0", "correct")],
    "decimal_vs_fraction": [("\\frac12", "\\boxed{0.5}", "correct"), ("\\frac{1}{3}", "\\boxed{0.34}", "incorrect")],
    "dfrac_tfrac": [("\\tfrac83", "\\boxed{\\dfrac{8}{3}}", "correct")],
    "mixed_numbers": [("1\\frac12", "\\boxed{1.5}", "correct"), ("918\\frac{1}{2}", "918.5", "correct")],
    "thousands": [("7425000", "7,425,000", "correct"), ("11,\\! 111,\\! 111,\\! 100", "11111111100", "correct")],
    "decimal_comma": [("1000.99", "1000,99", "correct")],
    "percent": [("10\\%", "\\boxed{10}", "correct"), ("25%", "The answer is 25", "correct")],
    "units_trailing_words": [
        ("10\\text{ cm}^2", "10", "correct"),
        ("10 square units", "10", "correct"),
        ("64", "64 square feet", "correct"),
        ("10 \\text{ units}", "100", "incorrect"),
    ],
    "text_answers": [
        ("odd", "\\text{odd}", "correct"),
        ("odd", "\\text{oddd}", "incorrect"),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", "correct"),
    ],
    "dollars": [("\\$10", "10", "correct"), ("10", "\\$10", "correct")],
    "approx": [("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{3} \\approx 0.577", "correct")],
    "shown_precision": [("5", "5.001", "incorrect"), ("16,386.16", "16384.60", "incorrect")],
    "symbolic": [
        ("x^2+2x+1", "(x+1)^2", "correct"),
        ("x^2+2x+1", "x^3+2x+1", "incorrect"),
        ("(2x+3)(2x -1)(2x+1)", "(2x - 1)(2x + 1)(2x + 3)", "correct"),
    ],
    "lhs": [("f(x) = 2x + 3", "y = 2x + 3", "correct"), ("x = 1, y = 2, z = 3", "1, 2, 3", "correct")],
    "intervals_ordered": [("[-3,2]", "(-3,2)", "incorrect"), ("[x, x + 1]", "[x + 1, x]", "incorrect")],
    "sets": [("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}", "correct")],
    "matrices": [
        ("\\begin{pmatrix}0&0\\\\0&1\\end{pmatrix}", "\\begin{bmatrix} 0 & 0 \\\\ 0 & 1 \\end{bmatrix}", "correct"),
        ("\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}", "\\begin{pmatrix}1&0\\\\0&2\\end{pmatrix}", "incorrect"),
    ],
    "degrees": [("\\sin(90^{\\circ}-x)", "\\cos(x)", "correct"), ("72^\\circ", "72", "correct")],
    "times": [("20:34", "08:34 \\text{P.M.}", "correct"), ("20:34", "20:34:00", "correct"), ("20:34", "8:34", "incorrect")],
    "multiple_choice": [
        ("C", "thinking about it I think the correct answer is C", "correct"),
        ("(D) Alina", "D", "correct"),
        ("(A) Cecile", "C", "incorrect"),
        ("B", "B。 不是 A", "correct"),
        ("C", "réponse est C non A", "correct"),
        ("E", "\\mathrm{E}*2", "incorrect"),
        ("A", "\\textbf{A}", "correct"),
    ],
    "gsm8k_hash": [("18", "She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "correct")],
    "answer_tag": [("7", "<think>lots of 3 and 5</think><answer>7</answer>", "correct")],
    "final_answer_is": [("12000023", "The final answer is 12,000,023. I hope it is correct.", "correct")],
    "non_english": [("4000", " 地块面积 = 72000 / 18 = 4000千克", "correct"), ("13/28", "计划的比例为13/28", "correct")],
    "r1_style": [
        ("5", "Before the final answer, let me check 2+2 = 4.\nSo the result:\n\\boxed{5}", "correct"),
        ("42", "**Final Answer**\n\n\\boxed{42}", "correct"),
        ("42", "The minimum is $\\boxed{42}$, attained at $x=1$.", "correct"),
        ("x=1", "The minimum is $\\boxed{42}$, attained at $x=1$.", "incorrect"),
    ],
    "verdicts": [
        ("5", "I am not sure.", "no_answer"),
        ("", "\\boxed{5}", "no_gold"),
    ],
}


@pytest.mark.parametrize(
    "gold,text,expected",
    [pytest.param(g, t, e, id=f"{kind}-{i}") for kind, rows in CASES.items() for i, (g, t, e) in enumerate(rows)],
)
def test_cases(gold, text, expected):
    pred, verdict = check(gold, text, CFG)
    assert verdict == expected, (gold, text, pred)


def test_unordered_lists_only_when_the_problem_allows():
    gold, pred = "6, -2", "\\boxed{-2, 6}"
    allows = "Find all possible values of $b$, separated by commas."
    assert check(gold, pred, CFG, problem=allows)[1] == "correct"
    assert check(gold, pred, CFG)[1] == "correct"  # Math-Verify reads a bare list as a set
    ordered = "List the roots in increasing order, separated by commas."
    assert check("-2, 6", "\\boxed{6, -2}", CFG, problem=ordered)[1] == "incorrect"
    assert check("-2, 6", "\\boxed{-2, 6.0}", CFG, problem=ordered)[1] == "correct"
    never = VerifyConfig(num_proc=0, rules={"unordered": "never"})
    assert check(gold, pred, never, problem=allows)[1] == "incorrect"
    assert check("(6, -2)", "\\boxed{(-2, 6)}", CFG, problem=allows)[1] == "incorrect"  # a tuple


def test_truncated_only_without_answer():
    assert check("5", "and so on and so", CFG, finish_reason="length")[1] == "truncated"
    assert check("5", "so \\boxed{5} and then", CFG, finish_reason="length")[1] == "correct"


def test_rules_can_be_switched_off():
    off = VerifyConfig(num_proc=0, rules={"units": False, "mixed_numbers": False})
    assert check("10 weeks", "10", CFG)[1] == "correct"
    assert check("10 weeks", "10", off)[1] == "incorrect"
    assert check("1 1/2", "1.5", CFG)[1] == "correct"
    assert check("1 1/2", "1.5", off)[1] == "incorrect"


def test_string_fallback_case():
    assert check("North America", "\\text{north america}", CFG)[1] == "correct"
    exact = VerifyConfig(num_proc=0, rules={"string_fallback": False})
    assert check("North America", "\\text{north america}", exact)[1] != "correct"
    assert check("North America", "\\text{North  America}", exact)[1] == "correct"


def test_extraction_order_is_configurable():
    text = "The final answer is 3. Actually \\boxed{4}"
    assert check("3", text, CFG)[0] == "3"
    boxed_first = VerifyConfig(num_proc=0, extract=["boxed", "final_answer"])
    assert check("3", text, boxed_first)[0] == "4"


def test_extractors():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("\\boxed{unclosed") is None
    assert extract_boxed("\\boxed{1} and \\boxed{2}") == "1, 2"
    assert extract_boxed("\\boxed{1} because it is smaller than \\boxed{2}") == "2"
    assert extract_final_answer("Final Answer: The largest $n$ is 34.") == "34"
    assert extract_choice("The answer is for sure D, it can't be A or B") == "D"
    assert gold_choice("Alina and the answer is\n(C) Cecile") == "C"
    assert gold_choice("A:B=1") is None
    assert gold_choice("42") is None


def test_normalisation_rules_are_named_and_general():
    assert string_key(normalize("\\left( \\dfrac{1}{2} \\right)")) == "(\\frac{1}{2})"
    assert normalize("\\$1{,}000") == "1000"
    assert normalize("72^\\circ") == "72"
    assert normalize("\\\\frac{1}{2}") == "\\frac{1}{2}"


def test_default_extractors_validate_and_match_the_registry():
    from curate.verify.config import DEFAULT_EXTRACT
    from curate.verify.extract import EXTRACTORS

    cfg = VerifyConfig.model_validate({"type": "verify", "extract": DEFAULT_EXTRACT})
    assert list(cfg.extract) == DEFAULT_EXTRACT
    assert set(DEFAULT_EXTRACT) == set(EXTRACTORS)


def test_bad_config_is_one_line_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        VerifyConfig(extract=["boxed", "nope"])
    with pytest.raises(ValidationError):
        VerifyConfig(rules={"unknown_rule": True})


def test_numeric_probe_only_rules_out_clear_differences():
    from curate.verify.equiv import _clearly_differ
    from curate.verify.mv import parse_latex

    def d(a, b, strict=True):
        return _clearly_differ(parse_latex(a), parse_latex(b), strict)

    assert d("x+1", "x+2") and d("\\sqrt{2}", "1.5") and d("[2, 3]", "3") and d("2k", "90")
    assert not d("x^2-1", "(x-1)(x+1)")
    assert not d("\\frac{1}{3}", "0.333333")  # Math-Verify's rounding decides that one
    assert not d("x = 1", "1") and not d("(1, 2)", "(2, 1)")  # relations, tuples: Math-Verify
    assert not d("x+1", "y+1", strict=False)  # non-strict Math-Verify matches variables by position


def test_letters_are_read_only_for_a_letter_gold():
    options = "Which point? (A) 1 (B) 2 (C) 3 (D) 4"
    assert check("5", "Point B is here. So \\boxed{5}", CFG, problem=options)[1] == "correct"
    assert check("B", "so the answer is (B)", CFG, problem=options) == ("B", "correct")


def test_numeric_probe_catches_identities_simplify_misses_but_not_abs():
    gold = "\\frac{v_{0}}{r_{0}} \\frac{1}{(1+r / r_{0})^{3 / 2}}"
    pred = "\\frac{v_0 \\cdot (\\frac{r_0}{r + r_0})^{0.5}}{(r + r_0)}"
    assert check(gold, pred, CFG)[1] == "correct"
    assert check(gold, pred, VerifyConfig(num_proc=0, rules={"numeric_probe": False}))[1] == "incorrect"
    assert check("|x|", "x", CFG)[1] == "incorrect"
    assert check("\\sqrt{x^2}", "x", CFG)[1] == "incorrect"
    assert check("x^2+1", "x^2+1.0000001", CFG)[1] == "incorrect"
