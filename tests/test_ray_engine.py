"""The Ray engine on a real local Ray cluster (``ray.init(num_cpus=2)``, one per module): the same
frames as the local engine, for the quickstart data, a 10,000-row synthetic run, and the distributed
MinHash search against the local one."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import ray
from ray import cloudpickle
from polars.testing import assert_frame_equal

from curate.dedup import MinHashParams, find_duplicates
from curate.engines import get_engine
from curate.engines.ray_dedup import ray_find_duplicates
from curate.engines.ray_engine import RayEngine
from support.ray_synth import write_traces
from curate.errors import CurateError
from curate.recipe import load_recipe
from curate.runner import execute
from curate.stages.base import Context, Stage, StageConfig

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
QUICKSTART_TRACES = ROOT / "recipes" / "data" / "quickstart_traces.jsonl"

# the stage classes defined below travel to the Ray workers by value (this module is not importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PIPELINE = """name: {name}
version: 0.1.0
seed: 7
engine: {engine}
sources:
  - kind: traces
    path: {traces}
    fields: {{problem: problem, gold_answer: {answer}}}
    trace_field: generations
    teacher: t
stages:
  - type: verify
    timeout_s: 60   # a loaded CI machine must not turn a slow item into a 'timeout' on one engine only
  - type: dedup
  - type: dedup
    field: reasoning
    threshold: 0.75
    keep: longest
  - type: difficulty
    methods:
      - {{method: pass_rate, source: teacher, weight: 1.0}}
      - {{method: length, weight: 0.5}}
    buckets: {{n: 3}}
    keep_incorrect: true
  - type: curriculum
    order: easy_to_hard
  - type: audit
