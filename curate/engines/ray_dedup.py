"""Distributed MinHash dedup on Ray: the same clusters as :func:`curate.dedup.find_duplicates`.

1. signatures + exact keys: :func:`curate.dedup.signatures` in Ray Data ``map_batches``;
2. exact groups on the driver (one representative per canonical-text hash, as locally);
3. LSH band buckets: every representative emits one row per band (band index, band values, row);
   a Ray Data ``groupby`` on a hash partition of (band, band values) brings each bucket into one
   group, where the rows sharing the exact band values become candidate pairs (datasketch's
   ``MinHashLSH`` with the same bands x rows: a pair is a candidate iff some band is identical);
4. candidates confirmed in ``map_batches`` (exact shingle-set Jaccard) or on the driver (signature
   estimate), then connected components (scipy) on the driver.

Same bands/rows (datasketch's choice for the threshold and weights), same candidates, same
similarities, hence the same components; the ``dedup`` stage's own code then applies the keep policy.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from ..dedup.cluster import DedupResult, cluster_labels
from ..dedup.minhash import (
    MAX_BUCKET,
    MinHashParams,
    bucket_pairs,
    estimated_jaccard,
    make_lsh,
    shingle_sets,
    signatures,
)
from ..dedup.text import jaccard

if TYPE_CHECKING:
    from .ray_engine import RayEngine
from .ray_common import ROW

_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)


def _sign_batch(batch: pa.Table, params: MinHashParams) -> pa.Table:
    texts = batch.column("text").to_pylist()
    sigs, keys = signatures(texts, params, num_proc=1)
    flat = pa.array(sigs.reshape(-1))
    return pa.table(
        {
            ROW: batch.column(ROW),
            "key": pa.array(keys, type=pa.uint64()),
            "sig": pa.FixedSizeListArray.from_arrays(flat, params.num_perm),
        }
    )


def _sig_matrix(col: pa.ChunkedArray | pa.Array, num_perm: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, num_perm)


def _band_rows(batch: pa.Table, bands: int, rows: int, num_perm: int, parts: int) -> pa.Table:
    """One row per (representative, band): band index, the band's values as bytes, hash partition."""
    sigs = np.ascontiguousarray(_sig_matrix(batch.column("sig"), num_perm))
    row = batch.column("row").to_numpy()
    m, width = len(row), rows * sigs.dtype.itemsize
    grp = batch.column("grp").to_numpy()
    out_band, out_key, out_part, out_row = [], [], [], []
    for b in range(bands):
        block = np.ascontiguousarray(sigs[:, b * rows : (b + 1) * rows])
        h = np.full(m, np.uint64(b + 1), dtype=np.uint64)
        for c in range(rows):
            h = (h ^ block[:, c].astype(np.uint64)) * _MIX[c % len(_MIX)]
        out_band.append(np.full(m, b, dtype=np.int32))
        out_key.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), m, [None, pa.py_buffer(block.tobytes())]))
        out_part.append((h >> np.uint64(40)) % np.uint64(parts))
        out_row.append(row)
    return pa.table(
        {
            "band": pa.array(np.concatenate(out_band)),
            "bkey": pa.concat_arrays(out_key),
            "part": pa.array(np.concatenate(out_part).astype(np.int64)),
            "row": pa.array(np.concatenate(out_row).astype(np.int64)),
            "grp": pa.array(np.tile(grp, bands)),
        }
    )


def _bucket_pairs(group: pa.Table, max_bucket: int | None = None) -> pa.Table:
    """The pairs (i < j) of rows that share a bucket (band index + exact band values), by the local
    finder's fan-out policy (:func:`curate.dedup.minhash.bucket_pairs`)."""
    df = pl.from_arrow(group.select(["band", "bkey", "row", "grp"]))
    assert isinstance(df, pl.DataFrame)
    buckets = df.sort("row").group_by("band", "bkey").agg("row", "grp").filter(pl.col("row").list.len() > 1)
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    for members, grp in zip(buckets.get_column("row").to_list(), buckets.get_column("grp").to_list()):
        a, b = bucket_pairs(np.asarray(members, dtype=np.int64), np.asarray(grp), max_bucket)
        ii.append(a)
        jj.append(b)
    i = np.concatenate(ii) if ii else np.empty(0, dtype=np.int64)
    j = np.concatenate(jj) if jj else np.empty(0, dtype=np.int64)
    return pa.table({"i": pa.array(i, type=pa.int64()), "j": pa.array(j, type=pa.int64())})


