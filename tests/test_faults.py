"""Reliability of teacher sampling against a misbehaving OpenAI-compatible server (issue 14, items 1, 2,
4, 6 and 11): malformed replies and usage are per-row problems (never a run failure, also on re-run),
budgets reserve for in-flight requests and report the final spend, ``max_failures`` counts the whole
stage. The real backend over HTTP, real loopback server (curate.testing.openai_server)."""

from __future__ import annotations

import json
import sqlite3

import polars as pl
import pytest

from curate.errors import BackendError, BudgetExceeded
from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context
from curate.testing.openai_server import Fault, OpenAIServer, Reply


def problems(k: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"What is {i} + {i}?" for i in range(k)]})


def cfg_for(srv, **kw) -> SampleConfig:
    teacher = {"backend": "openai", "model": "teacher-x", "base_url": srv.base_url, "backoff_initial": 0.01,
               "backoff_max": 0.02, "timeout": 5, "max_retries": 1}
    teacher.update(kw.pop("teacher", {}))
    return SampleConfig(teacher=teacher, **kw)


@pytest.fixture
def ctx(tmp_path):
    return Context.for_test(tmp_path)


# ----------------------------------------------------------------------------- item 1: list-valued content
def test_content_as_a_list_of_parts_is_read_not_a_crash(ctx):
    parts = [{"type": "text", "text": "<think>two and two</think>"}, {"type": "text", "text": " \\boxed{4}"}]

    def script(m, p, i):
        q = m[-1]["content"]
        if "0 + 0" in q:
            return Reply(message={"content": parts})
        if "1 + 1" in q:  # reasoning as parts too
            return Reply(message={"content": [{"type": "text", "text": "\\boxed{2}"}],
                                  "reasoning_content": [{"type": "text", "text": "one plus one"}]})
        return Reply(message={"content": {"unexpected": "object"}})  # not text: a per-row failure

    with OpenAIServer(script=script) as srv:
        df = sample_rows(problems(3), cfg_for(srv, max_failures=5), ctx)
    rows = {r["problem_id"]: r for r in df.to_dicts()}
    assert rows["p0"]["reasoning"] == "two and two" and rows["p0"]["answer_text"] == "\\boxed{4}"
    assert rows["p1"]["reasoning"] == "one plus one" and rows["p1"]["answer_text"] == "\\boxed{2}"
    assert rows["p2"]["finish_reason"] == "error" and "content" in rows["p2"]["error"]


def test_a_logged_reply_that_cannot_be_parsed_is_requested_again(ctx):
    with OpenAIServer() as srv:
        cfg = cfg_for(srv)
        first = sample_rows(problems(3), cfg, ctx)
        assert srv.count() == 3
        db = ctx.work_dir / "sampling" / "sample.sqlite"
        con = sqlite3.connect(db)
        key, payload = con.execute("select key, payload from responses limit 1").fetchone()
        bad = json.loads(payload)
        bad["samples"][0]["content"] = [{"type": "text", "text": "x"}, 7]  # what an older version logged
        bad["completion_tokens"] = "n/a"
        con.execute("update responses set payload = ? where key = ?", (json.dumps(bad), key))
        con.execute("insert or replace into responses values (?, ?, 0)", ("garbage", "{not json"))
        con.commit()
        con.close()
        again = sample_rows(problems(3), cfg, ctx)  # no crash: the unreadable entry is re-requested
        assert srv.count() == 4
        assert again.drop("request_hash").equals(first.drop("request_hash"))


# ----------------------------------------------------------------------------- item 2: non-numeric usage
def test_non_numeric_usage_is_a_per_row_problem(ctx):
    def script(m, p, i):
        if "1 + 1" in m[-1]["content"]:
            return Reply(content="a b c", usage={"completion_tokens": "n/a", "prompt_tokens": None})
        return Reply(content="a b c d")

    with OpenAIServer(script=script) as srv:
        df = sample_rows(problems(3), cfg_for(srv, budget={"max_completion_tokens": 10_000}), ctx)
    assert df.height == 3 and (df["finish_reason"] == "stop").all()
    stats = ctx.stats["sample"]
    assert stats["usage_missing"] == 1 and "estimate" in stats["token_count"]
    assert stats["completion_tokens"] >= 8 + 1  # 2 x 4 reported + an estimate for the third


