"""Benchmark of ``curate view`` on a generated 1M-row version.

    python benchmarks/view.py [--rows 1000000] [--data /tmp/curate_view_bench] [--requests 40]

Generates (once, reused when present) a version folder shaped like ``curate run``'s output: parquet
shards of 200k rows written by polars as ``curate.publish`` writes them, a train split with the
verify/difficulty/curriculum/audit columns and a rejected split with ``drop_reason``/``dropped_by``,
reasoning traces of about 2k characters built from varied sentences. Then it starts the real server
(``curate view`` in a subprocess on a loopback port) and measures, over HTTP:

* time to first page: from starting the process to the first table page returned;
* p50/p95 of filter, sort and page requests (the HTML table fragment), of trace pages, and of
  full-text search requests;
* the server's resident memory (RSS, process tree) at the end.

Goals: first page < 1 s, p95 < 0.3 s for filters/sorts/pages/traces, search p95 < 1 s, RSS < 1 GiB.
Last line: ``RESULT first_page_s=.. p95_s=.. search_p95_s=.. rss_gib=..``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

WORDS = ("we need the value of x so let me compute carefully then check each step again the sum of "
         "terms equals a product modulo prime factor triangle area radius circle integer root "
         "polynomial sequence probability expected number ways choose fraction simplify").split()
FLAGS = ["truncated", "unclosed_think", "empty_reasoning", "no_answer", "no_boxed", "repetition_loop",
         "language_mix", "length_outlier", "answer_mismatch"]
TEACHERS = ["deepseek-r1", "qwq-32b", "qwen3-235b"]
SOURCES = ["openr1-math", "numina", "gsm8k", "math"]
DROPS = [("dedup", "near_duplicate"), ("dedup", "exact_duplicate"), ("decontaminate", "contaminated:math500"),
         ("difficulty", "incorrect_trace"), ("difficulty", "max_correct_per_problem"), ("verify", "no_answer")]


def _texts(rng: np.random.Generator, n: int, mean_chars: int) -> list[str]:
    """``n`` texts of about ``mean_chars`` characters from a pool of varied sentences."""
    pool = []
    for _ in range(50_000):
        k = int(rng.integers(6, 16))
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), k)]
        words.insert(int(rng.integers(0, k)), str(int(rng.integers(0, 100000))))
        pool.append(" ".join(words).capitalize() + ".")
    avg = sum(map(len, pool)) / len(pool) + 1
    per = max(1, int(mean_chars / avg))
    idx = rng.integers(0, len(pool), (n, per))
    jitter = rng.integers(-per // 3, per // 3 + 1, n)
    return [" ".join(pool[j] for j in row[: per + d]) for row, d in zip(idx.tolist(), jitter.tolist())]


def _split(rng: np.random.Generator, n: int, start: int, rejected: bool) -> pl.DataFrame:
    n_problems = max(1, n // 8)
    pidx = rng.integers(0, n_problems, n) + start
    reasoning = _texts(rng, n, 2200)
    gold = rng.integers(0, 1000, n)
    correct = rng.random(n) < 0.8
    pred = np.where(correct, gold, gold + rng.integers(1, 9, n))
    verdict = np.where(correct, "correct", np.where(rng.random(n) < 0.7, "incorrect", "no_answer"))
    diff = rng.random(n)
    flag_pick = rng.random((n, len(FLAGS))) < 0.03
    flags = [[FLAGS[j] for j in np.flatnonzero(row)] for row in flag_pick]
    cols: dict = {
        "problem_id": [f"p{i:08x}" for i in pidx.tolist()],
        "problem": [f"Problem {i}: " + t for i, t in zip(pidx.tolist(), _texts(rng, n, 250))],
        "gold_answer": gold.astype(str),
        "source": [SOURCES[i] for i in rng.integers(0, len(SOURCES), n).tolist()],
        "source_index": pidx,
        "sample_id": [f"s{start + i:09d}" for i in range(n)],
        "sample_index": rng.integers(0, 8, n),
        "teacher": [TEACHERS[i] for i in rng.integers(0, len(TEACHERS), n).tolist()],
        "reasoning": [r + f" So the answer is \\boxed{{{p}}}." for r, p in zip(reasoning, pred.tolist())],
        "answer_text": [f"The final answer is $\\boxed{{{p}}}$." for p in pred.tolist()],
        "finish_reason": np.where(rng.random(n) < 0.02, "length", "stop"),
        "completion_tokens": (np.array([len(r) for r in reasoning]) / 4).astype(np.int64),
        "request_hash": [f"{int(x):016x}" for x in rng.integers(0, 2**62, n)],
        "pred_answer": pred.astype(str),
        "verdict": verdict,
        "correct": correct,
        "cluster_id": [f"p{i:08x}" for i in pidx.tolist()],
        "n_samples": np.full(n, 8),
        "pass_rate": np.round(1 - diff, 3),
        "difficulty": np.round(diff, 3),
        "difficulty_bucket": np.where(diff < 0.33, "easy", np.where(diff < 0.66, "medium", "hard")),
    }
    if rejected:
        which = rng.integers(0, len(DROPS), n)
        cols["dropped_by"] = [DROPS[i][0] for i in which.tolist()]
        cols["drop_reason"] = [DROPS[i][1] for i in which.tolist()]
    else:
        cols["curriculum_stage"] = np.where(diff < 0.33, 1, np.where(diff < 0.66, 2, 3)).astype(np.int32)
        cols["curriculum_rank"] = np.argsort(np.argsort(diff))
        cols["reasoning_tokens"] = cols["completion_tokens"]
        cols["flags"] = pl.Series(flags, dtype=pl.List(pl.Utf8))
    return pl.DataFrame(cols)


def generate(root: Path, rows: int, seed: int = 0) -> Path:
    """A version folder of ``rows`` rows (80% train, 20% rejected); reused when already complete."""
    version = root / "bench" / "1.0.0"
    done = version / ".complete"
    if done.exists() and json.loads(done.read_text()).get("rows") == rows:
        return version
    rng = np.random.default_rng(seed)
    data = version / "data"
    data.mkdir(parents=True, exist_ok=True)
    for f in data.glob("*.parquet"):
        f.unlink()
    shard = 200_000  # curate.recipe's default output.shard_rows
    n_train = int(rows * 0.8)
    for split, total, offset in (("train", n_train, 0), ("rejected", rows - n_train, n_train)):
        n_sh = max(1, -(-total // shard))
        for i in range(n_sh):
            m = min(shard, total - i * shard)
            df = _split(rng, m, offset + i * shard, split == "rejected")
            df.write_parquet(data / f"{split}-{i:05d}-of-{n_sh:05d}.parquet")  # as curate.publish writes
            print(f"  wrote {split} shard {i + 1}/{n_sh}", file=sys.stderr, flush=True)
    funnel = [{"stage": "source", "rows_in": rows, "rows_out": rows, "dropped": {}, "seconds": 1.0},
              {"stage": "dedup", "rows_in": rows, "rows_out": n_train, "dropped": {"near_duplicate": rows - n_train},
               "seconds": 1.0}]
    (version / "manifest.json").write_text(json.dumps({"name": "bench", "version": "1.0.0", "funnel": funnel}))
    done.write_text(json.dumps({"rows": rows}))
    return version
