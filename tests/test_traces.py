"""The one <think> format module: the string and the column-wise split agree; join and split round-trip."""

from __future__ import annotations

import polars as pl
import pytest

from curate import traces

CASES = [
    ("<think>\nstep 1\n</think>\n\nThe answer is 4.", ("step 1", "The answer is 4.", "ok")),
    ("step 1 (prefilled)\n</think>\n\n\\boxed{4}", ("step 1 (prefilled)", "\\boxed{4}", "ok")),
    ("<think>cut off in the midd", ("cut off in the midd", "", "unclosed")),
    ("Plain chain of thought. So \\boxed{2}.", ("", "Plain chain of thought. So \\boxed{2}.", "missing")),
    ("", ("", "", "missing")),
    ("<think>a</think>b</think>c", ("a", "b</think>c", "ok")),
    ("preamble <think>r</think> ans", ("r", "ans", "ok")),
]


@pytest.mark.parametrize("text,want", CASES)
def test_split_and_exprs_agree(text, want):
    assert tuple(traces.split(text)) == want
    df = pl.DataFrame({"c": [text]}).select(**traces.split_exprs(pl.col("c")))
    assert (df["reasoning"][0], df["answer_text"][0], df["think_status"][0]) == want


def test_reasoning_content_wins():
    s = traces.split("<think>x</think> final", reasoning_content=" server reasoning ")
    assert s == ("server reasoning", "final", "ok") and s.closed


@pytest.mark.parametrize("r,a", [("think hard", "4"), ("multi\nline", "\\boxed{x}"), ("", "just the answer")])
def test_join_round_trips(r, a):
    s = traces.split(traces.join(r, a))
    assert (s.reasoning, s.answer) == (r, a)


def test_prefill():
    assert traces.with_prefill("<|Assistant|><think>\n", "reasoning</think>ans") == "<think>reasoning</think>ans"
    assert traces.with_prefill("<|Assistant|><think>\n", "<think>again</think>") == "<think>again</think>"
    assert traces.with_prefill("<|im_start|>assistant\n", "hello") == "hello"
    assert traces.reasoning_of("<think>r</think>a") == "r" and traces.reasoning_of("<think>open") == ""