"""


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp:
        # the local-engine runs below share this process with Ray: no fork-started verify pools
        mp.setenv("CURATE_VERIFY_START_METHOD", "forkserver")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        yield
        ray.shutdown()


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.chdir(tmp_path)


def run_both(tmp_path: Path, monkeypatch, text: str, overrides: list[str] | None = None):
    """Run one recipe with each engine, each in its own CURATE_HOME (no shared stage cache)."""
    out = {}
    for engine in ("local", "ray"):
        monkeypatch.setenv("CURATE_HOME", str(tmp_path / f"home-{engine}"))
        p = tmp_path / f"recipe-{engine}.yaml"
        p.write_text(text)
        out[engine] = execute(load_recipe(p, [*(overrides or []), f"engine={engine}"]), resume=False)
    return out["local"], out["ray"]


def assert_same(local, dist) -> None:
    assert_frame_equal(local.train, dist.train)
    assert_frame_equal(local.rejected, dist.rejected)
    assert [(r.stage, r.rows_in, r.rows_out, r.dropped) for r in local.records] == [
        (r.stage, r.rows_in, r.rows_out, r.dropped) for r in dist.records
    ]


def engines_used(res) -> dict[str, str | None]:
    return {r.stage: r.stats.get("engine") for r in res.records[1:]}


def test_quickstart_pipeline_identical(cluster, tmp_path, monkeypatch):
    text = PIPELINE.format(name="rq", engine="local", traces=QUICKSTART_TRACES, answer="answer")
    local, dist = run_both(tmp_path, monkeypatch, text)
    assert_same(local, dist)
    # the ray run really distributed verify, both dedups, audit, difficulty and the easy_to_hard curriculum
    # (planned: their per-shard summaries and applications are Ray tasks)
    assert engines_used(dist) == {
        "verify": "ray", "dedup": "ray", "dedup_2": "ray", "difficulty": "ray", "curriculum": "ray", "audit": "ray"
    }
    assert set(engines_used(local).values()) == {None}
    verdicts = dist.records[1].stats["verdicts"]
    assert verdicts["correct"] > 0 and verdicts["incorrect"] > 0
    assert dist.records[2].dropped.get("near_duplicate", 0) > 0  # the planted paraphrases
    assert dist.train["curriculum_rank"].to_list() == list(range(dist.train.height))


def test_quickstart_recipe_as_shipped_identical(cluster, tmp_path, monkeypatch):
    """recipes/quickstart.yaml itself, with whatever stages it has, on both engines."""
    text = QUICKSTART.read_text().replace("path: data/", f"path: {QUICKSTART.parent}/data/")
    local, dist = run_both(tmp_path, monkeypatch, text)
    assert local.train.height > 0
    assert_same(local, dist)
    used = {r.type: r.stats.get("engine") for r in dist.records[1:]}
    for kind in ("verify", "dedup", "decontaminate", "audit"):
        assert used.get(kind, "ray") == "ray"  # the stages the engine distributes, where present
    if "decontaminate" in used:  # the planted GSM8K test leak is found on the cluster too
        rec = next(r for r in dist.records if r.type == "decontaminate")
        assert sum(rec.dropped.values()) >= 1


def test_synthetic_10k_identical(cluster, tmp_path, monkeypatch):
    traces = write_traces(tmp_path / "syn.jsonl", rows=10_000, seed=3)
    text = PIPELINE.format(name="syn", engine="local", traces=traces, answer="answer")
    local, dist = run_both(tmp_path, monkeypatch, text)
    assert local.records[0].rows_out == 10_000
    assert_same(local, dist)
    rec = {r.stage: r for r in dist.records}
    assert {rec[k].stats.get("engine") for k in ("verify", "dedup", "dedup_2", "audit")} == {"ray"}
    assert rec["audit"].stats["rows_flagged"] > 0
    v = rec["verify"].stats["verdicts"]
    assert min(v["correct"], v["incorrect"], v["truncated"]) > 500
    assert rec["dedup"].dropped.get("near_duplicate", 0) > 100 and rec["dedup"].dropped.get("exact_duplicate", 0) > 50
    assert rec["dedup_2"].dropped.get("near_duplicate", 0) > 100


def _texts(n: int, seed: int) -> list[str | None]:
    rng = np.random.default_rng(seed)
    words = [f"w{k}" for k in range(300)]
    out: list[str | None] = []
    for i in range(n):
        if out and rng.random() < 0.3:
            base = out[int(rng.integers(len(out)))] or ""
            toks = base.split()
            for _ in range(int(rng.integers(0, 6))):
                if toks:
                    toks[int(rng.integers(len(toks)))] = str(rng.choice(words))
            out.append(" ".join(toks))
        elif rng.random() < 0.02:
            out.append(None if i % 2 else "")
        else:
            out.append(" ".join(rng.choice(words, size=int(rng.integers(8, 60)))))
    return out


@pytest.mark.parametrize(
    "params,verify,threshold",
    [
        (MinHashParams(num_perm=128, ngram=3), "exact", 0.7),
        (MinHashParams(num_perm=64, ngram=4, shingle="char", seed=5), "minhash", 0.6),
        (MinHashParams(num_perm=96, ngram=2, scheme="legacy"), "exact", 0.8),
    ],
)
def test_distributed_minhash_matches_local(cluster, params, verify, threshold):
    texts = _texts(3000, seed=int(threshold * 100))
    local = find_duplicates(texts, params, threshold, verify=verify, num_proc=1)
    dist = ray_find_duplicates(texts, params, threshold, verify=verify, engine=RayEngine(batch_size=700))
    assert local.n_candidates > 100 and len(local.pairs_i) > 100  # a real workload, not a vacuous one
    assert dist.lsh_params == local.lsh_params
    assert dist.n_candidates == local.n_candidates
    np.testing.assert_array_equal(dist.keys, local.keys)
    np.testing.assert_array_equal(dist.labels, local.labels)
    lp = sorted(zip(local.pairs_i.tolist(), local.pairs_j.tolist(), local.similarity.tolist()))
    dp = sorted(zip(dist.pairs_i.tolist(), dist.pairs_j.tolist(), dist.similarity.tolist()))
    assert dp == lp


def test_distributed_minhash_edge_sizes(cluster):
    eng = RayEngine(batch_size=2)
    for texts in ([], ["only one"], ["same text", "Same  text", None]):
        local = find_duplicates(texts, MinHashParams(ngram=1), 0.5)
        dist = ray_find_duplicates(texts, MinHashParams(ngram=1), 0.5, engine=eng)
        np.testing.assert_array_equal(dist.labels, local.labels)
        assert dist.n_candidates == local.n_candidates


def test_distributed_decontamination_matches_local(cluster, tmp_path):
    from curate.dedup import BenchmarkIndex, ContamParams
    from curate.stages.decontaminate import ContamKernel, matches_of

    bench = [t for t in _texts(400, seed=1) if t and len(t.split()) > 12][:150]
    rng = np.random.default_rng(2)
    texts = _texts(1500, seed=9)
    for k in range(0, 1500, 7):  # leaks: a benchmark item's words reordered (MinHash), or one shared 8-gram
        src = bench[int(rng.integers(len(bench)))].split()
        if k % 2:
            texts[k] = " ".join(rng.permutation(src))
        else:
            texts[k] = f"intro words here {' '.join(src[:9])} and more words after"
    params = ContamParams(ngram=8, min_overlap=1, minhash=True, minhash_ngram=1, minhash_threshold=0.6, num_perm=128)
    index = BenchmarkIndex.build(bench, params)
    local = index.check(texts)
    # the stage's kernel, run by the Ray engine through the executor seam (index pickled to the workers)
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.Utf8})
    ctx = Context.for_test(tmp_path, executor=RayEngine(batch_size=256))
    found = ctx.map(ContamKernel((index, index)), frame)
    assert ctx.stats["engine"] == "ray"
    methods = {m.method for m in local.values()}
    assert len(local) > 150 and methods == {"ngram", "minhash"}
    assert_frame_equal(found, ContamKernel((index, index))(frame))
    assert matches_of(found, 1) == matches_of(found, 0) == local
    # the whole stage: the same rows, drop reasons and contamination table on both engines
    from curate.stages.decontaminate import DecontaminateConfig, DecontaminateStage

    pl.DataFrame({"problem": bench}).write_ndjson(tmp_path / "bench.jsonl")
    df = pl.DataFrame({"problem": texts, "i": range(len(texts))}, schema={"problem": pl.Utf8, "i": pl.Int64})
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=["bench.jsonl"], min_overlap=1, minhash_threshold=0.6))
    eng, ctx_ray, ctx_local = RayEngine(batch_size=256), Context.for_test(tmp_path), Context.for_test(tmp_path)
    dist = eng.run_stage(stage, df, ctx_ray)
    assert eng.ran == [("decontaminate", "kernels")] and ctx_ray.executor is None
    assert_frame_equal(dist, stage.run(df, ctx_local))
    assert ctx_ray.stats["contamination"] == ctx_local.stats["contamination"]
    assert ctx_ray.stats["rows_contaminated"] > 150


class _TagConfig(StageConfig):
    type: str = "tag_len"


class TagLenStage(Stage):
    """A row-wise stage written to the engine's protocol: map_batch per batch, finalize on the driver."""

    name = "tag_len"
    Config = _TagConfig

    def map_batch(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return df.with_columns(
            pl.col("text").str.len_chars().alias("n_chars"),
            pl.lit(ray.get_runtime_context().get_worker_id() if ray.is_initialized() else "").alias("worker"),
        )

    def finalize(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return df.with_columns(pl.col("n_chars").rank("ordinal").alias("rank")).drop("worker")

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return self.finalize(self.map_batch(df, ctx), ctx)


class BadStage(TagLenStage):
    def map_batch(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return df.head(1)


def test_map_batch_protocol(cluster, tmp_path):
    df = pl.DataFrame({"text": [f"{'x' * (i % 97)}-{i}" for i in range(5000)], "i": range(5000)})
    ctx = Context.for_test(tmp_path)
    eng = RayEngine(batch_size=1000)
    stage = TagLenStage(_TagConfig())
    out = eng.run_stage(stage, df, ctx)
    assert eng.ran == [("tag_len", "map_batches")]
    assert_frame_equal(out, stage.run(df, Context.for_test(tmp_path)).drop("worker", strict=False))
    # a batch function that loses rows is a one-line error, not a worker traceback
    with pytest.raises(CurateError, match=r"must return one row per input row") as ei:
        eng.run_stage(BadStage(_TagConfig()), df, ctx)
    assert "\n" not in str(ei.value)


def test_recipe_ray_options_reach_the_engine(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(
        PIPELINE.format(name="opts", engine="ray", traces=QUICKSTART_TRACES, answer="answer")
        + "ray: {num_cpus: 2, batch_size: 64, sample_replicas: 3}\n"
    )
    lr = load_recipe(p)
    eng = get_engine(lr.recipe.engine, lr.recipe.ray.model_dump())
    assert isinstance(eng, RayEngine) and (eng.num_cpus, eng.batch_size, eng.sample_replicas) == (2, 64, 3)
    eng.close()  # never started: nothing to shut down
    with pytest.raises(CurateError, match="sample_replicas"):
        load_recipe(p, ["ray.sample_replicas=0"])


# --------------------------------------------------------------------------- sampling
def _problems(k: int) -> pl.DataFrame:  # the columns `sample` requires, carried into its rows
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"What is {i} + {i}?" for i in range(k)]})


def test_sample_on_replicas_shares_the_limits_and_matches_local(cluster, tmp_path):
    from curate.engines.ray_sample import replica_config
    from curate.registry import get_stage
    from curate.testing.openai_server import Fault, OpenAIServer

    stage_cls = get_stage("sample")

    def script(messages, params, index):
        q = messages[-1]["content"]
        if "7 + 7" in q:
            return Fault.error(400, "refused")  # a failed request: an error row, on both engines
        return f"<think>\nadding {q}\n</think>\n\nThe answer is \\boxed{{{index}}}."

    with OpenAIServer(script=script, latency=0.05) as srv:
        conf = stage_cls.Config.model_validate(
            {"type": "sample", "n": 2, "max_failures": 4,
             "teacher": {"backend": "openai", "model": "m", "base_url": srv.base_url, "concurrency": 4,
                         "rpm": 1200, "backoff_initial": 0.01, "timeout": 5}}
        )
        local = stage_cls(conf).run(_problems(24), Context.for_test(tmp_path / "l"))
        n_local, peak_local = srv.count(), srv.max_in_flight
        eng = RayEngine(sample_replicas=2)
        ctx = Context.for_test(tmp_path / "r", stage_label="sample")
        t0 = time.perf_counter()
        dist = eng.run_stage(stage_cls(conf), _problems(24), ctx)
        seconds = time.perf_counter() - t0
        assert eng.ran == [("sample", "distributed")] and ctx.stats["sample_replicas"] == 2
        assert srv.count() - n_local == n_local == 24  # one native-n request per problem, none resent
        assert srv.max_in_flight <= 4 and peak_local <= 4  # 2 replicas x ceil(4 / 2) in flight at most
        assert seconds >= 23 * 60 / 1200 * 0.9  # 2 x 600 rpm together: 24 requests >= ~1.15 s
        # resumable like the local run: the durable log answers a second run; only the failed request
        # (p7, not logged) is sent again
        again = eng.run_stage(stage_cls(conf), _problems(24), Context.for_test(tmp_path / "r", stage_label="sample"))
        assert srv.count() == 49
    assert_frame_equal(dist, local)
    assert_frame_equal(again, local)
    assert dist.filter(pl.col("drop_reason") == "teacher_error")["problem_id"].unique().to_list() == ["p7"]
    per = replica_config(stage_cls.Config.model_validate(
        {"type": "sample", "teacher": {"backend": "openai", "model": "m", "rpm": 90, "tpm": 1000, "concurrency": 5}}
    ), 3).teacher
    assert (per.rpm, per.tpm, per.concurrency) == (30, 1000 / 3, 2)


def test_unreachable_address_is_one_line_exit_2(tmp_path):
    """`curate run --engine ray --address HOST:PORT` with nothing listening: exit 2, one line, in seconds
    (ray.init itself would retry for minutes)."""
    import socket
    import subprocess

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(PIPELINE.format(name="bad", engine="local", traces=QUICKSTART_TRACES, answer="answer"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", str(recipe), "--engine", "ray", "--address", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in lines[0]
    assert time.perf_counter() - t0 < 60


def test_engine_ray_without_ray_installed_fails_even_when_all_is_cached(tmp_path, monkeypatch):
    """Issue 17: a run served entirely from the stage cache never touched Ray, so a missing
    `ray` package went unnoticed (the recipe then fails on the first changed stage, later)."""
    from curate.errors import MissingExtraError

    recipe = tmp_path / "r.yaml"
    recipe.write_text(PIPELINE.format(name="cached", engine="local", traces=QUICKSTART_TRACES, answer="answer"))
    execute(load_recipe(recipe))  # fills the cache
    for mod in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'curate\[ray\]'"):
        execute(load_recipe(recipe, ["engine=ray"]))
