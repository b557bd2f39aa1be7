"""difficulty's LLM paths (judge, probe) through the real openai client against the loopback server."""

from __future__ import annotations

import re

import polars as pl
import pytest

from curate.stages.base import DROP, Context
from curate.stages.difficulty import DEFAULT_JUDGE_PROMPT, DifficultyConfig, DifficultyStage

pytest.importorskip("aiohttp")
from curate.testing.openai_server import Fault, OpenAIServer, Reply  # noqa: E402

PROBLEMS = {
    # problem text -> (gold answer, how many of 4 probe samples are right, judge replies by sample index)
    "What is 2+2?": ("4", 4, ["Difficulty: 1", "1", "**Difficulty:** 2/10", "\\boxed{2}"]),
    "Solve x^2 = 9 for x > 0.": ("3", 2, ["Difficulty: 5", "I'd say 6 out of 10.", "Difficulty: 4-5", "no idea"]),
    "Find the 100th prime.": ("541", 1, ["<think>long</think>Difficulty: 8", "9/10", "Difficulty: 12", "rating: 8"]),
    "Prove the Riemann hypothesis.": ("0", 0, ["10", "Difficulty: 10", "It is very hard.", "{\"difficulty\": 10}"]),
}


def problems_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(len(PROBLEMS))],
            "problem": list(PROBLEMS),
            "gold_answer": [v[0] for v in PROBLEMS.values()],
            "source": ["t"] * len(PROBLEMS),
            "source_index": list(range(len(PROBLEMS))),
            "meta": ["{}"] * len(PROBLEMS),
        }
    )


def _problem_in(text: str) -> str:
    return next(p for p in PROBLEMS if p in text)


def script(messages, params, index):
    user = messages[-1]["content"]
    problem = _problem_in(user)
    gold, n_right, judge = PROBLEMS[problem]
    if params["model"] == "judge-model":
        return Reply(content=judge[index % 4])
    right = index < n_right
    return Reply(reasoning_content=f"thinking about {problem}", content=f"\\boxed{{{gold if right else 'wrong'}}}")


def teacher(srv: OpenAIServer, model: str) -> dict:
    return {
        "teacher": {"backend": "openai", "model": model, "base_url": srv.base_url, "max_retries": 0,
                    "api_key_env": "CURATE_TEST_NO_KEY"},
        "n": 4,
        "temperature": 1.0,
        "max_tokens": 256,
    }


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(script=script, latency=0.0) as srv:
        yield srv


def test_judge_scores_parse_and_count_unparseable(server, tmp_path):
    server.clear()
    cfg = DifficultyConfig(methods=[{"method": "judge"}], judge=teacher(server, "judge-model"))
    ctx = Context.for_test(tmp_path)
    out = DifficultyStage(cfg).run(problems_frame(), ctx)
    scores = dict(zip(out["problem"], out["judge_score"]))
    assert scores["What is 2+2?"] == pytest.approx((1 + 1 + 2 + 2) / 4)
    assert scores["Solve x^2 = 9 for x > 0."] == pytest.approx((5 + 6 + 4.5) / 3)
    assert scores["Find the 100th prime."] == pytest.approx((8 + 9 + 8) / 3)
    assert scores["Prove the Riemann hypothesis."] == pytest.approx(10.0)
    assert ctx.stats["judge_replies"] == 16 and ctx.stats["judge_unparseable"] == 3
    d = dict(zip(out["problem"], out["difficulty"]))
    ordered = [d[p] for p in PROBLEMS]
    assert ordered == sorted(ordered) and ordered[0] == 0.0 and ordered[-1] == 1.0
    # the judge saw the rating prompt, not the solving prompt
    bodies = [r.body for r in server.requests()]
    assert len(bodies) == 4 and all(b["model"] == "judge-model" and b["n"] == 4 for b in bodies)
    user = bodies[0]["messages"][-1]["content"]
    assert user.startswith(DEFAULT_JUDGE_PROMPT.split("{problem}")[0]) and "boxed" not in user
    # no verify columns: pass-rate columns are empty, nothing dropped
    assert out["n_samples"].to_list() == [0] * 4 and out["pass_rate"].null_count() == 4
    assert DROP not in out.columns or out[DROP].null_count() == 4
    # durable: a second run answers from the request log, sending nothing
    server.clear()
    again = DifficultyStage(cfg).run(problems_frame(), Context.for_test(tmp_path))
    assert server.count() == 0 and again["judge_score"].to_list() == out["judge_score"].to_list()


def test_judge_custom_template(server, tmp_path):
    server.clear()
    judge = {**teacher(server, "judge-model"), "n": 1, "user_template": "Rate 1-10: {problem}"}
    cfg = DifficultyConfig(methods=[{"method": "judge"}], judge=judge)
    DifficultyStage(cfg).run(problems_frame(), Context.for_test(tmp_path))
    assert server.requests()[0].body["messages"][-1]["content"].startswith("Rate 1-10: ")


