"""Dedup on templated problems at two sizes (issue 18): candidate pairs, seconds and their growth.

    python benchmarks/dedup_scale.py                          # 50,000 and 400,000 problems
    python benchmarks/dedup_scale.py --small 5000 --large 40000
    python benchmarks/dedup_scale.py --stage-rows 1000000     # peak RSS of the dedup stage on 1M rows

Templated problems are the hard case for MinHash LSH: many problems share a template ("Mia has 12
apples and buys 7 more ...") and differ only in a name and the numbers, so in word 2-grams they are
near duplicates of each other (Jaccard ~0.5-0.7) that the dedup stage must keep apart (different
numbers). With a fixed set of templates, every pair of problems of one template lands in a shared LSH
bucket: all-pairs candidates grow with the square of the rows. The corpus also plants real
duplicates (5% exact copies in other spelling, 5% copies with one word changed and the same numbers)
so the stage still has work to do.

Prints, per size, the LSH candidates, rows dropped, pairs kept apart, seconds, and the growth ratios;
last line ``RESULT candidates_growth=<..> seconds_growth=<..> rows_growth=<..> ...``. With
``--stage-rows N``: the dedup stage on N rows (8 per problem, 2 KB traces) on the full frame and, in a
fresh process, on the narrow frame the runner hands it (``reads()`` + ``__rid``, Categorical problem
columns); last line ``RESULT stage_rows=N full_frame_peak_rss_mb=<..> narrow_peak_rss_mb=<..>``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_NAMES = ("Mia Liam Noah Emma Olivia Ava Lucas Ethan Zoe Ben Carla Diego Priya Omar Yuki Hana Ivan Sara Tom Lena "
          "Raj Nora Finn Ada Leo Ruth Sam Ines Kofi Maya").split()
_WORDS = ("apples pencils marbles tickets cookies stamps books coins shells cards eggs candles bottles buttons "
          "ribbons rocks plates cups bags boxes toys flowers seeds stickers beads").split()
_FILL = ("then later each every while after before more fewer twice half some other many total friend store "
         "market school garden week day morning evening shelf basket bag jar box table room class team").split()
_VERBS = "has buys sells gives finds collects loses bakes makes picks keeps wins".split()


def _templates(n: int, seed: int) -> list[list[str]]:
    """``n`` templates of 25-40 words: fixed words plus slots {N} (a name), {X} (a number), {W} (an item)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words: list[str] = ["{N}", str(rng.choice(_VERBS)), "{X}", "{W}", "."]
        while len(words) < int(rng.integers(25, 41)):
            k = rng.random()
            if k < 0.12:
                words += ["{X}", str(rng.choice(_WORDS))]
            else:
                words.append(str(rng.choice(_FILL + _VERBS)))
        words += ["How", "many", "{W}", "does", "{N}", "have", "now", "?"]
        out.append(words)
    return out


def templated_problems(n: int, n_templates: int = 400, seed: int = 0) -> tuple[list[str], list[str]]:
    """(problems, gold answers): ``n`` problems filled from ``n_templates`` fixed templates, with
    5% exact copies (upper case) and 5% near copies (one filler word changed, same numbers/answer)."""
    rng = np.random.default_rng(seed + 1)
    temps = _templates(n_templates, seed)
    texts: list[str] = []
    golds: list[str] = []
    for i in range(n):
        r = rng.random()
        if texts and r < 0.05:
            s = int(rng.integers(len(texts)))
            texts.append(texts[s].upper())
            golds.append(golds[s])
            continue
        if texts and r < 0.10:
            s = int(rng.integers(len(texts)))
            w = texts[s].split()
            cand = [k for k, x in enumerate(w) if x in _FILL]
            if cand:
                w[int(rng.choice(cand))] = str(rng.choice(_FILL))
            texts.append(" ".join(w))
            golds.append(golds[s])
            continue
        t = temps[int(rng.integers(n_templates))]
        name, item = str(rng.choice(_NAMES)), str(rng.choice(_WORDS))
        nums = []
        out = []
        for w in t:
            if w == "{N}":
                out.append(name)
            elif w == "{W}":
                out.append(item)
            elif w == "{X}":
                x = int(rng.integers(2, 200))
                nums.append(x)
                out.append(str(x))
            else:
                out.append(w)
        texts.append(" ".join(out))
        golds.append(str(sum(nums)))
    return texts, golds


