"""dedup at scale (issue 18): LSH candidates grow near-linearly on templated problems, the clusters
are those of all-pairs LSH, and the stage's shard contract (reads + ``__rid``, Categorical inputs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.columns import ROW_ID
from curate.dedup import MinHashParams, find_duplicates
from curate.stages.base import Context
from curate.stages.dedup import DedupConfig, DedupStage

_spec = importlib.util.spec_from_file_location("dedup_scale", Path(__file__).resolve().parents[1] / "benchmarks" / "dedup_scale.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


def _problems_frame(n: int, templates: int) -> pl.DataFrame:
    texts, golds = bench.templated_problems(n, templates)
    return pl.DataFrame({"problem_id": [f"p{k}" for k in range(n)], "problem": texts, "gold_answer": golds})


def test_templated_candidates_grow_near_linearly(tmp_path):
    # 50 fixed templates: at 8x the problems every template has 8x the members; all-pairs LSH
    # buckets then give ~64x the candidate pairs
    cands = []
    for n in (400, 3200):
        ctx = Context.for_test(tmp_path)
        DedupStage(DedupConfig(num_proc=1)).run(_problems_frame(n, 50), ctx)
        cands.append(ctx.stats["lsh_candidates"])
    assert cands[0] > 0
    assert cands[1] <= 12 * cands[0], cands


@pytest.mark.parametrize("groups", [False, True])
def test_capped_buckets_give_the_clusters_of_all_pairs(groups):
    # real duplicates among templated near-misses: capping bucket fan-out changes no cluster
    from curate.stages.dedup import numbers_of

    texts, _ = bench.templated_problems(1500, 20)
    params = MinHashParams(ngram=2)
    g = np.array([hash(numbers_of(t)) for t in texts], dtype=np.int64) if groups else None
    full = find_duplicates(texts, params, 0.6, max_bucket=None)
    capped = find_duplicates(texts, params, 0.6, max_bucket=2, groups=g)
    assert capped.n_candidates < full.n_candidates / 3
    if groups:  # the stage never merges pairs of other numbers: compare what it keeps of both
        ref = _components(full.keys, *_same(g, full.pairs_i, full.pairs_j))
        got = _components(capped.keys, *_same(g, capped.pairs_i, capped.pairs_j))
        assert np.array_equal(ref, got)
    else:  # text alone: templated problems chain into large clusters; the star + chain through a
        # capped bucket reaches (nearly) the same components
        ref, got = _canon(full.labels), _canon(capped.labels)
        assert abs(int(ref.max()) - int(got.max())) <= len(texts) // 100


def _same(g, pi, pj):
    ok = g[pi] == g[pj]
    return pi[ok], pj[ok]


def _components(keys, pi, pj):
    from curate.dedup.cluster import cluster_labels

    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return _canon(cluster_labels(first[inv.reshape(-1)], pi, pj))


def _canon(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered by first appearance (comparable across runs)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inv.reshape(-1)]


def test_stage_same_rows_as_all_pairs(tmp_path):
    df = bench.templated_frame(600, per_problem=4, n_templates=20)
    a = DedupStage(DedupConfig(keep="most_correct")).run(df, Context.for_test(tmp_path))
    ctx = Context.for_test(tmp_path)
    stage = DedupStage(DedupConfig(keep="most_correct"))
    stage.max_bucket = None  # all pairs of every LSH bucket (the reference)
    b = stage.run(df, ctx)
    assert a.equals(b)
    assert a["drop_reason"].is_not_null().sum() > 0


@pytest.mark.parametrize("cap", [None, 2, 8])
def test_band_pairs_equal_the_per_bucket_policy(cap):
    # the vectorised band_pairs and bucket_pairs (what the Ray engine applies per gathered bucket)
    # take the same pairs from the same buckets: exact band bytes grouped in plain Python here
    from curate.dedup.minhash import band_pairs, bucket_pairs, signatures
    from curate.stages.dedup import numbers_of

    texts, _ = bench.templated_problems(700, 10)
    sigs, _ = signatures(texts, MinHashParams(ngram=2))
    g = np.array([hash(numbers_of(t)) % 1000 for t in texts], dtype=np.int64)
    bands, rows = 32, 4
    codes = band_pairs(sigs, bands, rows, max_bucket=cap, groups=g)
    ref = set()
    for b in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for k in range(len(texts)):
            buckets.setdefault(sigs[k, b * rows : (b + 1) * rows].tobytes(), []).append(k)
        for members in buckets.values():
            i, j = bucket_pairs(np.array(members), g[members], cap)
            ref.update(zip(i.tolist(), j.tolist()))
    assert sorted(ref) == [(int(c) // len(texts), int(c) % len(texts)) for c in codes]
    if cap:
        assert len(codes) < len(band_pairs(sigs, bands, rows, max_bucket=None))


def _real_frame() -> pl.DataFrame:
    """A real-shaped sample frame: templated problems with exact and near copies, 4 samples each."""
    t = bench.templated_frame(300, per_problem=4, n_templates=30, reasoning_chars=300)
    # some rows already dropped by an earlier stage, and a text column that is sometimes missing
    t = t.with_columns(
        drop_reason=pl.when(pl.col("sample_id").str.ends_with("-3") & (pl.col("correct"))).then(pl.lit("truncated")),
        answer_text=pl.when(pl.col("correct")).then(pl.lit("The answer is 7.")),
    )
    return t


CONTRACT_CONFIGS = [
    {},
    {"keep": "most_correct"},
    {"keep": "shortest"},
    {"keep": "shortest", "drop_tokens": True},
    {"keep": "longest", "merge_different_answers": True},
    {"field": "reasoning"},
    {"field": "reasoning", "keep": "longest", "drop_tokens": True},
    {"field": "both", "keep": "most_correct"},
    {"method": "exact", "merge_different_numbers": True},
]


@pytest.mark.parametrize("categorical", [False, True], ids=["utf8", "categorical"])
@pytest.mark.parametrize("cfg", CONTRACT_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_reads_then_join_back_equals_run_on_full_rows(tmp_path, cfg, categorical):
    # the shard contract: run(df.select(reads + __rid)) joined back onto the full rows by __rid == run(df)
    df = _real_frame()
    cfg = dict(cfg)
    if cfg.pop("drop_tokens", False):
        df = df.drop("completion_tokens")
    if categorical:  # constant per problem: may arrive as Categorical in the narrow frame
        df = df.with_columns(pl.col("problem", "gold_answer", "problem_id").cast(pl.Categorical))
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_ID))
    stage = DedupStage(DedupConfig(**cfg))
    reads = stage.reads(df.columns)
    assert reads is not None and ROW_ID not in reads
    if stage.config.keep not in ("shortest", "longest") and stage.config.field == "problem":
        assert "reasoning" not in reads and "answer_text" not in reads  # traces are never loaded for this
    if stage.config.keep != "most_correct":
        assert "correct" not in reads
    ref_ctx, ctx = Context.for_test(tmp_path), Context.for_test(tmp_path)
    ref = stage.run(df, ref_ctx)
    narrow = stage.run(df.select(*reads, ROW_ID), ctx)
    assert ROW_ID in narrow.columns and narrow.height == df.height
    back = df.drop([c for c in narrow.columns if c != ROW_ID and c in df.columns])
    back = back.join(narrow, on=ROW_ID, how="left").select(ref.columns).sort(ROW_ID)
    assert back.equals(ref.sort(ROW_ID))
    assert ref[ROW_ID].to_list() == list(range(df.height))
    assert {k: v for k, v in ctx.stats.items()} == ref_ctx.stats
    assert ref["drop_reason"].is_in(["exact_duplicate", "near_duplicate"]).sum() > 0


def test_categorical_inputs_give_the_utf8_result(tmp_path):
    df = _real_frame()
    cat = df.with_columns(pl.col("problem", "gold_answer", "problem_id").cast(pl.Categorical))
    for cfg in ({"keep": "most_correct"}, {"field": "both"}):
        a = DedupStage(DedupConfig(**cfg)).run(df, Context.for_test(tmp_path))
        b = DedupStage(DedupConfig(**cfg)).run(cat, Context.for_test(tmp_path))
        assert b.with_columns(pl.col("problem", "gold_answer", "problem_id").cast(pl.Utf8)).equals(a)
        assert b.schema["problem"] == pl.Categorical  # columns the stage does not change keep their dtype


def test_exact_jaccard_chunk_by_chunk_equals_one_pass(monkeypatch):
    """The candidates' exact Jaccard is computed a chunk of pairs at a time (only those texts' shingle
    sets held): the same similarities, pairs and clusters as holding every set at once."""
    from curate.dedup import cluster

    texts, _ = bench.templated_problems(600, 20)
    params = MinHashParams()
    whole = find_duplicates(texts, params, threshold=0.6, num_proc=1)
    assert whole.n_candidates > 50
    monkeypatch.setattr(cluster, "PAIR_CHUNK", 7)
    chunked = find_duplicates(texts, params, threshold=0.6, num_proc=1)
    assert np.array_equal(chunked.similarity, whole.similarity)
    assert np.array_equal(chunked.pairs_i, whole.pairs_i) and np.array_equal(chunked.pairs_j, whole.pairs_j)
    assert np.array_equal(chunked.labels, whole.labels)


def test_signatures_over_a_window_of_worker_chunks_equal_one_process():
    """Worker chunks are sent a few at a time (bounded memory), yielded in order: the same signatures."""
    from curate.dedup.minhash import signatures

    texts, _ = bench.templated_problems(3000, 40)
    params = MinHashParams()
    one, keys1 = signatures(texts, params, num_proc=1)
    two, keys2 = signatures(texts, params, num_proc=2, chunk=50, min_parallel=100)  # 60 chunks, window of 8
    assert np.array_equal(one, two) and np.array_equal(keys1, keys2)
