"""The verify stage, verify_frame, the worker pool (timeouts, killed workers), pass@k, aggregates."""

from __future__ import annotations

import itertools
import math
import signal
import sys
import time

import polars as pl
import pytest

from curate.errors import SourceError
from curate.registry import get_stage
from curate.stages.base import Context
from curate.verify import VERDICTS, VerifyConfig, pass_at_k, problem_aggregates, verify_frame


def _rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "problem_id": ["p1"] * 4 + ["p2"] * 3 + ["p3"],
            "problem": ["What is 1/2?"] * 4 + ["Compute 3+4."] * 3 + ["?"],
            "gold_answer": ["\\frac{1}{2}"] * 4 + ["7"] * 3 + [None],
            "reasoning": ["", "", "", "long thought ... so \\boxed{0.5}", "", "", "", ""],
            "answer_text": ["\\boxed{0.5}", "\\boxed{2}", "\\boxed{2}", "", "The answer is 7", "I give up", "and then", "\\boxed{1}"],
            "finish_reason": ["stop"] * 6 + ["length", "stop"],
        }
    )


def test_verify_frame_columns_and_verdicts():
    out = verify_frame(_rows(), VerifyConfig(num_proc=2), None)
    assert out.columns[-3:] == ["pred_answer", "verdict", "correct"]
    assert out["verdict"].to_list() == [
        "correct", "incorrect", "incorrect", "correct", "correct", "no_answer", "truncated", "no_gold"
    ]
    assert out["pred_answer"].to_list()[:5] == ["0.5", "2", "2", "0.5", "7"]
    assert out["correct"].to_list() == [v == "correct" for v in out["verdict"]]


def test_stage_annotate_adds_aggregates_and_stats(tmp_path):
    stage_cls = get_stage("verify")
    stage = stage_cls(stage_cls.Config.model_validate({"type": "verify", "num_proc": 1}))
    ctx = Context.for_test(tmp_path)
    out = stage.run(_rows(), ctx)
    for c in stage_cls.produces:
        assert c in out.columns
    assert "drop_reason" not in out.columns
    p1 = out.filter(pl.col("problem_id") == "p1")
    assert p1["n_correct"].unique().to_list() == [2]
    # a 2-2 tie between the gold and a wrong answer: scored by its expected value (curate.verify.metrics)
    assert p1["maj_answer"][0] == "0.5" and p1["maj_score"][0] == 0.5 and p1["maj_correct"][0] is False
    assert ctx.stats["verdicts"]["truncated"] == 1
    assert ctx.stats["pass@1"] == pytest.approx((2 / 4 + 1 / 3 + 0) / 3, abs=1e-6)
    assert ctx.stats["maj@k"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-6)


def test_stage_filter_marks_non_correct_rows_with_the_verdict(tmp_path):
    stage_cls = get_stage("verify")
    stage = stage_cls(stage_cls.Config(mode="filter", num_proc=0))
    out = stage.run(_rows(), Context.for_test(tmp_path))
    reasons = out["drop_reason"].to_list()
    assert reasons == [None, "incorrect", "incorrect", None, None, "no_answer", "truncated", "no_gold"]


def test_stage_keeps_the_input_row_order_on_a_shuffled_frame(tmp_path):
    """The per-problem aggregates join back in the input's order (polars 2 joins do not keep it unasked)."""
    import random

    rng = random.Random(7)
    n_ok = {f"p{i:04d}": min(i % 5, 3) for i in range(600)}  # 0..3 correct samples of 3, per problem
    rows = [
        {"problem_id": f"p{i:04d}", "sample_id": f"p{i:04d}-{s}", "gold_answer": str(i),
         "answer_text": f"\\boxed{{{i if s < n_ok[f'p{i:04d}'] else i + 1}}}"}
        for i in range(600) for s in range(3)
    ]
    rng.shuffle(rows)
    df = pl.DataFrame(rows)
    stage_cls = get_stage("verify")
    out = stage_cls(stage_cls.Config(num_proc=0)).run(df, Context.for_test(tmp_path))
    assert out["sample_id"].to_list() == df["sample_id"].to_list()
    assert out["correct"].to_list() == [int(r["sample_id"][-1]) < n_ok[r["problem_id"]] for r in rows]
    assert out["n_correct"].to_list() == [n_ok[p] for p in df["problem_id"]]
    assert out["maj_correct"].to_list() == [n_ok[p] >= 2 for p in df["problem_id"]]


def test_config_rejects_unknown_keys():
    from pydantic import ValidationError

    stage_cls = get_stage("verify")
    with pytest.raises(ValidationError):
        stage_cls.Config.model_validate({"type": "verify", "timeout": 3})


def test_missing_gold_column_is_a_one_line_error():
    with pytest.raises(SourceError, match="gold_answer"):
        verify_frame(pl.DataFrame({"answer_text": ["1"]}), VerifyConfig(num_proc=0), None)


def _hang_in_c(*args, **kwargs):
    """Stands for an answer that hangs where no signal handler can run (C code): it burns CPU with
    the soft-timeout signal blocked, as a big-integer power or a C loop would."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF, signal.SIGALRM})
    while True:
        pass


def _blocked(*args, **kwargs):
    """Stands for a worker that stops using CPU (blocked forever): only the wall backstop ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF, signal.SIGALRM})
    time.sleep(120)


def _patched_frame(monkeypatch, behaviours: dict, df, cfg, ctx):
    import curate.verify.pool as pool

    real = pool.check_row

    def dispatch(gold, answer, *rest):
        if answer in behaviours:
            behaviours[answer]()
        return real(gold, answer, *rest)

    monkeypatch.setattr(pool, "check_row", dispatch)
    return verify_frame(df, cfg, ctx)


