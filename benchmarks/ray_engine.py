"""Ray engine benchmark (issue 10): rows/s of ``verify`` and ``dedup``, local engine vs Ray engine,
measured side by side in the same run on this machine, plus an equality check of the outputs.

    python benchmarks/ray_engine.py                 # 20,000 synthetic traces, a local Ray instance
    python benchmarks/ray_engine.py --rows 5000     # quick
    python benchmarks/ray_engine.py --address auto  # an existing cluster (ray start --head ...)

Data: support.ray_synth (seeded): 4 traces per problem, right/wrong/truncated answers in
several notations, exact and near-duplicate problems and reasoning. Both engines run the same stage
objects on the same frame: ``verify`` (defaults; locally ``num_proc`` = all CPUs) and ``dedup`` on
``reasoning`` (sample scope, MinHash, word 5-grams). Each engine gets one untimed warm-up on 1,000
rows first (worker start-up, imports), then the timed run. The local runs go first, before Ray starts
in this process; Ray start-up time is printed, not counted.

Last line: RESULT verify_ray_vs_local=<ray rows/s / local rows/s> dedup_ray_vs_local=<..> identical=<0|1>
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # test support: tests/support/

import polars as pl  # noqa: E402

from curate.engines import LocalEngine  # noqa: E402
from curate.engines.ray_engine import RayEngine  # noqa: E402
from support.ray_synth import write_traces  # noqa: E402
from curate.recipe import load_recipe  # noqa: E402
from curate.registry import get_stage  # noqa: E402
from curate.sources import load_sources  # noqa: E402
from curate.stages.base import Context  # noqa: E402


def load_frame(tmp: Path, rows: int) -> pl.DataFrame:
    traces = write_traces(tmp / "traces.jsonl", rows=rows, seed=11)
    recipe = tmp / "bench.yaml"
    recipe.write_text(
        f"name: raybench\nversion: 0.0.1\nsources:\n  - kind: traces\n    path: {traces}\n"
        "    fields: {problem: problem, gold_answer: answer}\n    trace_field: generations\n    teacher: t\n"
    )
    lr = load_recipe(recipe)
    df, _, _ = load_sources(lr.recipe.sources, lr.base_dir, None)
    return df


def timed(engine, stage, df: pl.DataFrame, tmp: Path, label: str) -> tuple[pl.DataFrame, float]:
    ctx = Context.for_test(tmp / label, stage_label=label)
    t0 = time.perf_counter()
    out = engine.run_stage(stage, df, ctx)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=1024)
    args = ap.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="curate-raybench-"))
    df = load_frame(tmp, args.rows)
    print(f"rows: {df.height}  cpus: {os.cpu_count()}  batch_size: {args.batch_size}")
    stages = {
        "verify": get_stage("verify")(get_stage("verify").Config()),
        "dedup": get_stage("dedup")(get_stage("dedup").Config(field="reasoning")),
    }
    # local first, before Ray starts in this process (the local verify pool forks; see ray_engine.py)
    local, inputs, results, seconds = LocalEngine(), {}, {}, {}
    for name, stage in stages.items():
        inputs[name] = df
        timed(local, stage, df.head(1000), tmp, f"{name}-warm-local")
        results[name, "local"], seconds[name, "local"] = timed(local, stage, df, tmp, f"{name}-local")
        df = results[name, "local"] if name == "verify" else df  # dedup sees the verified frame
    t0 = time.perf_counter()
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.init(address=args.address, **kw) if args.address else ray.init(num_cpus=args.num_cpus, **kw)
    print(f"ray.init: {time.perf_counter() - t0:.1f}s  cluster CPUs: {ray.cluster_resources().get('CPU')}")
    dist = RayEngine(batch_size=args.batch_size)
    for name, stage in stages.items():
        timed(dist, stage, inputs[name].head(1000), tmp, f"{name}-warm-ray")
        results[name, "ray"], seconds[name, "ray"] = timed(dist, stage, inputs[name], tmp, f"{name}-ray")
    ray.shutdown()

    ratios: dict[str, float] = {}
    identical = True
    print(f"{'stage':8} {'local rows/s':>13} {'ray rows/s':>11} {'ray/local':>10} {'same':>5}")
    for name in stages:
        n = inputs[name].height
        same = results[name, "local"].equals(results[name, "ray"])
        identical &= same
        ratios[name] = seconds[name, "local"] / seconds[name, "ray"]
        print(f"{name:8} {n / seconds[name, 'local']:13.0f} {n / seconds[name, 'ray']:11.0f} {ratios[name]:10.2f} {int(same):>5}")
    print(
        f"RESULT verify_ray_vs_local={ratios['verify']:.2f} dedup_ray_vs_local={ratios['dedup']:.2f} "
        f"identical={int(identical)}"
    )


if __name__ == "__main__":
    main()
