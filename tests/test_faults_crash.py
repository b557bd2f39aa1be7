"""Crash and concurrency safety from the server's own request log (issue 14, items 3 and 11):

* a sampling run SIGKILLed several times at random points, then finished: no finished response is lost,
  no response that was committed to the log is ever requested again, and re-deliveries are bounded by
  what was delivered but not yet committed at each kill (at most the requests in flight);
* two ``curate run`` of one recipe at the same time: the second is refused with one line (exit 2),
  nothing is paid twice;
* temporary folders left by killed publishes and cache writes are removed by the next run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.testing.openai_server import OpenAIServer

N = 160
CONCURRENCY = 8

RUNNER = textwrap.dedent(
    """
    import sys, polars as pl
    from pathlib import Path
    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context
    url, work, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    probs = pl.DataFrame({"problem_id": [f"p{i}" for i in range(n)], "problem": [f"problem {i}" for i in range(n)]})
    cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": url, "concurrency": %d}, n=1, seed=3)
    df = sample_rows(probs, cfg, Context.for_test(work))
    df.write_parquet(work / "out.parquet")
    """ % CONCURRENCY
)


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


def test_repeated_sigkill_loses_nothing_and_redelivers_only_the_uncommitted(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    work = tmp_path / "w"
    db = work / ".curate" / "sampling" / "sample.sqlite"
    rng = random.Random(int(os.environ.get("CURATE_CRASH_SEED", "14")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    kills = []
    with OpenAIServer(latency=0.02) as srv:
        for _ in range(4):
            start_seq = srv.count()
            proc = subprocess.Popen([sys.executable, str(script), srv.base_url, str(work), str(N)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            target = rng.randint(8, 30)  # kill after a random number of fresh deliveries
            deadline = time.time() + 60
            while time.time() < deadline and proc.poll() is None:
                if sum(1 for r in srv.requests()[start_seq:] if r.completed) >= target:
                    break
                time.sleep(rng.uniform(0.001, 0.01))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)  # let the server finish writing what it had started
            seg = srv.requests()[start_seq:]
            delivered = {r.request_hash for r in seg if r.completed}
            committed = _logged(db)
            kills.append({
                "end_seq": start_seq + len(seg),
                "delivered": delivered,
                "committed": committed,
                "window": delivered - committed,  # delivered but not committed: sent again next run
                "in_flight": sum(1 for r in seg if not r.completed),
            })
        before_final = srv.count()
        done = subprocess.run([sys.executable, str(script), srv.base_url, str(work), str(N)], env=env,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        log = srv.requests()
    out = pl.read_parquet(work / "out.parquet")
    # rows lost = 0: every problem answered, no error rows
    assert out.height == N and out["finish_reason"].to_list().count("error") == 0
    assert sorted(out["problem_id"]) == sorted(f"p{i}" for i in range(N))
    # a committed response is never requested again
    for k, kill in enumerate(kills):
        later = {r.request_hash for r in log if r.seq >= kill["end_seq"]}
        assert not (kill["committed"] & later), f"kill {k}: a committed response was requested again"
    # re-deliveries: only what was delivered but uncommitted at a kill, at most the requests in flight
    completions = Counter(r.request_hash for r in log if r.completed)
    redelivered = sum(c - 1 for c in completions.values())
    windows = [len(k["window"]) for k in kills]
    assert redelivered <= sum(windows), (redelivered, windows)
    assert all(w <= 2 * CONCURRENCY for w in windows), windows
    assert len(completions) == N and before_final < len(log)
    report = {"kills": len(kills), "rows_lost": 0, "redelivered": redelivered, "uncommitted_at_kill": windows,
              "in_flight_at_kill": [k["in_flight"] for k in kills], "requests": len(log)}
    print("CRASH", json.dumps(report))


# ----------------------------------------------------------------------------- two runs at once
def _recipe(tmp_path, srv, n: int = 24) -> None:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"problem": f"{i} + 1"}) + "\n" for i in range(n)))
    (tmp_path / "recipe.yaml").write_text(
        "name: t\nversion: 0.1.0\nsources:\n  - {kind: file, path: data.jsonl}\nstages:\n  - type: sample\n"
        f"    teacher: {{backend: openai, model: m, base_url: '{srv.base_url}', concurrency: 2}}\n"
    )


def test_a_second_run_of_the_same_recipe_is_refused_and_nothing_is_paid_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    with OpenAIServer(latency=0.15) as srv:
        _recipe(tmp_path, srv)
        env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
        first = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", "recipe.yaml"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
        deadline = time.time() + 60
        while srv.count() == 0 and time.time() < deadline and first.poll() is None:
            time.sleep(0.02)
        r = CliRunner().invoke(app, ["run", "recipe.yaml"])
        assert r.exit_code == 2, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "another curate run" in errors[0] and "Traceback" not in r.stderr
        assert first.wait(120) == 0, first.stderr.read().decode()[-2000:]
        assert srv.count() == 24  # every request paid once
        again = CliRunner().invoke(app, ["run", "recipe.yaml"])  # afterwards: the version exists, nothing sent
        assert again.exit_code == 2 and "exists" in again.stderr and srv.count() == 24


def test_stale_temporary_folders_are_cleaned_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    with OpenAIServer() as srv:
        _recipe(tmp_path, srv, n=3)
        vroot = tmp_path / "out" / "t"
        cache = tmp_path / "home" / "t" / "cache"
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        stale = [vroot / f".tmp-0.1.0-{dead.pid}-deadbeef", vroot / ".tmp-0.1.0-0123abcd",  # killed publishes
                 cache / f".tmp-abc123-{dead.pid}-cafebabe"]  # a killed cache write
        alive = vroot / f".tmp-0.1.0-{os.getppid()}-feedface"  # a live writer (another recipe): kept
        for p in [*stale, alive]:
            (p / "data").mkdir(parents=True)
            (p / "data" / "train-00000-of-00001.parquet").write_bytes(b"partial")
        r = CliRunner().invoke(app, ["run", "recipe.yaml"])
        assert r.exit_code == 0, r.stderr
    assert not any(p.exists() for p in stale) and alive.exists()
    assert (vroot / "0.1.0" / "manifest.json").exists()


def test_two_processes_sampling_into_one_log_never_pay_twice(tmp_path):
    from curate.errors import BackendError
    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context

    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    work = tmp_path / "w"
    with OpenAIServer(latency=0.1) as srv:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen([sys.executable, str(script), srv.base_url, str(work), "40"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while srv.count() == 0 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        probs = pl.DataFrame({"problem_id": [f"p{i}" for i in range(40)], "problem": [f"problem {i}" for i in range(40)]})
        cfg = SampleConfig(teacher={"backend": "openai", "model": "m", "base_url": srv.base_url, "concurrency": 8}, n=1, seed=3)
        with pytest.raises(BackendError, match="another process is sampling"):
            sample_rows(probs, cfg, Context.for_test(work))
        assert proc.wait(60) == 0, proc.stderr.read().decode()[-2000:]
        assert srv.count() == 40
        again = sample_rows(probs, cfg, Context.for_test(work))  # afterwards: all from the log
        assert srv.count() == 40 and again.height == 40