def templated_frame(n_problems: int, per_problem: int = 8, n_templates: int = 400, seed: int = 0, reasoning_chars: int = 0):
    """A real-shaped sample frame: ``per_problem`` rows per problem (problem_id, sample_id, problem,
    gold_answer, reasoning, correct, completion_tokens)."""
    import polars as pl

    texts, golds = templated_problems(n_problems, n_templates, seed)
    rng = np.random.default_rng(seed + 2)
    n = n_problems * per_problem
    pid = np.repeat(np.arange(n_problems), per_problem)
    body = "we add the numbers step by step and check the total. " * max(1, reasoning_chars // 55)
    df = pl.DataFrame(
        {
            "problem_id": [f"p{k:07d}" for k in range(n_problems)],
            "problem": texts,
            "gold_answer": golds,
        }
    )
    rows = df[pid.tolist()] if n else df.head(0)
    return rows.with_columns(
        sample_id=pl.format("{}-{}", pl.col("problem_id"), pl.Series(np.tile(np.arange(per_problem), n_problems))),
        reasoning=pl.lit(body) + pl.Series(rng.integers(0, 10**6, n)).cast(pl.Utf8),
        correct=pl.Series(rng.random(n) < 0.6),
        completion_tokens=pl.Series(rng.integers(100, 4000, n)),
    )


def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it does not carry a forking parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(n: int, n_templates: int, num_proc: int, max_bucket: int | None = None) -> dict:
    """The dedup stage (field problem, defaults) on ``n`` templated problems, one row each."""
    import tempfile

    import polars as pl

    from curate.stages.base import Context
    from curate.stages.dedup import DedupConfig, DedupStage

    texts, golds = templated_problems(n, n_templates)
    df = pl.DataFrame({"problem_id": [f"p{k}" for k in range(n)], "problem": texts, "gold_answer": golds})
    with tempfile.TemporaryDirectory() as d:
        ctx = Context.for_test(Path(d))
        t0 = time.perf_counter()
        stage = DedupStage(DedupConfig(num_proc=num_proc))
        if max_bucket is not None:
            stage.max_bucket = max_bucket if max_bucket > 0 else None  # 0: all pairs of every bucket
        stage.run(df, ctx)
        sec = time.perf_counter() - t0
    st = ctx.stats
    return {"n": n, "candidates": st["lsh_candidates"], "seconds": sec, "dropped": st["exact_duplicates"] + st["near_duplicates"],
            "near": st["near_duplicates"], "kept_apart": st["kept_apart"], "bands_rows": st["lsh_bands_rows"]}


def _run_stage(df, label: str) -> tuple[float, float]:
    """(seconds, peak RSS MB growth over the RSS before) of the dedup stage (keep most_correct) on ``df``."""
    import tempfile

    from curate.stages.base import Context
    from curate.stages.dedup import DedupConfig, DedupStage

    base = _rss_mb()
    with tempfile.TemporaryDirectory() as d:
        ctx = Context.for_test(Path(d))
        t0 = time.perf_counter()
        out = DedupStage(DedupConfig(keep="most_correct", num_proc=1)).run(df, ctx)
        sec = time.perf_counter() - t0
    peak = _rss_mb()
    print(f"{label}: {df.height} rows, columns {df.columns} ({df.estimated_size() / 2**20:.0f} MB): {sec:.1f}s, "
          f"process peak RSS {peak:.0f} MB (+{peak - base:.0f} MB in the stage); dropped "
          f"{out['drop_reason'].is_not_null().sum()}, candidates {ctx.stats['lsh_candidates']}")
    return sec, peak


def stage_memory(rows: int, per_problem: int, n_templates: int) -> tuple[float, float]:
    """Peak RSS (MB) of the dedup stage on ``rows`` rows: (a) on the full frame (2 KB traces) in this
    process, (b) in a fresh process on what the runner hands it: ``reads()`` + ``__rid`` with
    problem/gold_answer/problem_id as Categorical (read from parquet: nothing else ever in memory)."""
    import subprocess
    import tempfile

    import polars as pl

    from curate.stages.dedup import DedupConfig, DedupStage

    df = templated_frame(rows // per_problem, per_problem, n_templates, reasoning_chars=2000)
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__rid"))
    _, full = _run_stage(df, "full frame")
    reads = DedupStage(DedupConfig(keep="most_correct")).reads(df.columns)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "narrow.parquet"
        cat = [c for c in ("problem", "gold_answer", "problem_id") if c in reads]
        df.select(*reads, "__rid").with_columns(pl.col(cat).cast(pl.Categorical)).write_parquet(path)
        del df
        res = subprocess.run([sys.executable, __file__, "--narrow-file", str(path)], capture_output=True, text=True, check=True)
    print(res.stdout.strip())
    return full, float(res.stdout.strip().rsplit("=", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=50_000)
    ap.add_argument("--large", type=int, default=400_000)
    ap.add_argument("--templates", type=int, default=400)
    ap.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-bucket", type=int, default=None, help="LSH bucket fan-out cap (default the stage's; 0: all pairs)")
    ap.add_argument("--stage-rows", type=int, default=0, help="peak RSS of the dedup stage on this many rows (8 per problem)")
    ap.add_argument("--narrow-file", help=argparse.SUPPRESS)  # internal: the narrow run in a fresh process
    a = ap.parse_args()
    if a.narrow_file:
        import polars as pl

        _, peak = _run_stage(pl.read_parquet(a.narrow_file), "narrow frame (reads + __rid, Categorical), fresh process")
        print(f"narrow_peak_mb={peak:.0f}")
        return
    print(f"load: {os.getloadavg()[0]:.2f} (1-min) on {os.cpu_count()} cores; {a.templates} templates")
    if a.stage_rows:
        full, narrow = stage_memory(a.stage_rows, 8, a.templates)
        print(f"RESULT stage_rows={a.stage_rows} full_frame_peak_rss_mb={full:.0f} narrow_peak_rss_mb={narrow:.0f}")
        return
    out = []
    for n in (a.small, a.large):
        m = measure(n, a.templates, a.num_proc, a.max_bucket)
        print(f"{n} problems: {m['candidates']} LSH candidates ({m['candidates'] / n:.1f} per problem), "
              f"{m['dropped']} dropped ({m['near']} near), kept apart {m['kept_apart']}, {m['seconds']:.1f}s; "
              f"bands x rows {m['bands_rows']}")
        out.append(m)
    s, g = out
    cg = g["candidates"] / max(1, s["candidates"])
    tg = g["seconds"] / max(1e-9, s["seconds"])
    print(f"RESULT candidates_growth={cg:.2f} seconds_growth={tg:.2f} rows_growth={g['n'] / s['n']:.2f} "
          f"candidates_per_problem={s['candidates'] / s['n']:.1f}->{g['candidates'] / g['n']:.1f} "
          f"peak_rss_mb={_rss_mb():.0f}")


if __name__ == "__main__":
    main()
