"""Teacher sampling over real HTTP: curate.sampling.sample_rows + the openai backend against the
loopback server (curate.testing.openai_server)."""

from __future__ import annotations

import sqlite3
import time

import polars as pl
import pytest

from curate.errors import BackendError, BudgetExceeded, RecipeError
from curate.sampling import SampleConfig, sample_rows, split_reasoning, with_prefill
from curate.stages.base import Context
from curate.testing.openai_server import Fault, OpenAIServer, Reply, first_attempts, token_id, tokenize

def problems(k: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(k)],
            "problem": [f"What is {i} + {i}?" for i in range(k)],
            "gold_answer": [str(2 * i) for i in range(k)],
            "source": ["t"] * k,
            "meta": ['{"level": 1}'] * k,
        }
    )


def cfg_for(srv, **kw) -> SampleConfig:
    teacher = {"backend": "openai", "model": "teacher-x", "base_url": srv.base_url, "backoff_initial": 0.01,
               "backoff_max": 0.05, "timeout": 5}
    teacher.update(kw.pop("teacher", {}))
    return SampleConfig(teacher=teacher, **kw)


@pytest.fixture
def ctx(tmp_path):
    return Context.for_test(tmp_path)


def test_split_reasoning_forms():
    assert split_reasoning("<think>\nA\n</think>\n\nB") == ("A", "B", True)
    assert split_reasoning("A prefilled\n</think>\nB") == ("A prefilled", "B", True)  # template prefilled <think>
    assert split_reasoning("<think> cut off mid") == ("cut off mid", "", False)
    assert split_reasoning("just an answer") == ("", "just an answer", True)
    assert split_reasoning("final", "server reasoning") == ("server reasoning", "final", True)
    # local backends know the rendered prompt: a prefilled <think> makes a cut-off trace all reasoning
    assert split_reasoning(with_prefill("<|im_start|>assistant\n<think>\n", "still thinking")) == ("still thinking", "", False)
    assert with_prefill("<|im_start|>assistant\n", "plain") == "plain"
    assert split_reasoning(with_prefill("a\n<think>\n", "x <think> y")) == ("x <think> y", "", False)  # inner tag kept
    assert with_prefill("a\n<think>\n", "<think>z</think>w") == "<think>z</think>w"  # re-emitted opener


def test_native_n_columns_reasoning_and_resume(ctx):
    def script(messages, params, index):
        q = messages[-1]["content"]
        if "1 + 1" in q:
            return Reply(content=f"\\boxed{{2}} #{index}", reasoning_content=f"one plus one, try {index}")
        if "2 + 2" in q:
            return f"so four\n</think>\n\\boxed{{4}} #{index}"  # prefilled <think>: only </think>
        return f"<think>zero</think>\\boxed{{0}} #{index}"

    with OpenAIServer(script=script) as srv:
        cfg = cfg_for(srv, n=3, seed=11, teacher={})
        df = sample_rows(problems(), cfg, ctx)
        assert srv.count() == 3  # native n: one request per problem
        assert all(r.body["n"] == 3 and r.body["seed"] == 11 for r in srv.requests())
        assert df.height == 9
        for col in ("sample_id", "problem_id", "sample_index", "teacher", "prompt", "reasoning", "answer_text",
                    "finish_reason", "prompt_tokens", "completion_tokens", "request_hash", "gold_answer", "meta", "source"):
            assert col in df.columns, col
        assert df["sample_id"].n_unique() == 9
        assert df["problem_id"].to_list() == ["p0"] * 3 + ["p1"] * 3 + ["p2"] * 3
        assert df["sample_index"].to_list() == [0, 1, 2] * 3
        assert df["teacher"].unique().to_list() == ["teacher-x"]
        r = df.filter(pl.col("problem_id") == "p1").row(2, named=True)
        assert r["reasoning"] == "one plus one, try 2" and r["answer_text"] == "\\boxed{2} #2"
        assert r["prompt"] == [{"role": "user", "content": "What is 1 + 1?\nPlease reason step by step, and put your final answer within \\boxed{}."}]
        r = df.filter(pl.col("problem_id") == "p2").row(0, named=True)
        assert (r["reasoning"], r["answer_text"]) == ("so four", "\\boxed{4} #0")
        r = df.filter(pl.col("problem_id") == "p0").row(1, named=True)
        assert (r["reasoning"], r["answer_text"], r["finish_reason"]) == ("zero", "\\boxed{0} #1", "stop")
        assert df["prompt_tokens"].min() > 0 and df["completion_tokens"].min() > 0
        st = ctx.stats["sample"]
        assert st["sent_ok"] == 3 and st["completion_tokens"] == df["completion_tokens"].sum()
        # resume: nothing is sent again and the rows are identical
        again = sample_rows(problems(), cfg, ctx)
        assert srv.count() == 3
        assert again.equals(df)
        assert ctx.stats["sample"]["from_log"] == 3 and ctx.stats["sample"]["sent_ok"] == 0


