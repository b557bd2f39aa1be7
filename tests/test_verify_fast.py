"""The verify fast paths (curate/verify/mv.py) give exactly the verdicts of Math-Verify/latex2sympy as shipped.

The fast paths: plain numbers built without the ANTLR parse (``fast_number``), latex2sympy's
``parse_number`` without ``parse_expr`` for ASCII digits, a larger parse memo that remembers failures,
and a memo of Math-Verify extractions of short texts. ``library_parsing()`` switches all of them off:
each test judges the same real-shaped rows both ways and compares (pred_answer, verdict) row by row.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest
import sympy

from curate.verify import VerifyConfig, equiv, mv
from curate.verify.equiv import Options
from curate.verify.pool import run_tasks

ROOT = Path(__file__).resolve().parents[1]
BENCH_PAIRS = ROOT.parent / "shared" / "bench" / "answers" / "answer_pairs.jsonl"


def _same(a, b) -> bool:
    return type(a) is type(b) and sympy.srepr(a) == sympy.srepr(b) and getattr(a, "_prec", None) == getattr(b, "_prec", None)


def _numbers(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["0", "-0", "007", "0.0", "-0.0", "00.50", "7393", "-7393", "7393.0", "2.561404", "\\frac{148}{57}",
           "-\\frac{148}{57}", "\\dfrac{4}{2}", "\\tfrac{3}{6}", "\\frac{0}{5}", "148/57", "0/7",
           "12345678901234567890.123", "0.000000000000000000001234", "1.00000000000000000000001"]
    for _ in range(n):
        a = str(rng.randint(0, 10 ** rng.randint(1, 25)))
        b = str(rng.randint(1, 10 ** rng.randint(1, 25)))
        if rng.random() < 0.2:
            a = "0" * rng.randint(1, 3) + a
        sign = "-" if rng.random() < 0.4 else ""
        out.append(rng.choice([sign + a, f"{sign}{a}.{b}", sign + "\\frac{%s}{%s}" % (a, b), f"{sign}{a}/{b}"]))
    return out


def test_fast_numbers_are_latex2sympys_objects():
    strings = _numbers(1500, 1)
    with mv.library_parsing():
        ref = [mv._ORIGINAL_CACHED.__wrapped__(s) for s in strings]
    for s, r in zip(strings, ref):
        f = mv.fast_number(s)
        assert f is not None, s
        assert _same(f, r), (s, sympy.srepr(f), sympy.srepr(r))
    # not a plain number: left to the full parse
    for s in ("\\frac{1}{0}", "1/0", "3.", ".5", "1e5", "1,000", "x", "\\frac{a}{2}", "2^{10}", "١٢", "²"):
        assert mv.fast_number(s) is None, s


def test_parse_number_without_parse_expr_is_the_same():
    conv = mv._Converter.__new__(mv._Converter)
    rng = random.Random(2)
    texts = ["0", "00", "000.5", "1,000", "1,000.25", "12,34", "5.", ".5", "١٢", "²", "1e5", "nan", "inf"]
    for _ in range(1500):
        a = str(rng.randint(0, 10 ** rng.randint(1, 28)))
        if rng.random() < 0.2:
            a = "0" * rng.randint(1, 3) + a
        if rng.random() < 0.2:
            a = a[:2] + "," + a[2:]
        texts.append(a if rng.random() < 0.5 else f"{a}.{rng.randint(0, 10 ** rng.randint(1, 28))}")

    def run(fn, t):
        try:
            return fn(conv, t)
        except Exception as e:  # the same failure both ways
            return type(e)

    for t in texts:
        o, f = run(mv._ORIGINAL_NUMBER, t), run(mv._parse_number, t)
        assert (o is f) if isinstance(o, type) or isinstance(f, type) else _same(o, f), (t, o, f)


def test_parse_memo_remembers_failures_as_failures():
    mv.clear_memos()
    bad = "\\frac{1}{"
    for _ in range(2):  # the second time from the memo: still an Exception every caller catches
        with pytest.raises(Exception):
            mv._mv_parser.parse_latex_cached(bad)
    assert mv.parse_latex(bad) is None
    # an extraction that hits a failing parse goes on to the next match, both times
    first, second = mv.mv_extract("so $\\frac{1}{$ and then $x = 3$"), mv.mv_extract("so $\\frac{1}{$ and then $x = 3$")
    with mv.library_parsing():
        mv.clear_memos()
        ref = mv.mv_extract("so $\\frac{1}{$ and then $x = 3$")
    assert repr(first) == repr(second) == repr(ref)


def _judge_all(rows: list[dict], opts: Options, timeout_s: float) -> list[tuple]:
    """Every row judged as the stage does: in a worker process (forked here, so it runs with whatever
    parsing is installed now) with the per-item CPU-time budget (some labelled pairs are pathological)."""
    tasks = [(i, r.get("gold_answer"), r.get("problem"), r.get("answer_text"), r.get("reasoning"), r.get("finish_reason"))
             for i, r in enumerate(rows)]
    saved = os.environ.get("CURATE_VERIFY_START_METHOD")
    os.environ["CURATE_VERIFY_START_METHOD"] = "fork"
    try:
        res, _ = run_tasks(tasks, opts, timeout_s=timeout_s, num_proc=1)
    finally:
        if saved is None:
            del os.environ["CURATE_VERIFY_START_METHOD"]
        else:
            os.environ["CURATE_VERIFY_START_METHOD"] = saved
    return res


def _both_ways(rows: list[dict], timeout_s: float = 5.0) -> tuple[list, list]:
    opts = Options.from_config(VerifyConfig())

    def fresh():
        mv.clear_memos()
        equiv._PARSES.clear()
        equiv._JUDGED.clear()

    fresh()
    with mv.library_parsing():
        ref = _judge_all(rows, opts, timeout_s)
    fresh()
    fast = _judge_all(rows, opts, timeout_s)
    return ref, fast


def _assert_same(rows, ref, fast):
    # a row that ran out of its CPU budget either way says nothing about the parsing (machine load)
    diff = [(r, a, b) for r, a, b in zip(rows, ref, fast) if a != b and "timeout" not in (a[1], b[1])]
    assert not diff, f"{len(diff)} rows differ, e.g. {diff[:3]}"


def _scale_synth_rows(tmp_path: Path, rows: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import scale_synth
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    scale_synth.generate(tmp_path, scale_synth.Params(rows=rows), log=lambda *a, **k: None)
    return _traces_rows(tmp_path / "traces-*.parquet", tmp_path)


def _traces_rows(path: Path, base: Path) -> list[dict]:
    """Rows as the ``traces`` source loads them (reasoning / answer_text split, finish_reason)."""
    from curate.sources import TracesSource, load_sources

    cfg = TracesSource(kind="traces", name="synth", path=str(path),
                       fields={"problem": "problem", "gold_answer": "answer"}, trace_field="generations", teacher="t")
    df, _, _ = load_sources([cfg], base)
    return df.select("gold_answer", "problem", "answer_text", "reasoning", "finish_reason").to_dicts()


def test_same_verdicts_on_scale_synth_traces(tmp_path):
    rows = _scale_synth_rows(tmp_path, 2400)
    ref, fast = _both_ways(rows)
    _assert_same(rows, ref, fast)
    verdicts = {v for _, v in ref}
    assert {"correct", "incorrect", "truncated"} <= verdicts  # the rows exercise the paths


def test_same_verdicts_on_ray_synth_traces(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    try:
        import ray_synth
    finally:
        sys.path.remove(str(ROOT / "tests" / "support"))
    path = ray_synth.write_traces(tmp_path / "t.jsonl", rows=1600, seed=3)
    rows = _traces_rows(Path(path), tmp_path)
    ref, fast = _both_ways(rows)
    _assert_same(rows, ref, fast)


def _pairs_rows(path: Path) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [{"gold_answer": r["gold"], "answer_text": r["pred"], "problem": r.get("problem")} for r in rows]


def test_same_verdicts_on_labelled_pairs():
    paths = sorted((ROOT / "benchmarks" / "data").glob("*_pairs.jsonl"))
    if BENCH_PAIRS.exists():
        paths.append(BENCH_PAIRS)
    rows = [r for p in paths for r in _pairs_rows(p)][::3]  # a third (seconds); benchmarks/verify.py reads all
    if not rows:
        pytest.skip("no labelled pairs here")
    ref, fast = _both_ways(rows, timeout_s=0.5)  # a few pathological pairs spend the whole budget
    _assert_same(rows, ref, fast)
    assert sum(v != "timeout" for _, v in ref) > 0.9 * len(rows)
