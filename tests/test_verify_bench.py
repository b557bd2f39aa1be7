"""Agreement on public labeled data (skips cleanly when ../shared/bench is absent)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from curate.verify import VerifyConfig, verify_frame

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
PAIRS = BENCH / "answers" / "answer_pairs.jsonl"
TRACES = BENCH / "traces" / "traces_qwen25math_cot_math100x8.jsonl"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(not PAIRS.exists(), reason="../shared/bench is not present")
def test_agreement_with_labeled_pairs():
    rows = [r for r in _read(PAIRS) if not r.get("label_flags")]
    df = pl.DataFrame(
        {
            "problem_id": [str(r["id"]) for r in rows],
            "gold_answer": [r["gold"] for r in rows],
            "answer_text": [r["pred"] for r in rows],
            "problem": [r.get("problem") for r in rows],
        }
    )
    ours = verify_frame(df, VerifyConfig(num_proc=2), None)["correct"].to_list()
    by_src = defaultdict(list)
    for r, o in zip(rows, ours):
        by_src[r["source"].split("@")[0]].append(o == r["equivalent"])
    overall = sum(sum(v) for v in by_src.values()) / len(rows)
    assert overall >= 0.95, {k: sum(v) / len(v) for k, v in by_src.items()}
    # plain Math-Verify agrees with every row of its own test suite: so must we
    mv = by_src["huggingface/Math-Verify"]
    assert sum(mv) == len(mv)


@pytest.mark.skipif(not TRACES.exists(), reason="../shared/bench is not present")
def test_agreement_with_qwen_grader_on_real_traces():
    rows = _read(TRACES)
    df = pl.DataFrame(
        {
            "problem_id": [str(r["problem_idx"]) for r in rows],
            "problem": [r["problem"] for r in rows],
            "gold_answer": [r["gold"] for r in rows],
            "answer_text": [r["trace"] for r in rows],
        }
    )
    out = verify_frame(df, VerifyConfig(num_proc=2), None)
    agree = sum(a == r["is_correct"] for a, r in zip(out["correct"], rows)) / len(rows)
    # the few disagreements are grader misses (gold "10{,}000" vs "10000", "4:30 p.m." vs "4:30p..")
    assert agree >= 0.98
    assert set(out["verdict"]) <= {"correct", "incorrect", "no_answer", "unparseable"}


NEW_SETS = sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "data").glob("*_pairs.jsonl"))


@pytest.mark.parametrize("path", NEW_SETS, ids=[p.stem for p in NEW_SETS])
def test_agreement_with_a_grader_suite_never_used_to_build_the_checker(path):
    """benchmarks/data: labelled sets from other graders' test suites (README names repo and commit)."""
    rows = [r for r in _read(path) if not r.get("label_flags")]
    assert len(rows) >= 40 and all("@" in r["source"] for r in rows)
    df = pl.DataFrame(
        {
            "problem_id": [str(r["id"]) for r in rows],
            "gold_answer": [r["gold"] for r in rows],
            "answer_text": [r["pred"] for r in rows],
        }
    )
    ours = verify_frame(df, VerifyConfig(num_proc=2, timeout_s=1), None)["correct"].to_list()
    agree = sum(o == r["equivalent"] for o, r in zip(ours, rows)) / len(rows)
    assert agree >= 0.9, agree