@pytest.mark.skipif(sys.platform != "linux", reason="fault injection relies on fork inheriting the patch")
def test_a_stuck_worker_is_killed_and_replaced(monkeypatch, tmp_path):
    import curate.verify.pool as pool

    real = pool.check_row

    def maybe_hang(gold, answer, *rest):
        if answer == "HANG":
            _hang_in_c()
        return real(gold, answer, *rest)

    monkeypatch.setattr(pool, "check_row", maybe_hang)
    df = pl.DataFrame({"problem_id": ["a"] * 6, "gold_answer": ["3"] * 6,
                       "answer_text": ["\\boxed{3}", "HANG", "\\boxed{3}", "\\boxed{4}", "HANG", "\\boxed{3}"]})
    ctx = Context.for_test(tmp_path)
    t0 = time.monotonic()
    out = verify_frame(df, VerifyConfig(num_proc=2, timeout_s=0.2), ctx)
    assert time.monotonic() - t0 < 60  # a few CPU seconds per hang (RLIMIT_CPU has 1 s steps), then the retry
    assert out["verdict"].to_list() == ["correct", "timeout", "correct", "incorrect", "timeout", "correct"]
    pool_stats = ctx.stats["pool"]
    assert pool_stats["killed"] == 4  # each hang: killed by the CPU limit, and again in its retry
    assert pool_stats["retried"] == 2 and pool_stats["timeouts"] == 2


@pytest.mark.skipif(sys.platform != "linux", reason="fault injection relies on fork inheriting the patch")
def test_budget_is_cpu_time_not_wall_clock(monkeypatch, tmp_path):
    """Waiting (a busy machine, a descheduled worker) does not count; computing does, and an item
    just over the budget passes on its retry with twice the budget."""

    def wait_wall():
        time.sleep(1.2)  # 1.2 s of wall clock, no CPU: over a 0.5 s wall limit, within the CPU budget

    def compute(seconds):
        t0 = time.process_time()
        while time.process_time() - t0 < seconds:
            pass

    df = pl.DataFrame({"problem_id": list("abcd"), "gold_answer": ["3"] * 4,
                       "answer_text": ["WAIT", "SLOW", "\\boxed{3}", "SLOWER"]})
    ctx = Context.for_test(tmp_path)
    out = _patched_frame(monkeypatch, {"WAIT": wait_wall, "SLOW": lambda: compute(0.7),
                                       "SLOWER": lambda: compute(5.0)}, df,
                         VerifyConfig(num_proc=2, timeout_s=0.5, wall_limit_s=30), ctx)
    assert out["verdict"].to_list() == ["incorrect", "incorrect", "correct", "timeout"]
    assert ctx.stats["pool"]["retried"] == 2  # SLOW (passes with 1.0 s) and SLOWER (does not)
    assert ctx.stats["pool"]["timeouts"] == 1


@pytest.mark.skipif(sys.platform != "linux", reason="fault injection relies on fork inheriting the patch")
def test_wall_clock_backstop_ends_a_blocked_worker(monkeypatch, tmp_path):
    df = pl.DataFrame({"problem_id": ["a", "b"], "gold_answer": ["3", "3"], "answer_text": ["BLOCK", "\\boxed{3}"]})
    ctx = Context.for_test(tmp_path)
    t0 = time.monotonic()
    out = _patched_frame(monkeypatch, {"BLOCK": _blocked}, df, VerifyConfig(num_proc=1, timeout_s=0.5, wall_limit_s=1), ctx)
    assert time.monotonic() - t0 < 30
    assert out["verdict"].to_list() == ["timeout", "correct"]


def test_soft_timeout_keeps_the_worker():
    df = pl.DataFrame({"gold_answer": ["5", "5"], "answer_text": ["\\boxed{10^{10^{10^{10}}}}", "\\boxed{5}"]})
    ctx = Context.for_test(__import__("pathlib").Path("/tmp"))
    out = verify_frame(df, VerifyConfig(num_proc=1, timeout_s=0.5), ctx)
    assert out["verdict"].to_list() == ["timeout", "correct"]
    assert out["pred_answer"][0] == "10^{10^{10^{10}}}"  # the answer is reported even on timeout
    assert ctx.stats["pool"]["killed"] == 0
    assert ctx.stats["pool"]["retried"] == 1


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    combos = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in combos) / len(combos)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (8, 1, 4), (8, 7, 2), (6, 0, 6)])
def test_pass_at_k_matches_the_definition(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_edge_cases():
    assert pass_at_k(4, 1, 10) == 1.0  # k > n answers for k = n
    assert pass_at_k(0, 0, 1) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    assert not math.isnan(pass_at_k(100, 3, 50))


def test_problem_aggregates_majority_groups_equivalent_strings():
    df = pl.DataFrame(
        {
            "problem_id": ["a", "a", "a", "b"],
            "pred_answer": ["\\frac{1}{2}", "\\dfrac{1}{2}", "3", None],
            "correct": [True, True, False, False],
        }
    )
    agg = problem_aggregates(df, ks=(1, 2))
    a = agg.filter(pl.col("problem_id") == "a").row(0, named=True)
    assert (a["n_samples"], a["n_correct"], a["maj_count"], a["maj_correct"]) == (3, 2, 2, True)
    assert a["pass@2"] == pytest.approx(1.0)
    b = agg.filter(pl.col("problem_id") == "b").row(0, named=True)
    assert b["maj_answer"] is None and b["maj_correct"] is False and b["pass@1"] == 0.0


def test_verdicts_are_the_documented_set():
    assert VERDICTS == ("correct", "incorrect", "no_answer", "unparseable", "truncated", "timeout", "no_gold")
