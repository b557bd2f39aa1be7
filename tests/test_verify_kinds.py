"""Failure kinds of answer checking (issue 15): one parametrised table per kind, several examples each.

Each row is (gold, model text, expected verdict) and runs through the public ``check`` (extraction,
normalisation, equivalence) in this process.
"""

from __future__ import annotations

import pytest

from curate.verify import VerifyConfig, check

CFG = VerifyConfig(num_proc=0)


def _cases(table: dict[str, list[tuple]]):
    return [pytest.param(*row, id=f"{kind}-{i}") for kind, rows in table.items() for i, row in enumerate(rows)]


# ----------------------------------------------------------------------------- exact before numeric

EXACT = {
    # both sides exact: compared exactly, whatever the magnitude
    "tiny_exact": [
        ("\\frac{1}{3003!}", "\\boxed{\\frac{1}{3001!}}", "incorrect"),
        ("\\frac{1}{3003!}", "\\boxed{\\frac{1}{3003!}}", "correct"),
        ("2^{-120}", "\\boxed{2^{-121}}", "incorrect"),
        ("\\frac{1}{2^{70}}", "\\boxed{2^{-70}}", "correct"),
        ("\\frac{1}{10^{12}}", "\\boxed{\\frac{1}{10^{12}+1}}", "incorrect"),
        ("3^{-40}", "\\boxed{\\frac{1}{3^{40}}}", "correct"),
        ("\\frac{1}{3^{40}}", "\\boxed{\\frac{2}{3^{40}}}", "incorrect"),
        ("10^{-9}\\sqrt{2}", "\\boxed{10^{-9}\\sqrt{3}}", "incorrect"),
    ],
    "huge_exact": [
        ("10^{30}+1", "\\boxed{10^{30}}", "incorrect"),
        ("2^{100}", "\\boxed{1267650600228229401496703205376}", "correct"),
        ("2^{100}", "\\boxed{1267650600228229401496703205377}", "incorrect"),
    ],
    # a decimal gold: relative tolerance at the precision the gold shows
    "decimal_gold_shown_precision": [
        ("2.4\\times10^{-12}", "\\boxed{2.5\\times10^{-12}}", "incorrect"),
        ("2.4\\times10^{-12}", "\\boxed{2.4\\times10^{-12}}", "correct"),
        ("2.4\\times10^{-12}", "\\boxed{2.41\\times10^{-12}}", "correct"),
        ("6.02\\times 10^{23}", "\\boxed{6.03\\times 10^{23}}", "incorrect"),
        ("6.02\\times 10^{23}", "\\boxed{602000000000000000000000}", "correct"),
        ("0.0031", "\\boxed{0.0032}", "incorrect"),
        ("0.0031", "\\boxed{0.00312}", "correct"),
        ("33.3", "\\boxed{\\frac{100}{3}}", "correct"),
        ("1.5e-8", "\\boxed{1.6e-8}", "incorrect"),
    ],
    # an exact gold and a decimal answer: exact when the gold's decimal expansion ends
    "exact_gold_decimal_answer": [
        ("\\frac{1}{2^{20}}", "\\boxed{0.00}", "incorrect"),
        ("\\frac{1}{2^{20}}", "\\boxed{0.00000095367431640625}", "correct"),
        ("7", "\\boxed{7.0004}", "incorrect"),
        ("\\frac{3}{8}", "\\boxed{0.375}", "correct"),
        ("\\frac{3}{8}", "\\boxed{0.38}", "incorrect"),
        ("\\frac{2}{3}", "\\boxed{0.667}", "correct"),
        ("\\sqrt{2}", "\\boxed{1.414}", "correct"),
        ("\\sqrt{2}", "\\boxed{1.5}", "incorrect"),
    ],
}


@pytest.mark.parametrize("gold,text,expected", _cases(EXACT))
def test_exact_before_numeric(gold, text, expected):
    pred, verdict = check(gold, text, CFG)
    assert verdict == expected, (gold, text, pred)


# ----------------------------------------------------------------------------- truncation

R1_CUT = [
    # (gold, cut reasoning text): interim "answers" inside an unfinished think block never count
    ("588", "<think>\nLet me compute. So, the answer should be 588. Wait, let me double check the second case"),
    ("12", "<think>\nThe answer is 12? Hmm, but maybe I missed the case where n = 0, so let me"),
    ("4", "<think>\nOkay so x = 4. Therefore the answer: 4. But actually we need to verify that"),
    ("C", "<think>\nThe answer is C. Hmm, option (C) says 7, which matches, but let me check (D)"),
    ("\\frac{1}{2}", "<think>\nSo the probability is 1/2, answer 1/2. Now consider whether"),
]


