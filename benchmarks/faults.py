"""Reliability figures against the loopback server (issue 14): one command, last line ``RESULT ...``.

    python benchmarks/faults.py [--problems 300] [--rate 0.2]

1. Fault mix: ``--problems`` problems x n=2 at ``--rate`` faults per attempt (429 + Retry-After, 5xx,
   resets, slow replies, truncated and malformed 200 bodies) plus 2% sticky failures, through the
   openai backend (its aiohttp client): faults injected, rows lost (problems without a result or an explicit error
   row), error rows (= sticky requests).
2. Budget overshoot at concurrency 16 and 64: every reply is exactly ``max_tokens`` tokens (the worst
   case), latency 100 ms, ``budget.max_completion_tokens`` = 20 requests' worth. Side by side in the
   same run: the reservation (send only while spent + reserved < budget) and the previous rule (stop
   sending once the spend reaches the budget; in-flight requests finish), by switching the reservation
   off. Also a server that sends no ``usage`` (tokens estimated at chars/4).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from curate import sampling  # noqa: E402
from curate.errors import BudgetExceeded  # noqa: E402
from curate.sampling import SampleConfig, sample_rows  # noqa: E402
from curate.stages.base import Context  # noqa: E402
from curate.testing.openai_server import OpenAIServer, Reply, fault_mix  # noqa: E402


def problems(k: int) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"Compute {i} * 7." for i in range(k)]})


def fault_run(n_problems: int, rate: float) -> dict:
    sched = fault_mix(rate, seed=1, sticky=0.02, retry_after=0.05)
    with tempfile.TemporaryDirectory() as d, OpenAIServer(faults=sched) as srv:
        cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": srv.base_url, "concurrency": 32,
                                    "max_retries": 6, "backoff_initial": 0.01, "backoff_max": 0.1, "timeout": 5},
                           n=2, max_failures=0.2)
        out = sample_rows(problems(n_problems), cfg, Context.for_test(Path(d)))
        requests = srv.count()
    got = set(out["problem_id"])
    lost = n_problems - len(got) + int(out.filter(pl.col("finish_reason").is_null()).height)
    errors = out.filter(pl.col("finish_reason") == "error")
    return {"faults": sum(v for k, v in sched.injected.items() if k != "sticky"), "by_kind": dict(sched.injected),
            "rows": out.height, "rows_lost": lost, "error_rows": errors.height,
            "sticky_requests": len(sched.sticky_keys), "requests": requests}


def budget_run(concurrency: int, reserve: bool, *, usage: bool = True) -> dict:
    max_tokens, budget = 50, 1000  # 20 requests' worth
    words = " ".join(["tok"] * max_tokens)
    reply = Reply(content=words, no_usage=not usage)
    admit = sampling._Run.admit
    if not reserve:  # the previous rule: only stop once the spend has reached the budget
        sampling._Run.admit = lambda self, req: not self.stop_reason  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as d, OpenAIServer(script=lambda m, p, i: reply, latency=0.1) as srv:
            cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": srv.base_url,
                                        "concurrency": concurrency},
                               n=1, max_tokens=max_tokens, budget={"max_completion_tokens": budget})
            ctx = Context.for_test(Path(d))
            try:
                sample_rows(problems(400), cfg, ctx)
            except BudgetExceeded as e:
                msg = str(e)
            spent = ctx.stats["sample"]["completion_tokens"]
    finally:
        sampling._Run.admit = admit  # type: ignore[method-assign]
    return {"spent": spent, "budget": budget, "overshoot": spent / budget - 1, "message": msg}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--rate", type=float, default=0.2)
    a = ap.parse_args()
    f = fault_run(a.problems, a.rate)
    print(f"fault mix: {f}")
    res = {}
    for conc in (16, 64):
        new, old = budget_run(conc, True), budget_run(conc, False)
        res[conc] = (new, old)
        print(f"budget c={conc}: reserved spent={new['spent']} overshoot={new['overshoot']:+.1%} | "
              f"previous rule spent={old['spent']} overshoot={old['overshoot']:+.1%}")
        print(f"  stop message: {new['message'][:160]}")
    nu = budget_run(64, True, usage=False)
    print(f"budget c=64, no usage from the server: spent~{nu['spent']} overshoot={nu['overshoot']:+.1%}")
    load = os.getloadavg()[0]
    print(
        f"RESULT faults_injected={f['faults']} rows_lost={f['rows_lost']} error_rows={f['error_rows']} "
        f"sticky_requests={f['sticky_requests']} "
        f"overshoot_c16={res[16][0]['overshoot']:+.3f} overshoot_c16_previous={res[16][1]['overshoot']:+.3f} "
        f"overshoot_c64={res[64][0]['overshoot']:+.3f} overshoot_c64_previous={res[64][1]['overshoot']:+.3f} "
        f"overshoot_c64_no_usage={nu['overshoot']:+.3f} load1={load:.2f}"
    )


if __name__ == "__main__":
    main()
