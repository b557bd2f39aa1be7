"""The CLI's process hands freed memory back to the OS (curate.memory, issue 18): polars' jemalloc is
configured before polars loads, a user's own setting is kept."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import gc, sys, psutil
import curate.cli  # what `curate ...` imports first
import polars as pl
p = psutil.Process()
base = p.memory_info().rss
df = pl.DataFrame({"a": pl.int_range(0, 8_000_000, eager=True), "s": pl.repeat("x" * 24, 8_000_000, eager=True)})
df = df.with_columns(pl.col("s") + "y").sort("a", descending=True)
held = p.memory_info().rss - base
del df
gc.collect()
left = p.memory_info().rss - base
print(held, left)
import os; print(os.environ.get("_RJEM_MALLOC_CONF"))
"""


def _probe(env: dict) -> tuple[int, int, str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120, check=True)
    held, left = map(int, out.stdout.split("\n")[0].split())
    return held, left, out.stdout.split("\n")[1]


def test_the_cli_process_returns_freed_polars_memory_at_once():
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    held, left, conf = _probe(env)
    assert held > 200 * 2**20  # the frame was there
    assert left < 0.3 * held, (held, left)  # and its pages went back when it was dropped
    assert "dirty_decay_ms:0" in conf


def test_a_users_allocator_setting_is_kept():
    _, _, conf = _probe({**os.environ, "_RJEM_MALLOC_CONF": "narenas:2"})
    assert conf.endswith(",narenas:2") and "background_thread" not in conf  # polars prepends its defaults
