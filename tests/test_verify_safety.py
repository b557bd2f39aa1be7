"""Untrusted text never reaches eval/sympify/parse_expr; adversarial answers get a verdict in time."""

from __future__ import annotations

import builtins
import time

import polars as pl
import pytest
import sympy.parsing.sympy_parser as sp_parser

import curate.verify.mv  # noqa: F401  (imports Math-Verify and latex2sympy)
import latex2sympy2_extended.latex2sympy2 as l2s
import math_verify.parser as mv_parser
from curate.verify import VERDICTS, VerifyConfig, check, verify_frame

MARK = "zqxj"  # letters no grammar token contains: it must never reach an eval-like entry point

POISON = (MARK, "__import__", "lambda", "**", "3*4", "1/2", "12 / 4", "(1+2)")

MODEL_STRINGS = [
    f"The answer is {MARK} + 1/2",
    f"Final answer: $\\frac{{{MARK}}}{{2}}$",
    f"so x = 3 * 4 ** 2 {MARK}",
    f"1/2 + 3*4 {MARK}",
    "The final answer is 2*3+4. I hope it is correct.",
    "answer: (1+2)*3",
    "__import__('os').system('echo pwned')",
    "lambda: 1",
    "The answer is 9**9**9**9.",
    f"\\boxed{{{MARK}(1)}}",
    "Therefore the result is 12 / 4 = 3.",
    "7,425,000",
    "1 000",
]


@pytest.fixture
def recorder(monkeypatch):
    seen: list[str] = []
    real_parse_expr, real_eval = sp_parser.parse_expr, builtins.eval

    def spy_parse_expr(s, *a, **k):
        seen.append(str(s))
        return real_parse_expr(s, *a, **k)

    def spy_eval(s, *a, **k):
        if isinstance(s, str):
            seen.append(s)
        return real_eval(s, *a, **k)

    monkeypatch.setattr(sp_parser, "parse_expr", spy_parse_expr)  # sympify(str) imports it from here
    monkeypatch.setattr(mv_parser, "parse_expr", spy_parse_expr)
    monkeypatch.setattr(l2s, "parse_expr", spy_parse_expr)
    monkeypatch.setattr(builtins, "eval", spy_eval)
    return seen


def test_model_strings_never_reach_eval_or_sympify(recorder):
    cfg = VerifyConfig(num_proc=0)
    for s in MODEL_STRINGS:
        pred, verdict = check("\\frac{1}{2}", s, cfg)
        assert verdict in VERDICTS
    for gold in ("$\\frac{1}{2}$", "x^2+1", "1/2"):
        check(gold, "The final answer is 3*4+1. I hope it is correct.", cfg)
    # sympy may still see number tokens cut out by the LaTeX lexer (ANTLR) and its own constants,
    # never a piece of the model's text
    bad = [s for s in recorder if any(p in s for p in POISON)]
    assert not bad, f"model text reached parse_expr/eval/sympify: {bad[:5]}"


def test_the_spy_would_catch_plain_math_verify(recorder):
    """The guard above can fail: plain Math-Verify's expression extractor does call parse_expr."""
    from math_verify import ExprExtractionConfig, parse

    parse("The answer is 1/2 + 3*4", extraction_config=[ExprExtractionConfig()], parsing_timeout=None)
    assert any(any(p in s for p in POISON) for s in recorder)


ADVERSARIAL = {
    "one_megabyte": "x" * 1_000_000 + " \\boxed{" + "1" * 1_000_000 + "}",
    "nested_frac": "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}",
    "tower": "\\boxed{10^{10^{10^{10}}}}",
    "unbalanced": "\\boxed{\\frac{1}{2" + "{" * 1000,
    "control_chars": "the answer is \\boxed{\x00\x07\x1b[31m1\x08/2\x0c}",
    "deep_parens": "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
}


def test_adversarial_answers_get_a_verdict_within_the_timeout():
    timeout = 2.0
    df = pl.DataFrame(
        {
            "problem_id": list(ADVERSARIAL),
            "gold_answer": ["\\frac{1}{2}"] * len(ADVERSARIAL),
            "answer_text": list(ADVERSARIAL.values()),
        }
    )
    import resource

    from curate.verify.pool import RETRY_FACTOR

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    c0, t0 = children_cpu(), time.monotonic()
    out = verify_frame(df, VerifyConfig(num_proc=2, timeout_s=timeout, wall_limit_s=60), None)
    cpu, wall = children_cpu() - c0, time.monotonic() - t0
    assert set(out["verdict"]) <= set(VERDICTS)
    assert out.height == len(ADVERSARIAL)
    # the budget is CPU time: each item at most timeout + grace (+1 s: RLIMIT_CPU counts whole
    # seconds), and once more with RETRY_FACTOR times that when it timed out
    per_item = (timeout + 1.0 + 1.0) * (1 + RETRY_FACTOR)
    assert cpu < len(ADVERSARIAL) * per_item, cpu
    assert wall < len(ADVERSARIAL) * 60, wall  # the wall-clock backstop (a busy machine is slow, not wrong)
    got = dict(zip(out["problem_id"], out["verdict"]))
    assert got["one_megabyte"] in ("unparseable", "incorrect")  # too long to parse: string compare only
    assert got["control_chars"] in ("correct", "incorrect", "unparseable")


def test_gold_gets_a_timeout_verdict_not_a_crash():
    pred, verdict = check("5", "\\boxed{10^{10^{10^{10}}}}", VerifyConfig(timeout_s=1))
    assert verdict in ("timeout", "incorrect", "unparseable")