def test_fan_out_seeds_and_indices_match_native(ctx, tmp_path):
    with OpenAIServer() as srv:
        fan = sample_rows(problems(2), cfg_for(srv, n=3, seed=5, teacher={"native_n": False}), ctx)
        assert srv.count() == 6
        assert sorted((r.body["seed"], r.sample_index) for r in srv.requests() if "0 + 0" in r.body["messages"][0]["content"]) == [(5, 0), (6, 1), (7, 2)]
        assert all("n" not in r.body for r in srv.requests())
        native = sample_rows(problems(2), cfg_for(srv, n=3, seed=5), Context.for_test(tmp_path / "b"))
        # the default script answers \boxed{sample index}: fan-out and native n see the same indices
        assert fan["answer_text"].to_list() == native["answer_text"].to_list()
        assert fan["request_hash"].n_unique() == 6 and native["request_hash"].n_unique() == 2


def test_retries_429_retry_after_500_malformed_disconnect(ctx):
    faults = {0: Fault.rate_limit(retry_after=0.4), 1: Fault.error(500), 2: Fault.malformed(), 3: Fault.disconnect(),
              4: Fault.error(502)}
    with OpenAIServer(faults=faults) as srv:
        t0 = time.perf_counter()
        df = sample_rows(problems(1), cfg_for(srv, teacher={"backoff_initial": 0.001}), ctx)
        took = time.perf_counter() - t0
        assert [r.status for r in srv.requests()] == [429, 500, 200, 0, 502, 200]
        assert took >= 0.4  # Retry-After honoured although our own backoff is 1 ms
        assert df["finish_reason"].to_list() == ["stop"] and df["error"].to_list() == [None]
        assert len(srv.completed()) == 1


def test_timeout_then_retry(ctx):
    with OpenAIServer(faults=first_attempts(Fault.delay(2.0))) as srv:
        df = sample_rows(problems(2), cfg_for(srv, teacher={"timeout": 0.3}), ctx)
        assert df["finish_reason"].to_list() == ["stop", "stop"]
        assert srv.count() == 4  # each request: one timed out attempt, one good one


def test_failures_become_error_rows_and_are_retried_next_run(ctx):
    def script(messages, params, index):
        return Fault.error(503, "overloaded") if "1 + 1" in messages[-1]["content"] else "fine \\boxed{1}"

    with OpenAIServer(script=script) as srv:
        cfg = cfg_for(srv, n=2, max_failures=1, teacher={"max_retries": 2})
        df = sample_rows(problems(3), cfg, ctx)
        bad = df.filter(pl.col("problem_id") == "p1")
        assert bad["finish_reason"].to_list() == ["error", "error"]
        assert "503" in bad["error"][0] and "overloaded" in bad["error"][0]
        assert bad["answer_text"].to_list() == [None, None]
        assert df.filter(pl.col("problem_id") != "p1")["error"].null_count() == 4
        assert srv.count() == 2 + 3  # two good requests, one bad request tried 1 + 2 retries
        assert ctx.stats["sample"]["failed"] == 1
    with OpenAIServer() as srv2:  # the endpoint recovered: only the failed request is sent
        df2 = sample_rows(problems(3), cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"base_url": srv2.base_url})}), ctx)
        assert srv2.count() == 1 and (df2["finish_reason"] == "stop").all()


def test_non_retryable_400_fails_at_once(ctx):
    with OpenAIServer(script=lambda m, p, i: Fault.error(400, "context too long")) as srv:
        df = sample_rows(problems(1), cfg_for(srv, max_failures=5), ctx)
        assert srv.count() == 1
        assert df["finish_reason"].to_list() == ["error"] and "context too long" in df["error"][0]


def test_max_failures_stops_a_broken_endpoint(ctx):
    with OpenAIServer(script=lambda m, p, i: Fault.error(500)) as srv:
        with pytest.raises(BackendError) as e:
            sample_rows(problems(40), cfg_for(srv, max_failures=0.1, teacher={"max_retries": 0, "concurrency": 2}), ctx)
        msg = str(e.value)
        assert "\n" not in msg and "max_failures=0.1" in msg and "HTTP 500" in msg
        assert srv.count() < 40  # it stopped early


