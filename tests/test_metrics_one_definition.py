"""pass@k and maj@k have one definition: the funnel (verify stage) and `curate eval` agree on the same rows.

The failing scenario (issue 13): the funnel broke maj ties by first occurrence and grouped correct answers by
their spelling, eval pooled correct answers and scored ties by their expected value; pass@k with k > n was
clipped to n in one and undefined in the other.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from curate.eval.metrics import per_problem, summarize
from curate.stages.base import Context
from curate.stages.verify import VerifyStage
from curate.verify import VerifyConfig

# (gold, answers of the problem's samples in sample order)
CASES = [
    ("7", ["8", "7"]),                      # a 1-1 tie between a wrong and the right answer
    ("1/2", ["\\frac{1}{2}", "0.5", "3", "3"]),  # two spellings of the gold vs two equal wrong answers
    ("12", ["12", "12", "5", "6"]),          # a clear correct majority
    ("4", ["5", "5", "4", "9"]),             # a clear wrong majority
    ("x", ["", "", "", "y"]),                # no answers but one wrong
    ("10", ["10", "11", "12", "13"]),        # a four-way tie
]


def _frame() -> pl.DataFrame:
    rows = []
    for p, (gold, answers) in enumerate(CASES):
        for i, a in enumerate(answers):
            rows.append({
                "problem_id": f"p{p}", "problem": f"problem {p}", "gold_answer": gold, "sample_index": i,
                "sample_id": f"p{p}-{i}", "reasoning": "thinking", "finish_reason": "stop",
                "answer_text": f"The answer is \\boxed{{{a}}}." if a else "I do not know.",
            })
    return pl.DataFrame(rows)


@pytest.mark.parametrize("k", [2, 4])
def test_funnel_and_eval_agree_on_pass_and_maj(tmp_path, k):
    ctx = Context.for_test(tmp_path)
    out = VerifyStage(VerifyConfig(num_proc=0, pass_k=[1, k])).run(_frame(), ctx)
    problems = per_problem(out, ks=[1, k], maj_ks=[4])
    summary = {m: v["value"] for m, v in summarize(problems, n_boot=50, seed=0)["metrics"].items()}
    assert ctx.stats["pass@1"] == pytest.approx(summary["pass@1"], abs=1e-6)
    # maj over all of a problem's samples: every problem here has 2 or 4, eval's maj@4 covers the 4-sample ones
    four = problems.filter(pl.col("n_samples") == 4)
    two_sample_maj = per_problem(out.filter(pl.col("problem_id") == "p0"), maj_ks=[2])["maj@2"][0]
    want_maj = (float(four["maj@4"].sum()) + two_sample_maj) / problems.height
    assert ctx.stats["maj@k"] == pytest.approx(want_maj, abs=1e-6)
    # pass@k is defined only where n >= k: the same problems count in both
    want = summary.get(f"pass@{k}")
    got = ctx.stats.get(f"pass@{k}")
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert got is None
    else:
        assert got == pytest.approx(want, abs=1e-6)


def test_tie_is_scored_by_its_expected_value(tmp_path):
    ctx = Context.for_test(tmp_path)
    out = VerifyStage(VerifyConfig(num_proc=0)).run(_frame(), ctx)
    per = out.group_by("problem_id").agg(pl.col("maj_score").first()).sort("problem_id")
    scores = dict(zip(per["problem_id"], per["maj_score"]))
    assert scores["p0"] == pytest.approx(0.5)       # 8 vs 7: a coin flip
    assert scores["p1"] == pytest.approx(0.5)       # the two spellings of 1/2 vote together against 3, 3
    assert scores["p2"] == 1.0 and scores["p3"] == 0.0 and scores["p4"] == 0.0
    assert scores["p5"] == pytest.approx(0.25)