def _jaccard_batch(batch: pa.Table, params: MinHashParams) -> pa.Table:
    a = batch.column("text_i").to_pylist()
    b = batch.column("text_j").to_pylist()
    sets = shingle_sets(a + b, params)
    n = len(a)
    sim = [jaccard(sets[k], sets[n + k]) for k in range(n)]
    return pa.table({ROW: batch.column(ROW), "sim": pa.array(sim, type=pa.float64())})


def ray_find_duplicates(
    texts: Sequence[str | None],
    params: MinHashParams = MinHashParams(),
    threshold: float = 0.8,
    *,
    near: bool = True,
    verify: str = "exact",
    lsh_threshold: float | None = None,
    lsh_weights: tuple[float, float] = (0.1, 0.9),
    num_proc: int = 1,  # noqa: ARG001 - the cluster's CPUs replace local worker processes
    progress: Any = None,
    groups: Any = None, max_bucket: int | None = MAX_BUCKET,  # bucket fan-out: as find_duplicates
    engine: RayEngine,
) -> DedupResult:
    """Same contract and result as :func:`curate.dedup.find_duplicates`, computed on the Ray cluster."""
    ray = engine.ray()
    n = len(texts)
    text_col = pa.array(list(texts), type=pa.large_string())
    signed = engine.map_arrow(pa.table({"text": text_col}), _sign_batch, params)
    keys = signed.column("key").to_numpy()
    if progress is not None:
        progress(n)
    sigs = _sig_matrix(signed.column("sig"), params.num_perm) if n else np.empty((0, params.num_perm), dtype=np.uint32)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)] if n else np.empty(0, dtype=np.int64)
    reps = np.sort(first)
    pi = pj = np.empty(0, dtype=np.int64)
    sim = np.empty(0)
    n_cand, lsh_params = 0, None
    if near and len(reps) > 1:
        lt = max(0.05, threshold - 0.1) if lsh_threshold is None else lsh_threshold
        lsh = make_lsh(lt, params.num_perm, lsh_weights)  # datasketch picks bands x rows
        lsh_params = (lsh.b, lsh.r)
        parts = max(2, 2 * int(ray.cluster_resources().get("CPU", 2)))
        grp = np.zeros(len(reps), np.uint64) if groups is None else np.asarray(groups, np.uint64)[reps]
        rep_tab = pa.table({"row": pa.array(reps, type=pa.int64()), "sig": signed.column("sig").take(pa.array(reps)), "grp": grp})
        blocks = [rep_tab.slice(o, engine.batch_size) for o in range(0, rep_tab.num_rows, engine.batch_size)]
        band_ds = ray.data.from_arrow(blocks).map_batches(
            partial(_band_rows, bands=lsh.b, rows=lsh.r, num_perm=params.num_perm, parts=parts),
            batch_format="pyarrow",
            batch_size=None,
        )
        pairs_ds = band_ds.groupby("part", num_partitions=parts).map_groups(partial(_bucket_pairs, max_bucket=max_bucket), batch_format="pyarrow")
        tabs = [t for t in ray.get(pairs_ds.to_arrow_refs()) if t.num_rows]
        if tabs:
            pairs = pa.concat_tables(tabs)
            code = np.unique(pairs.column("i").to_numpy() * n + pairs.column("j").to_numpy())
            ci, cj = code // n, code % n
        else:
            ci = cj = np.empty(0, dtype=np.int64)
        n_cand = len(ci)
        if n_cand:
            if verify == "exact":
                cand = pa.table({"text_i": text_col.take(pa.array(ci)), "text_j": text_col.take(pa.array(cj))})
                sim = engine.map_arrow(cand, _jaccard_batch, params).column("sim").to_numpy()
            else:
                sim = estimated_jaccard(sigs, ci, cj)
            ok = sim >= threshold
            pi, pj, sim = ci[ok], cj[ok], sim[ok]
    return DedupResult(cluster_labels(rep, pi, pj), keys, pi, pj, sim, n_candidates=n_cand, lsh_params=lsh_params)