@pytest.mark.parametrize("gold,text", R1_CUT)
def test_cut_think_block_is_truncated(gold, text):
    problem = "Pick one. (A) 4 (B) 5 (C) 7 (D) 8" if gold == "C" else None
    assert check(gold, text, CFG, finish_reason="length", problem=problem)[1] == "truncated"


@pytest.mark.parametrize(
    "gold,text",
    [
        ("588", "The answer should be 588, but wait, we have not yet counted the"),
        ("9", "Answer: 9? No, let me reconsider the boundary term, which gives"),
        ("10", "so the answer is 10, unless the"),
    ],
)
def test_cut_text_without_strong_anchor_is_truncated(gold, text):
    assert check(gold, text, CFG, finish_reason="length")[1] == "truncated"


@pytest.mark.parametrize(
    "gold,text,expected",
    [
        ("5", "<think>\nmaybe 4\n</think>\nThe final answer is \\boxed{5}. Let me also", "correct"),
        ("5", "so \\boxed{5} and then", "correct"),
        ("42", "<think>a</think>\nFinal answer: 42\n\nExplanation: we", "correct"),
        ("18", "She has 18 eggs.\n#### 18\nand then", "correct"),
        ("7", "<answer>7</answer> and some", "correct"),
    ],
)
def test_cut_text_with_strong_anchor_is_judged(gold, text, expected):
    assert check(gold, text, CFG, finish_reason="length")[1] == expected


@pytest.mark.parametrize(
    "gold,text,expected",
    [
        # after </think> only: a boxed interim answer inside the think block is not the answer
        ("3", "<think>\nfirst guess \\boxed{3}, no wait\n</think>\nThe answer is \\boxed{4}.", "incorrect"),
        ("4", "<think>\nfirst guess \\boxed{3}, no wait\n</think>\nThe answer is \\boxed{4}.", "correct"),
        ("3", "<think>\nthe answer is 3\n</think>\nI cannot decide.", "no_answer"),
    ],
)
def test_answer_is_read_after_the_think_block(gold, text, expected):
    assert check(gold, text, CFG)[1] == expected


def test_cut_reasoning_column_is_not_read():
    from curate.verify.equiv import Options, check_row, prepare_gold

    opts = Options.from_config(CFG)
    g = prepare_gold("588", None, opts)
    reasoning = "So, the answer should be 588. The final answer is 588? Wait, I should \\boxed{588"
    assert check_row(g, "", reasoning, "length", None, opts)[1] == "truncated"


# ----------------------------------------------------------------------------- anchored answers win

ANCHORED = {
    "tag_wins_over_earlier_gold": [
        ("7", "We try 7 first, $x = 7$ fails. <answer>8</answer>", "incorrect"),
        ("\\frac{1}{2}", "At first $p=\\frac{1}{2}$ but that ignores order. <answer>\\frac{1}{4}</answer>", "incorrect"),
        ("3", "Candidates: $3$, $5$. Checking, only 5 works.\n\n\\boxed{5}", "incorrect"),
        ("10", "The sum 10 appears twice, so the final answer is 20.", "incorrect"),
    ],
    "negated_mentions": [
        ("12", "答案为 13，不是 12", "incorrect"),
        ("13", "答案为 13，不是 12", "correct"),
        ("C", "The answer is not C; it is B.", "incorrect"),
        ("B", "The answer is not C; it is B.", "correct"),
        ("40", "The answer isn't 40, it is 45.", "incorrect"),
        ("A", "答案不是A，而是D。", "incorrect"),
        ("D", "答案不是A，而是D。", "correct"),
    ],
}


@pytest.mark.parametrize("gold,text,expected", _cases(ANCHORED))
def test_anchored_answer_wins(gold, text, expected):
    problem = "Choose. (A) 1 (B) 2 (C) 3 (D) 4" if gold in "ABCD" else None
    pred, verdict = check(gold, text, CFG, problem=problem)
    assert verdict == expected, (gold, text, pred)


# ----------------------------------------------------------------------------- plain-text math

