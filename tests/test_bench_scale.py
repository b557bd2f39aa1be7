"""Smoke test of benchmarks/scale.py: 2,000 generated traces through `curate run` in a subprocess;
the per-stage table comes from the published funnel and the last line is the RESULT contract.
Timings are printed by the benchmark, never asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale_synth import PER_PROBLEM, Params, generate

RESULT = re.compile(r"^RESULT rows=(\d+) seconds=(\d+\.\d+) peak_rss_gib=(\d+\.\d+) growth=(\d+\.\d+)$")


def test_scale_benchmark_result_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--rows", "2000"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    m = RESULT.match(lines[-1])
    assert m, lines[-1]
    assert int(m.group(1)) == 2000 and float(m.group(4)) == 1.0
    assert float(m.group(2)) > 0 and 0 < float(m.group(3)) < 64
    # every stage of the recipe has its row in the table, read from the manifest's funnel
    stages = [ln.split()[0] for ln in lines if re.match(r"^\w+\s+[\d,]+\s+[\d,]+\s+\d+\.\d", ln)]
    assert stages[:6] == ["source", "verify", "dedup", "difficulty", "curriculum", "audit"], stages
    source = next(ln for ln in lines if ln.startswith("source "))
    assert source.split()[1] == "2,000"


def test_synth_shape_and_seed(tmp_path: Path) -> None:
    """The generated source: 8 traces per problem in files of at most file_problems rows, the same
    bytes for the same seed, templated and duplicated problems, truncated and think-tagged traces."""
    p = Params(rows=3000, seed=3, file_problems=150, group_problems=100)
    meta = generate(tmp_path / "a", p, log=lambda *_: None)
    generate(tmp_path / "b", p, log=lambda *_: None)
    assert meta["problems"] == 375 and len(meta["files"]) == 3
    df = pl.read_parquet(tmp_path / "a" / "traces-*.parquet")
    assert df.height == 375 and df["generations"].list.len().unique().to_list() == [PER_PROBLEM]
    for name in meta["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    traces = df["generations"].explode()
    n_chars = traces.str.len_chars().mean()
    assert 1800 < n_chars < 2400, n_chars
    closed = traces.str.contains("</think>", literal=True)
    assert traces.str.starts_with("<think>").all() and 0.02 < 1 - closed.mean() < 0.12  # truncated share
    assert traces.str.contains("\\boxed{", literal=True).any() and traces.str.contains("/", literal=True).any()
    assert df["answer"].str.starts_with("\\frac").any() and df["answer"].str.contains(r"^\d+$").any()
    assert df["problem"].n_unique() < df.height  # exact duplicates
    # templated: many problems share their lead sentence
    lead = df["problem"].str.to_lowercase().str.split(".").list.first()
    assert lead.n_unique() < df.height * 0.9


def _version(root: Path, train: pl.DataFrame, rejected: pl.DataFrame, dropped: int = 3) -> Path:
    import json
    (root / "data").mkdir(parents=True)
    half = train.height // 2  # two files: the published order runs across them
    train.slice(0, half).write_parquet(root / "data" / "train-00000-of-00002.parquet")
    train.slice(half).write_parquet(root / "data" / "train-00001-of-00002.parquet")
    rejected.write_parquet(root / "data" / "rejected-00000-of-00001.parquet")
    funnel = [{"stage": "source", "rows_in": 10, "rows_out": 10, "dropped": {}, "seconds": 0.1},
              {"stage": "dedup", "rows_in": 10, "rows_out": 10 - dropped, "dropped": {"near_duplicate": dropped},
               "seconds": 0.5}]
    (root / "manifest.json").write_text(json.dumps(
        {"splits": {"train": train.height, "rejected": rejected.height}, "funnel": funnel}))
    return root


def test_compare_ray_checks_order_rejected_and_funnel(tmp_path: Path) -> None:
    """--compare-ray's verdict: the published train split in its published order (the curriculum's),
    the rejected split and the funnel's rows, not just the train rows as a set; seconds may differ."""
    from scale import compare_versions

    train = pl.DataFrame({"sample_id": ["a", "b", "c", "d"], "x": [1, 2, 3, 4]})
    rejected = pl.DataFrame({"sample_id": ["e", "f"], "reject_reason": ["wrong", "duplicate"]})
    ref = _version(tmp_path / "ref", train, rejected)
    same = compare_versions(ref, _version(tmp_path / "same", train, rejected))
    assert same["identical"] and same["splits"]["train"]["same"] and same["funnel_same"]
    reordered = compare_versions(ref, _version(tmp_path / "order", train.reverse(), rejected))
    assert not reordered["identical"] and not reordered["splits"]["train"]["same"]
    assert reordered["splits"]["rejected"]["same"]
    other_rejected = rejected.with_columns(pl.Series("reject_reason", ["wrong", "wrong"]))
    assert not compare_versions(ref, _version(tmp_path / "rej", train, other_rejected))["identical"]
    funnel = compare_versions(ref, _version(tmp_path / "fun", train, rejected, dropped=2))
    assert not funnel["identical"] and not funnel["funnel_same"] and funnel["splits"]["train"]["same"]
