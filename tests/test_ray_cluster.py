"""The same recipe on a Ray cluster started with ``ray start --head`` and reached with ``--address auto``
(issue 18): work shards run as Ray tasks on the cluster's workers, which read and write the shards in
the recipe's work folder, and the published dataset is the local engine's, row for row."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("ray")

from support.ray_synth import write_traces  # noqa: E402

RAY = Path(sys.executable).parent / "ray"

RECIPE = """name: {name}
version: 0.1.0
shard_rows: 400
engine: {engine}
sources:
  - kind: traces
    path: {traces}
    fields: {{problem: problem, gold_answer: answer}}
    trace_field: generations
    teacher: t
stages:
  - type: verify
  - type: dedup
  - type: difficulty
  - type: curriculum
    order: easy_to_hard
  - type: audit
output:
  dir: {out}
"""


@pytest.fixture(scope="module")
def head():
    if not RAY.exists():
        pytest.skip("no ray command in this environment")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
    started = subprocess.run(
        [str(RAY), "start", "--head", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    if started.returncode != 0:
        pytest.fail(f"ray start --head failed: {started.stderr[-2000:]}")
    try:
        yield env
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)


def _run(tmp_path: Path, env: dict, engine: str, *extra: str) -> Path:
    traces = tmp_path / "traces.jsonl"
    if not traces.exists():
        write_traces(traces, rows=3000, seed=5)
    recipe = tmp_path / f"{engine}.yaml"
    recipe.write_text(RECIPE.format(name=f"cl-{engine}", engine=engine, traces=traces, out=tmp_path / "out"))
    home = tmp_path / f"home-{engine}"
    proc = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", str(recipe), *extra],
        env={**env, "CURATE_HOME": str(home), "CURATE_VERIFY_START_METHOD": "forkserver"},
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "out" / f"cl-{engine}" / "0.1.0"


def _split(vdir: Path, split: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted(glob.glob(str(vdir / "data" / f"{split}-*.parquet")))])


def test_a_cluster_started_with_ray_start_gives_the_local_dataset(tmp_path, head):
    local = _run(tmp_path, head, "local")
    dist = _run(tmp_path, head, "ray", "--address", "auto")
    a, b = _split(local, "train"), _split(dist, "train")
    assert a.height > 500 and a.equals(b)
    ra, rb = _split(local, "rejected"), _split(dist, "rejected")
    assert ra.height > 500 and ra.equals(rb)
    import json

    m = json.loads((dist / "manifest.json").read_text())
    assert m["stages"][0]["stats"]["shards"] > 3
    engines = {s["stage"]: s["stats"].get("engine") for s in m["stages"][1:]}
    assert engines["verify"] == "ray" and engines["audit"] == "ray"
    shutil.rmtree(tmp_path / "home-ray", ignore_errors=True)