# ----------------------------------------------------------------------------- item 6: max_failures
def test_max_failures_fraction_is_of_the_whole_stage_also_on_rerun(ctx):
    def script(m, p, i):
        return Fault.error(500, "sticky") if m[-1]["content"].startswith(("What is 3 + 3?", "What is 7 + 7?")) else "ok"

    with OpenAIServer(script=script) as srv:
        cfg = cfg_for(srv, max_failures=0.05, teacher={"max_retries": 0})  # 2 of 40 tolerated
        df = sample_rows(problems(40), cfg, ctx)
        assert (df["finish_reason"] == "error").sum() == 2
        again = sample_rows(problems(40), cfg, ctx)  # only the 2 failures are pending: still 2 of 40
        assert (again["finish_reason"] == "error").sum() == 2 and srv.count() == 42


def test_max_failures_message_names_the_real_threshold(ctx):
    with OpenAIServer(script=lambda m, p, i: Fault.error(500)) as srv:
        with pytest.raises(BackendError) as e:
            sample_rows(problems(40), cfg_for(srv, max_failures=0.1, teacher={"max_retries": 0, "concurrency": 1}), ctx)
    msg = str(e.value)
    assert "more than 4 of 40 requests" in msg and "max_failures=0.1" in msg and "\n" not in msg


# ----------------------------------------------------------------------------- item 4: budgets
def _spent(ctx) -> int:
    return ctx.stats["sample"]["completion_tokens"]


@pytest.mark.parametrize("concurrency", [16, 64])
def test_budget_overshoot_is_bounded_by_one_reservation(ctx, concurrency):
    words = " ".join(["w"] * 10)  # 10 completion tokens per sample, max_tokens 10
    with OpenAIServer(script=lambda m, p, i: words, latency=0.05) as srv:
        cfg = cfg_for(srv, n=2, max_tokens=10, budget={"max_completion_tokens": 100},
                      teacher={"concurrency": concurrency})
        with pytest.raises(BudgetExceeded) as e:
            sample_rows(problems(200), cfg, ctx)
        spent = _spent(ctx)
        assert spent <= 100 + 2 * 10, spent  # at most one request's reservation (max_tokens x n) over
        assert f"{spent} completion tokens" in str(e.value)  # the final spend, not the spend at the stop
        assert srv.count() < 200


def test_budget_counts_tokens_when_the_server_sends_no_usage(ctx):
    words = " ".join(["word"] * 40)  # 199 characters: about 50 tokens by the declared chars/4 estimate
    with OpenAIServer(script=lambda m, p, i: Reply(content=words, no_usage=True)) as srv:
        cfg = cfg_for(srv, max_tokens=100, budget={"max_completion_tokens": 200}, teacher={"concurrency": 1})
        with pytest.raises(BudgetExceeded, match="estimate"):
            sample_rows(problems(50), cfg, ctx)
        assert srv.count() <= 6
    stats = ctx.stats["sample"]
    assert stats["usage_missing"] == stats["sent_ok"] and "chars/4" in stats["token_count"]
    assert 150 <= stats["completion_tokens"] <= 300


def test_dollar_budget_reserves_too(ctx):
    with OpenAIServer(script=lambda m, p, i: "one two three four five", latency=0.05) as srv:
        cfg = cfg_for(srv, max_tokens=5, teacher={"concurrency": 32},
                      budget={"max_usd": 20, "usd_per_million_completion": 1e6})  # $1 per token
        with pytest.raises(BudgetExceeded, match=r"max_usd=20"):
            sample_rows(problems(100), cfg, ctx)
    assert ctx.stats["sample"]["usd"] <= 20 + 5 + 1  # one reservation (prompt estimate included)


def test_reservations_wait_instead_of_dropping_requests(ctx):
    # replies far below max_tokens: reservations block new requests for a moment, but the actual
    # spend stays under the budget, so every request must still be sent (never a silent "not sampled")
    with OpenAIServer(script=lambda m, p, i: "one two three four five", latency=0.02) as srv:
        cfg = cfg_for(srv, max_tokens=100, budget={"max_completion_tokens": 150}, teacher={"concurrency": 8})
        df = sample_rows(problems(20), cfg, ctx)
        assert srv.count() == 20 and (df["finish_reason"] == "stop").all()
        assert _spent(ctx) == 100
