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

WORDS = ["we", "need", "the", "value", "of", "x", "so", "let", "me", "compute", "carefully", "then", "check",
         "each", "step", "again", "the", "sum", "of", "terms", "equals", "a", "product", "modulo", "prime",
         "factor", "triangle", "area", "radius", "circle", "integer", "root", "polynomial", "sequence",
         "probability", "expected", "number", "ways", "choose", "fraction", "simplify"]
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


# ----------------------------------------------------------------------------- measuring
def _get(url: str, timeout: float = 120) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return time.perf_counter() - t0, status, body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_gib(pid: int) -> float:
    import psutil

    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**30


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/curate_view_bench"),
                    help="where the generated version (and the view's cached search index) live; reused")
    ap.add_argument("--requests", type=int, default=40, help="requests per kind")
    ap.add_argument("--scan-searches", type=int, default=2, help="searches also run without the index (side by side)")
    args = ap.parse_args()

    t = time.perf_counter()
    version = generate(args.data, args.rows)
    print(f"data: {version} ({args.rows:,} rows; {time.perf_counter() - t:.1f} s to generate or find)", flush=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CURATE_HOME": str(args.data / "home")}
    curate = str(Path(sys.executable).with_name("curate"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([curate, "view", str(version), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:  # time to first page: process start -> listening -> first table page served
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"curate view exited: {proc.stderr.read()[-2000:]}")
            time.sleep(0.01)
        listening = time.perf_counter() - t0
        first_request, status, body = _get(f"{base}/", timeout=60)
        assert status == 200 and b'id="rows"' in body, status
        first_page = time.perf_counter() - t0
        print(f"first page: {first_page:.3f} s from process start (listening after {listening:.3f} s "
              f"[python, imports, opening the shards], then the page request {first_request:.3f} s)", flush=True)
        # the background index, then the search index (built once per data fingerprint, then reused)
        t1 = time.perf_counter()
        last = ""
        while True:
            st = json.loads(_get(f"{base}/healthz")[2])
            if all(v["index"] == "ready" for v in st.values()) and all(v["search"] == "ready" for v in st.values()):
                break
            msg = ", ".join(f"{k}: index {v['index']}, search {v['search']}" for k, v in st.items())
            if msg != last:
                print(f"  waiting: {msg}", flush=True)
                last = msg
            if proc.poll() is not None:
                raise SystemExit(f"curate view exited: {proc.stderr.read()[-2000:]}")
            time.sleep(1)
        print(f"index + search index ready after {time.perf_counter() - t1:.1f} s more", flush=True)

        rng = random.Random(0)
        n = args.requests
        # rows per shard, from the parquet metadata
        import pyarrow.parquet as pq

        shards = {s: [pq.ParquetFile(f).metadata.num_rows for f in sorted((version / "data").glob(f"{s}-*.parquet"))]
                  for s in ("train", "rejected")}
        train_rows = sum(shards["train"])

        def filt() -> str:
            return rng.choice([
                f"flag={rng.choice(FLAGS)}", "verdict=incorrect", f"bucket={rng.choice(['easy', 'medium', 'hard'])}",
                f"teacher={rng.choice(TEACHERS)}", f"source={rng.choice(SOURCES)}&verdict=no_answer",
                f"split=rejected&drop_reason={rng.choice(DROPS)[1]}", f"split=rejected&dropped_by={rng.choice(DROPS)[0]}",
                f"len_min={rng.randrange(1500, 2500)}&len_max={rng.randrange(2500, 3000)}", "stage=2&correct=0",
                f"flag={rng.choice(FLAGS)}&teacher={rng.choice(TEACHERS)}&bucket=hard"])

        def sort() -> str:
            key = rng.choice(["difficulty", "pass_rate", "reasoning_chars", "n_flags", "curriculum_rank", "problem_id"])
            return f"sort={key}{'&desc=1' if rng.random() < 0.5 else ''}" + (f"&{filt()}" if rng.random() < 0.5 else "")

        def page() -> str:
            return f"page={rng.randrange(0, train_rows // 50)}" + (f"&{filt()}&page=3" if rng.random() < 0.3 else "")

        def trace() -> str:
            s = rng.choice(["train", "train", "rejected"])
            f = rng.randrange(len(shards[s]))
            return f"/trace/{s}/{f}/{rng.randrange(shards[s][f])}"

        searches = [str(rng.randrange(0, 100000)) for _ in range(n // 2)]
        searches += [f"{rng.choice(WORDS)} {rng.choice(WORDS)}" for _ in range(n // 4)]
        searches += [rng.choice(WORDS) for _ in range(n - len(searches))]
        times: dict[str, list[float]] = {k: [] for k in ("filter", "sort", "page", "trace", "search", "panel")}
        for kind, make in (("filter", filt), ("sort", sort), ("page", page), ("trace", trace)):
            for _ in range(n):
                path = make()
                url = base + (path if path.startswith("/") else "/?" + path)
                dt, status, _ = _get(url)
                if status != 200:
                    raise SystemExit(f"{url}: HTTP {status}")
                times[kind].append(dt)
        for i, q in enumerate(searches):  # every other search also filters or sorts (matches joined with the index)
            extra = "" if i % 2 == 0 else "&" + (filt() if rng.random() < 0.5 else sort())
            dt, status, _ = _get(f"{base}/?q={urllib.parse.quote(q)}{extra}")
            assert status == 200, (q, extra)
            times["search"].append(dt)
        for s in ("train", "rejected"):
            times["panel"].append(_get(f"{base}/fragment/panel?split={s}")[0])  # facets + charts, first (uncached) call
        rss = _rss_gib(proc.pid)
        load = os.getloadavg()
        for k, xs in times.items():
            print(f"{k:7s} n={len(xs):3d} p50={_pct(xs, 50):.3f}s p95={_pct(xs, 95):.3f}s max={max(xs):.3f}s", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # side by side: the same searches as a substring scan of the shards (no search index), in-process
    scan_times, index_times = [], []
    if args.scan_searches:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from curate.view.data import Query, Store

        store = Store(version, build_index=False)
        try:
            for q in searches[0::2][: args.scan_searches]:  # plain searches (no filter), as measured above
                t = time.perf_counter()
                store.page(Query("train", q=q))
                scan_times.append(time.perf_counter() - t)
        finally:
            store.close()
        index_times = times["search"][0::2][: args.scan_searches]
        print(f"search by scan (no index): p50={_pct(scan_times, 50):.3f}s vs index {_pct(index_times, 50):.3f}s "
              f"(x{_pct(scan_times, 50) / max(1e-9, _pct(index_times, 50)):.1f})", flush=True)
    nav = times["filter"] + times["sort"] + times["page"] + times["trace"]
    print(f"load average at measurement: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cpus); "
          f"server RSS {rss:.3f} GiB", flush=True)
    speed = f" search_scan_vs_index={_pct(scan_times, 50) / max(1e-9, _pct(index_times, 50)):.1f}" if scan_times else ""
    print(f"RESULT first_page_s={first_page:.3f} p95_s={_pct(nav, 95):.3f} search_p95_s={_pct(times['search'], 95):.3f} "
          f"rss_gib={rss:.3f} first_request_s={first_request:.3f} trace_p95_s={_pct(times['trace'], 95):.3f}{speed} "
          f"load1={load[0]:.2f}")


if __name__ == "__main__":
    main()