def test_length_finish_and_logprobs_with_exact_token_ids(ctx):
    with OpenAIServer(script=lambda m, p, i: "<think>a b c d e f</think> g") as srv:
        cfg = cfg_for(srv, max_tokens=4, logprobs=3, teacher={"token_ids": True})
        df = sample_rows(problems(1), cfg, ctx)
        r = df.row(0, named=True)
        assert r["finish_reason"] == "length" and r["answer_text"] == "" and r["reasoning"] == "a b c d"
        # k + 1 asked of a vLLM server (its list starts with the sampled token), sorted and cut at k
        assert srv.requests()[0].body["top_logprobs"] == 4 and srv.requests()[0].body["return_tokens_as_token_ids"]
        toks = tokenize("<think>a b c d e f</think> g")[:4]
        assert r["token_ids"] == [token_id(t) for t in toks]
        assert [row[0] for row in r["topk_ids"]] == r["token_ids"] and all(len(x) == 3 for x in r["topk_ids"])
        assert len(r["topk_logprobs"]) == 4 and r["topk_logprobs"][0][0] > r["topk_logprobs"][0][1]
        assert r["tokenizer"] == "teacher-x@" and r["completion_tokens"] == 4  # no teacher.tokenizer: no hash
    with OpenAIServer(script=lambda m, p, i: "x y") as srv:  # a server without token ids: strings kept
        df = sample_rows(problems(1), cfg_for(srv, logprobs=2), Context.for_test(ctx.base_dir / "b"))
        r = df.row(0, named=True)
        assert r["token_ids"] is None and r["topk_tokens"][1] == [" y", " y#1"]


def test_budget_stops_cleanly_and_resumes(ctx):
    with OpenAIServer(script=lambda m, p, i: "one two three four five") as srv:  # 5 tokens per sample
        cfg = cfg_for(srv, budget={"max_completion_tokens": 12}, teacher={"concurrency": 1})
        with pytest.raises(BudgetExceeded) as e:
            sample_rows(problems(6), cfg, ctx)
        # counted as responses are committed: in-flight work finishes (one request over here, concurrency 1)
        assert "max_completion_tokens=12" in str(e.value) and ("3/6" in str(e.value) or "4/6" in str(e.value))
        assert srv.count() in (3, 4)
        cfg2 = cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"max_completion_tokens": 1000})})
        df = sample_rows(problems(6), cfg2, ctx)
        assert srv.count() == 6 and df.height == 6
        assert ctx.stats["sample"]["completion_tokens"] == 30
        # all done: a budget below the logged usage does not fail a run with nothing left to send
        assert sample_rows(problems(6), cfg, ctx).equals(df)
        usd = cfg_for(srv, budget={"max_usd": 0.5, "usd_per_million_completion": 1e6},  # $1 per token
                      teacher={"concurrency": 1})
        with pytest.raises(BudgetExceeded, match="max_usd"):
            sample_rows(problems(6), usd, Context.for_test(ctx.base_dir / "usd"))