def test_probe_pass_rate_and_window_before_teacher_sampling(server, tmp_path):
    server.clear()
    cfg = DifficultyConfig(
        methods=[{"method": "pass_rate", "source": "probe", "estimate": "point"}],
        probe=teacher(server, "probe-model"),
        min_pass_rate=0.1,
        max_pass_rate=0.75,
    )
    ctx = Context.for_test(tmp_path)
    out = DifficultyStage(cfg).run(problems_frame(), ctx)
    assert out.height == 4  # one row per problem in, one out
    by = {r["problem"]: r for r in out.iter_rows(named=True)}
    assert [by[p]["pass_rate"] for p in PROBLEMS] == [1.0, 0.5, 0.25, 0.0]
    assert all(by[p]["n_samples"] == 4 for p in PROBLEMS)
    assert by["What is 2+2?"][DROP] == "pass_rate_above_window"
    assert by["Prove the Riemann hypothesis."][DROP] == "pass_rate_below_window"
    assert by["Solve x^2 = 9 for x > 0."][DROP] is None and by["Find the 100th prime."][DROP] is None
    ds = [by[p]["difficulty"] for p in PROBLEMS]
    assert ds == sorted(ds)
    assert ctx.stats["probe_samples"] == 16 and ctx.stats["pass_rate_source"] == "probe"
    assert all(r.body["model"] == "probe-model" for r in server.requests())
    assert (tmp_path / ".curate" / "sampling" / "difficulty_probe.sqlite").exists()


def test_probe_next_to_teacher_verdicts(server, tmp_path):
    """Teacher traces are kept and filtered by the teacher's verdicts; difficulty mixes probe + teacher."""
    server.clear()
    probs = problems_frame()
    rows = probs.join(pl.DataFrame({"sample_index": [0, 1]}), how="cross").with_columns(
        (pl.col("problem_id") + "-" + pl.col("sample_index").cast(pl.Utf8)).alias("sample_id"),
        # the teacher solves everything but the last problem, on its first sample only
        ((pl.col("sample_index") == 0) & (pl.col("problem_id") != "p3")).alias("correct"),
        pl.lit(100).alias("completion_tokens"),
    ).with_columns(pl.when(pl.col("correct")).then(pl.lit("correct")).otherwise(pl.lit("incorrect")).alias("verdict"))
    cfg = DifficultyConfig(
        methods=[{"method": "pass_rate", "source": "probe", "weight": 2}, {"method": "pass_rate", "source": "teacher"}],
        probe=teacher(server, "probe-model"),
    )
    out = DifficultyStage(cfg).run(rows, Context.for_test(tmp_path))
    reasons = dict(zip(out["sample_id"], out[DROP]))
    assert reasons["p0-0"] is None and reasons["p0-1"] == "incorrect_trace"
    assert reasons["p3-0"] == "unsolved" and reasons["p3-1"] == "unsolved"
    assert out.filter(pl.col("problem_id") == "p1")["pass_rate"].to_list() == [0.5, 0.5]  # the probe's
    assert len(server.requests()) == 4  # one request per problem with n=4
    assert re.search(r"boxed", server.requests()[0].body["messages"][-1]["content"])  # the solving prompt


def test_empty_input_sends_nothing(server, tmp_path):
    server.clear()
    cfg = DifficultyConfig(
        methods=[{"method": "pass_rate", "source": "probe"}, {"method": "judge"}],
        probe=teacher(server, "probe-model"),
        judge=teacher(server, "judge-model"),
    )
    out = DifficultyStage(cfg).run(problems_frame().clear(), Context.for_test(tmp_path))
    assert out.height == 0 and "difficulty" in out.columns and server.count() == 0


def test_failed_probe_and_judge_requests_are_not_cached_and_no_log_path_in_stats(tmp_path):
    """A request that failed after its retries: the stage output is not cached (a re-run retries it;
    the finished ones come from the log) and no local log path reaches the stats (the manifest)."""

    def flaky(messages, params, index):
        if "100th prime" in messages[-1]["content"]:
            return Fault.error(400, "refused")
        return script(messages, params, index)

    with OpenAIServer(script=flaky, latency=0.0) as srv:
        cfg = DifficultyConfig(
            methods=[{"method": "pass_rate", "source": "probe", "estimate": "point"}, {"method": "judge"}],
            probe={**teacher(srv, "probe-model"), "max_failures": 1},
            judge={**teacher(srv, "judge-model"), "max_failures": 1},
        )
        ctx = Context.for_test(tmp_path)
        out = DifficultyStage(cfg).run(problems_frame(), ctx)
        assert ctx.cacheable is False
        assert "/" not in str(ctx.stats) and str(tmp_path) not in str(ctx.stats)
        assert "log" not in ctx.stats["difficulty_probe"] and "log" not in ctx.stats["difficulty_judge"]
        assert ctx.stats["difficulty_probe"]["failed"] == 1 and ctx.stats["judge_failed_requests"] == 4
        by = {r["problem"]: r for r in out.iter_rows(named=True)}
        assert by["Find the 100th prime."]["n_samples"] == 0  # failed samples say nothing about the problem
        assert by["What is 2+2?"]["pass_rate"] == 1.0
        # the re-run sends only the failed requests (one probe, one judge); all answered: cacheable
        srv.clear()
        ok = Context.for_test(tmp_path)
        srv.script = script
        DifficultyStage(cfg).run(problems_frame(), ok)
        assert srv.count() == 2 and ok.cacheable is True


def test_successful_probe_is_cacheable_without_log_path(server, tmp_path):
    server.clear()
    cfg = DifficultyConfig(methods=[{"method": "pass_rate", "source": "probe"}], probe=teacher(server, "probe-model"))
    ctx = Context.for_test(tmp_path)
    DifficultyStage(cfg).run(problems_frame(), ctx)
    assert ctx.cacheable is True and ctx.stats["difficulty_probe"]["requests"] == 4
    assert "log" not in ctx.stats["difficulty_probe"] and ".sqlite" not in str(ctx.stats)
