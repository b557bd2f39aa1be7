"""Sampling against an adversarial loopback server (``fault_mix``: 429 + Retry-After, 5xx, connection
resets, slow replies, truncated and malformed 200 bodies, sticky failures), through the backend's
HTTP client: every problem ends in a result row or an explicit ``teacher_error`` row
(none silently missing), sticky failures are the only errors, Retry-After is honoured, and a re-run
sends only what failed."""

from __future__ import annotations

import polars as pl

from curate.sampling import SampleConfig, finish_stage_sampling, sample_rows
from curate.stages.base import Context
from curate.testing.openai_server import OpenAIServer, fault_mix

N = 120


def problems(k: int) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"Compute {i} * 3." for i in range(k)]})


def cfg_for(srv) -> SampleConfig:
    return SampleConfig(
        teacher={"backend": "openai", "model": "m", "base_url": srv.base_url, "concurrency": 16,
                 "max_retries": 6, "backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 2},
        n=2, max_failures=0.2,
    )


def test_fault_mix_loses_no_row_and_only_sticky_requests_fail(tmp_path):
    sched = fault_mix(0.2, seed=7, sticky=0.03, retry_after=0.05)
    ctx = Context.for_test(tmp_path)
    with OpenAIServer(faults=sched) as srv:
        out = sample_rows(problems(N), cfg_for(srv), ctx)
        log = srv.requests()
        # Retry-After honoured: the next attempt of a 429'd request comes at least retry_after later
        by_key: dict[str, list] = {}
        for r in log:
            by_key.setdefault(r.request_hash, []).append(r)
        gaps = [b.t - a.t for rs in by_key.values() for a, b in zip(rs, rs[1:]) if a.fault == "rate_limit"]
        sent_first = srv.count()
        out2 = sample_rows(problems(N), cfg_for(srv), ctx)  # re-run: only the failed ones again
        resent = {r.request_hash for r in srv.requests()[sent_first:]}
    injected = dict(sched.injected)
    assert sum(v for k, v in injected.items() if k != "sticky") >= 0.1 * N and len(injected) >= 5, injected
    assert out.height == 2 * N and set(out["problem_id"]) == {f"p{i}" for i in range(N)}  # 0 silently missing
    errors = out.filter(pl.col("finish_reason") == "error")
    assert set(errors["request_hash"]) == sched.sticky_keys  # only the poisoned requests failed
    assert errors["error"].str.contains("sticky failure").all()
    ok = out.filter(pl.col("finish_reason") != "error")
    assert ok["answer_text"].str.contains("boxed").all()
    marked = finish_stage_sampling(out, ctx, "sample")
    assert marked.filter(pl.col("drop_reason") == "teacher_error").height == errors.height
    assert gaps and min(gaps) >= 0.045, gaps
    assert resent == sched.sticky_keys and out2.filter(pl.col("finish_reason") == "error").height == errors.height
