"""Crash safety: a sampling run in a subprocess is killed (SIGKILL) or interrupted (SIGINT) midway,
then resumed. From the server's own request log: no request that had finished (was in the durable
log) at the kill is sent again, and the final rows equal an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context
from curate.testing.openai_server import OpenAIServer

N = 40

RUNNER = textwrap.dedent(
    """
    import sys, polars as pl
    from pathlib import Path
    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context
    url, work = sys.argv[1], Path(sys.argv[2])
    probs = pl.DataFrame({"problem_id": [f"p{i}" for i in range(%d)], "problem": [f"problem {i}" for i in range(%d)]})
    cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": url, "concurrency": 4}, n=2, seed=3)
    df = sample_rows(probs, cfg, Context.for_test(work))
    df.write_parquet(work / "out.parquet")
    """ % (N, N)
)


def _cfg(url: str) -> SampleConfig:
    return SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": url, "concurrency": 4}, n=2, seed=3)


def _probs() -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(N)], "problem": [f"problem {i}" for i in range(N)]})


def _logged(db) -> set[str]:
    if not db.exists():
        return set()
    con = sqlite3.connect(db)
    try:
        return {k for (k,) in con.execute("select key from responses")}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_midway_then_resume(tmp_path, sig):
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    work = tmp_path / "w"
    db = work / ".curate" / "sampling" / "sample.sqlite"
    with OpenAIServer(latency=0.1) as srv:  # 4 in flight: ~40 requests/s, so the kill lands midway
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen([sys.executable, str(script), srv.base_url, str(work)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(_logged(db)) < 8 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(30)
        err = proc.stderr.read().decode()
        assert proc.returncode != 0, err  # killed midway, not finished
        if sig == signal.SIGINT:
            assert "KeyboardInterrupt" in err
        done_at_kill = _logged(db)
        assert 8 <= len(done_at_kill) < N, len(done_at_kill)
        seq_at_kill = srv.count()

        ctx = Context.for_test(work)
        resumed = sample_rows(_probs(), _cfg(srv.base_url), ctx)
        after = srv.requests()[seq_at_kill:]
        assert after, "the resume sent the missing requests"
        assert not {r.request_hash for r in after} & done_at_kill  # nothing finished is sent again
        for key in done_at_kill:  # ... and each finished request was sent exactly once overall
            assert sum(1 for r in srv.requests() if r.request_hash == key) == 1
        assert ctx.stats["sample"]["from_log"] == len(done_at_kill)

        fresh = sample_rows(_probs(), _cfg(srv.base_url), Context.for_test(tmp_path / "fresh"))
        assert resumed.equals(fresh)
        assert resumed.height == 2 * N and (resumed["finish_reason"] == "stop").all()