def test_secret_key_never_reaches_log_rows_or_hash(ctx, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("MY_TEACHER_KEY", secret)
    with OpenAIServer() as srv:
        cfg = cfg_for(srv, teacher={"api_key_env": "MY_TEACHER_KEY"}, logprobs=1)
        df = sample_rows(problems(2), cfg, ctx)
        seen = [r.headers for r in srv.requests()]
    blob = b"".join(p.read_bytes() for p in (ctx.work_dir).rglob("*") if p.is_file())
    assert secret.encode() not in blob
    assert secret not in str(df.to_dicts()) and secret not in str(ctx.stats) and secret not in str(seen)


def test_removed_client_key_is_a_recipe_error_naming_it(tmp_path):
    from curate.yamlio import load_yaml_model

    p = tmp_path / "sample.yaml"
    p.write_text("teacher:\n  backend: openai\n  model: m\n  client: aiohttp\n")
    with pytest.raises(RecipeError) as e:
        load_yaml_model(p, SampleConfig)
    msg = str(e.value)
    assert msg.startswith(f"{p}:4: teacher.client: ") and "\n" not in msg and "delete" in msg, msg


def test_proxy_from_the_environment_is_used(ctx, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with OpenAIServer() as srv:  # the loopback server answers the absolute-form requests a proxy gets
        monkeypatch.setenv("HTTP_PROXY", srv.base_url.rsplit("/v1", 1)[0])
        cfg = cfg_for(srv, max_failures=2, teacher={"base_url": "http://teacher.invalid/v1", "max_retries": 0})
        df = sample_rows(problems(2), cfg, ctx)
        assert df["error"].to_list() == [None, None] and srv.count() == 2
        # NO_PROXY: the loopback server directly, although the proxy named now is dead
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        df = sample_rows(problems(3), cfg_for(srv, max_failures=2, teacher={"max_retries": 0}), ctx)
        assert df["error"].to_list() == [None] * 3 and srv.count() == 3


def test_missing_key_without_base_url_is_one_line(ctx, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "api_key_env": "NOPE_KEY"})
    with pytest.raises(BackendError, match="NOPE_KEY is not set"):
        sample_rows(problems(1), cfg, ctx)


def test_templates_system_prompt_and_unknown_column(ctx):
    with OpenAIServer() as srv:
        cfg = cfg_for(srv, system_prompt="You solve {source} problems.", user_template="Q: {problem} (gold hidden) {{x}} \\boxed{}")
        df = sample_rows(problems(1), cfg, ctx)
        assert df["prompt"][0].to_list() == [
            {"role": "system", "content": "You solve t problems."},
            {"role": "user", "content": "Q: What is 0 + 0? (gold hidden) {x} \\boxed{}"},
        ]
        with pytest.raises(RecipeError, match=r"user_template: \{nope\} is not a column"):
            sample_rows(problems(1), cfg_for(srv, user_template="{nope}"), ctx)


def test_logs_per_name_do_not_collide_and_concurrency_is_capped(ctx):
    with OpenAIServer(latency=0.05) as srv:
        a = sample_rows(problems(12), cfg_for(srv, teacher={"concurrency": 4}), ctx, log_name="sample")
        assert srv.max_in_flight <= 4
        b = sample_rows(problems(12), cfg_for(srv, teacher={"concurrency": 4}), ctx, log_name="difficulty_probe")
        assert srv.count() == 24  # the probe's log is its own
        assert (ctx.work_dir / "sampling" / "sample.sqlite").exists()
        assert (ctx.work_dir / "sampling" / "difficulty_probe.sqlite").exists()
        assert a.equals(b)
        n = sqlite3.connect(ctx.work_dir / "sampling" / "sample.sqlite").execute("select count(*) from responses").fetchone()[0]
        assert n == 12


def test_rpm_limit_spaces_requests(ctx):
    with OpenAIServer() as srv:
        t0 = time.perf_counter()
        sample_rows(problems(4), cfg_for(srv, teacher={"rpm": 300}), ctx)  # one request per 0.2 s
        assert time.perf_counter() - t0 >= 0.55
        ts = [r.t for r in srv.requests()]
        assert ts[-1] - ts[0] >= 0.4  # arrival times at the server (a loaded machine jitters single gaps)


def test_sample_stage_marks_teacher_errors(ctx):
    from curate.registry import get_stage

    stage_cls = get_stage("sample")
    with OpenAIServer(script=lambda m, p, i: Fault.error(400, "bad") if "2 + 2" in m[-1]["content"] else "ok") as srv:
        conf = stage_cls.Config.model_validate({"type": "sample", "teacher": {"backend": "openai", "model": "m", "base_url": srv.base_url}, "max_failures": 3})
        out = stage_cls(conf).run(problems(3), ctx)
        assert out.filter(pl.col("drop_reason") == "teacher_error")["problem_id"].to_list() == ["p2"]
        assert out["drop_reason"].null_count() == 2
        # a failed request: not cached (a re-run retries it); flat stats, no local log path
        assert ctx.cacheable is False and ctx.stats["failed"] == 1 and "sample" not in ctx.stats
        assert "log" not in ctx.stats and ".sqlite" not in str(ctx.stats)
    with pytest.raises(Exception):
        stage_cls.Config.model_validate({"type": "sample", "teacher": {"backend": "openai", "model": "m"}, "bogus": 1})


def test_empty_input_sends_nothing(ctx):
    with OpenAIServer() as srv:
        empty = pl.DataFrame(schema={"problem_id": pl.Utf8, "problem": pl.Utf8})
        df = sample_rows(empty, cfg_for(srv), ctx)
        assert df.height == 0 and "answer_text" in df.columns and srv.count() == 0


def test_error_text_echoing_the_key_is_redacted(ctx, monkeypatch):
    secret = "sk-echo-SECRET-987654321"
    monkeypatch.setenv("ECHO_KEY", secret)
    with OpenAIServer(script=lambda m, p, i: Fault.error(401, f"Incorrect API key provided: {secret}")) as srv:
        df = sample_rows(problems(1), cfg_for(srv, max_failures=2, teacher={"api_key_env": "ECHO_KEY"}), ctx)
    assert "Incorrect API key provided: ***" in df["error"][0]
    blob = b"".join(p.read_bytes() for p in ctx.work_dir.rglob("*") if p.is_file())
    assert secret.encode() not in blob and secret not in str(df.to_dicts())