PLAIN = [
    ("\\frac{\\pi}{2}", "The answer is pi/2", "correct"),
    ("\\frac{\\pi}{3}", "The answer is pi/2", "incorrect"),
    ("e^{16}-1", "The answer is -1 + exp(16)", "correct"),
    ("e^{16}", "The answer is -1 + exp(16)", "incorrect"),
    ("14-i", "The answer is 14.0 - 1.0i", "correct"),
    ("14+i", "The answer is 14.0 - 1.0i", "incorrect"),
    ("320000", "The answer is 3.2e5", "correct"),
    ("32000", "The answer is 3.2e5", "incorrect"),
    ("2\\sqrt{3}", "Final answer: 2*sqrt(3)", "correct"),
    ("\\ln 2", "The answer is log(2)", "correct"),
    ("\\frac{3\\pi}{4}", "The answer is 3*pi/4.", "correct"),
    ("x^{2}+1", "Answer: x**2 + 1", "correct"),
    ("2.5\\times10^{-3}", "The answer is 2.5E-3", "correct"),
    ("\\sqrt{2}/2", "The answer is sqrt(2)/2", "correct"),
    ("\\pi^{2}", "The answer is π^2", "correct"),
    ("y^{\\ln x}", "Answer: x^log(y)", "correct"),
    ("x^{\\sin x}", "Answer: x^sin(x)", "correct"),
    ("-1", "The answer is exp(i*pi)", "correct"),
    ("i", "The answer is sqrt(-1)", "correct"),
    ("1+2i", "The answer is i*(2-i)", "correct"),
    ("1", "The answer is sqrt(k/m)*sqrt(m/k)", "correct"),
    ("\\ln\\frac{1+x}{1-x}", "Answer: -log((1-x)/(x+1))", "correct"),
    ("x", "The answer is X", "incorrect"),
]


@pytest.mark.parametrize("gold,text,expected", PLAIN)
def test_plain_text_math(gold, text, expected):
    pred, verdict = check(gold, text, CFG)
    assert verdict == expected, (gold, text, pred)


# ----------------------------------------------------------------------------- equivalent forms

FORMS = {
    "inequality_vs_interval": [
        ("(-\\infty,3)", "\\boxed{x<3}", "correct"),
        ("[0,\\infty)", "\\boxed{x\\ge 0}", "correct"),
        ("(-\\infty,3]", "\\boxed{x<3}", "incorrect"),
        ("(2,5]", "\\boxed{2 < x \\le 5}", "correct"),
        ("x \\geq -1", "\\boxed{[-1, \\infty)}", "correct"),
    ],
    "empty_set": [
        ("\\emptyset", "\\boxed{\\varnothing}", "correct"),
        ("\\varnothing", "\\boxed{\\emptyset}", "correct"),
        ("\\emptyset", "\\boxed{\\{\\}}", "correct"),
        ("\\emptyset", "\\boxed{\\{0\\}}", "incorrect"),
        ("∅", "\\boxed{\\varnothing}", "correct"),
    ],
    "percent": [
        ("0.5", "\\boxed{50\\%}", "correct"),
        ("50\\%", "\\boxed{0.5}", "correct"),
        ("50\\%", "\\boxed{50}", "correct"),
        ("12.5\\%", "\\boxed{0.125}", "correct"),
        ("0.25", "\\boxed{25\\%}", "correct"),
        ("0.25", "\\boxed{25}", "incorrect"),
        ("0.5", "\\boxed{5\\%}", "incorrect"),
    ],
    "units": [
        ("4", "\\boxed{4\\text{ m/s}}", "correct"),
        ("9.8", "\\boxed{9.8 \\mathrm{m/s^2}}", "correct"),
        ("12", "\\boxed{12 \\text{ kg}}", "correct"),
        ("3", "\\boxed{3\\,\\mathrm{N}}", "correct"),
        ("5", "\\boxed{5 \\text{ km/h}}", "correct"),
        ("5", "\\boxed{6\\text{ m/s}}", "incorrect"),
        ("3", "\\boxed{3 x/y}", "incorrect"),  # algebra, not a unit
        ("4", "\\boxed{4 m/s}", "correct"),
    ],
}


@pytest.mark.parametrize("gold,text,expected", _cases(FORMS))
def test_equivalent_forms(gold, text, expected):
    pred, verdict = check(gold, text, CFG)
    assert verdict == expected, (gold, text, pred)


MC_PROBLEM = "How many? (A) 5 (B) 6 (C) 7 (D) 8 (E) None of the above"
MC_TEXT = "Which is prime? A. 4\nB. 9\nC. 11\nD. 15"

CHOICE = [
    # the gold is the option text, the model answers the letter (or the reverse)
    ("7", "So the answer is (C).", MC_PROBLEM, "correct"),
    ("7", "So the answer is (D).", MC_PROBLEM, "incorrect"),
    ("11", "\\boxed{C}", MC_TEXT, "correct"),
    ("11", "\\boxed{B}", MC_TEXT, "incorrect"),
    ("None of the above", "The answer is (E).", MC_PROBLEM, "correct"),
    ("C", "The answer is 7.", MC_PROBLEM, "correct"),
    ("C", "The answer is 8.", MC_PROBLEM, "incorrect"),
    # a letter the prose rejects is not the answer
    ("D", "(D) is incorrect because it double counts. None of the above", MC_PROBLEM, "incorrect"),
    ("E", "(D) is incorrect because it double counts. None of the above", MC_PROBLEM, "correct"),
    ("B", "Option B is wrong, and A cannot be right either, so it must be C.", MC_PROBLEM, "incorrect"),
    ("C", "Option B is wrong, and A cannot be right either, so it must be C.", MC_PROBLEM, "correct"),
    ("A", "We can rule out A since it is even.", MC_PROBLEM, "no_answer"),
]


@pytest.mark.parametrize("gold,text,problem,expected", CHOICE)
def test_multiple_choice_letter_and_text(gold, text, problem, expected):
    pred, verdict = check(gold, text, CFG, problem=problem)
    assert verdict == expected, (gold, text, pred)


# ----------------------------------------------------------------------------- Chinese answers

CHINESE = [
    ("3", "3 个", "correct"),
    ("6", "共有6种方法。", "correct"),
    ("7", "共有6种方法。", "incorrect"),
    ("12", "十二", "correct"),
    ("12", "答案是十二。", "correct"),
    ("305", "三百零五", "correct"),
    ("2000", "两千", "correct"),
    ("15", "一共有十五只鸡。", "correct"),
    ("24", "答：他们一共需要24元。", "correct"),
    ("10", "十", "correct"),
    ("110", "一百一十", "correct"),
    ("20000", "两万", "correct"),
    ("12", "二十一", "incorrect"),
    ("5", "小明有5本书。", "correct"),
]


@pytest.mark.parametrize("gold,text,expected", CHINESE)
def test_chinese_answers(gold, text, expected):
    pred, verdict = check(gold, text, CFG)
    assert verdict == expected, (gold, text, pred)


# ----------------------------------------------------------------------------- switches

LOCALE = VerifyConfig(num_proc=0, rules={"locale_numbers": True})
CONVERT = VerifyConfig(num_proc=0, rules={"unit_conversion": True})

SWITCHES = [
    # (gold, text, verdict with defaults, verdict with the switch on, config)
    ("1000000", "\\boxed{1.000.000}", "incorrect", "correct", LOCALE),
    ("1234.5", "\\boxed{1 234,5}", "incorrect", "correct", LOCALE),
    ("1.5", "\\boxed{1,5}", "incorrect", "correct", LOCALE),
    ("2.75", "\\boxed{2,75}", "correct", "correct", LOCALE),  # a 2-digit decimal comma is unambiguous
    ("1.6", "\\boxed{1,5}", "incorrect", "incorrect", LOCALE),
    ("5\\text{ m}", "\\boxed{500\\text{ cm}}", "incorrect", "correct", CONVERT),
    ("2 \\text{ kg}", "\\boxed{2000 \\text{ g}}", "incorrect", "correct", CONVERT),
    ("1.5\\text{ h}", "\\boxed{90 \\text{ min}}", "incorrect", "correct", CONVERT),
    ("2\\text{ km}", "\\boxed{200\\text{ m}}", "incorrect", "incorrect", CONVERT),
    ("3\\text{ L}", "\\boxed{3000 \\text{ mL}}", "incorrect", "correct", CONVERT),
]


@pytest.mark.parametrize("gold,text,default,switched,cfg", SWITCHES)
def test_convention_switches_are_off_by_default(gold, text, default, switched, cfg):
    assert check(gold, text, CFG)[1] == default
    assert check(gold, text, cfg)[1] == switched


def test_switches_are_named_and_off_by_default():
    from curate.verify.config import Rules

    r = Rules()
    assert r.locale_numbers is False and r.unit_conversion is False
    assert "locale_numbers" not in r.enabled() and "unit_conversion" not in r.enabled()
