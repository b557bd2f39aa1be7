"""Vectorised MinHash signatures (numpy arrays, one row per document) and datasketch LSH.

Signatures follow datasketch's permutation schemes exactly, so they can be handed to
``datasketch.MinHashLSH`` as ``LeanMinHash`` objects and compared with datasketch's own MinHash:

* ``affine32`` (datasketch >= 2.0 default): h -> fmix32(h); a*h + b mod 2^32 (uint32 wraparound)
* ``legacy``: (a*h + b) mod (2^61 - 1), truncated to 32 bits (universal hashing)

where h is the 32-bit fold of our uint64 shingle hash and (a, b) come from
``datasketch.MinHash(num_perm, seed, scheme).permutations``. One document costs a handful of numpy
calls over an (n_shingles x num_perm) block instead of one Python hash call per shingle.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Literal, Sequence

import numpy as np
from .text import ShingleKind, batch_shingles

Scheme = Literal["affine32", "legacy"]

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_F32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    seed: int = 1
    scheme: Scheme = "affine32"
    ngram: int = 5
    shingle: ShingleKind = "word"


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) permutation parameters datasketch itself draws for this num_perm/seed/scheme."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def fold32(h: np.ndarray) -> np.ndarray:
    """uint64 shingle hashes -> 32-bit hash values (xor of the halves), as datasketch hashes to 32 bits."""
    return ((h >> np.uint64(32)) ^ h).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _F32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def _permute_min(h: np.ndarray, a: np.ndarray, b: np.ndarray, params: MinHashParams) -> np.ndarray:
    """Signature of premixed 32-bit values ``h`` (fmix32 applied for affine32)."""
    if params.scheme == "affine32":
        if len(h) == 0:
            return np.full(params.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        block = a[:, None] * h[None, :]  # (num_perm, n): contiguous rows reduce fastest
        block += b[:, None]
        return block.min(axis=1)
    if len(h) == 0:
        return np.full(params.num_perm, _MAX32, dtype=np.uint64)
    block = h.astype(np.uint64)[:, None] * a[None, :] + b
    block %= _MERSENNE
    block &= _MAX32
    return block.min(axis=0)


def _premix(hv32: np.ndarray, params: MinHashParams) -> np.ndarray:
    return _fmix32(hv32.astype(np.uint32, copy=False)) if params.scheme == "affine32" else hv32


def signature(hv32: np.ndarray, params: MinHashParams, perms: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """MinHash signature of one set of 32-bit hash values (repeats allowed)."""
    a, b = perms if perms is not None else permutations(params.num_perm, params.seed, params.scheme)
    return _permute_min(_premix(hv32, params), a, b, params)


def _empty_sigs(n: int, params: MinHashParams) -> np.ndarray:
    dtype = np.uint32 if params.scheme == "affine32" else np.uint64
    return np.empty((n, params.num_perm), dtype=dtype)


def _sign_chunk(
    texts: Sequence[str | None], params: MinHashParams, perms: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Signatures and exact-duplicate keys of a chunk (shingling and mixing in whole-chunk passes)."""
    flat, off, keys = batch_shingles(texts, params.ngram, params.shingle)
    h = _premix(fold32(flat), params)
    a, b = perms
    sigs = _empty_sigs(len(texts), params)
    for i in range(len(texts)):
        sigs[i] = _permute_min(h[off[i] : off[i + 1]], a, b, params)
    return sigs, keys


def _sets_chunk(texts: Sequence[str | None], params: MinHashParams, perms: object = None) -> list[np.ndarray]:
    flat, off, _ = batch_shingles(texts, params.ngram, params.shingle)
    return [np.unique(flat[off[i] : off[i + 1]]) for i in range(len(texts))]


def _pool(num_proc: int) -> ProcessPoolExecutor:
    # forkserver: safe next to polars' thread pool (plain fork can deadlock), cheap to start.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=num_proc, mp_context=multiprocessing.get_context(method))


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _imap(fn, texts: Sequence[str | None], params: MinHashParams, num_proc: int, chunk: int, min_parallel: int):
    """Yield (start, fn(chunk)) over consecutive chunks of ``texts``, in order, computed by
    ``num_proc`` worker processes (in this process when small or num_proc is 1)."""
    n = len(texts)
    # permutations drawn once here (workers then never import datasketch/scipy)
    perms = permutations(params.num_perm, params.seed, params.scheme)
    num_proc = max(1, min(num_proc, os.cpu_count() or 1))
    if num_proc == 1 or n < min_parallel:
        for s, e in _chunks(n, chunk):
            yield s, fn(texts[s:e], params, perms)
        return
    spans = _chunks(n, max(1, min(chunk, -(-n // (num_proc * 4)))))
    done = 0
    try:
        with _pool(num_proc) as ex:
            # a window of chunks in flight, not every chunk at once: the texts sent and the results
            # waiting stay bounded (issue 18: 500k problems queued at once held a copy of every text)
            pending: collections.deque = collections.deque()
            todo = iter(spans)
            for s, e in itertools.islice(todo, num_proc * 4):
                pending.append((s, ex.submit(fn, list(texts[s:e]), params, perms)))
            while pending:
                s, f = pending.popleft()
                res = f.result()
                done += 1
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt[0], ex.submit(fn, list(texts[nxt[0]:nxt[1]]), params, perms)))
                yield s, res
    except BrokenProcessPool:  # e.g. a __main__ that cannot be re-imported: finish here instead
        for s, e in spans[done:]:
            yield s, fn(texts[s:e], params, perms)


def iter_signatures(
    texts: Sequence[str | None],
    params: MinHashParams = MinHashParams(),
    num_proc: int = 1,
    chunk: int = 1000,
    min_parallel: int = 2000,
):
    """Yield (start, signatures [k, num_perm], exact keys [k]) chunk by chunk, in order."""
    for s, (sigs, keys) in _imap(_sign_chunk, texts, params, num_proc, chunk, min_parallel):
        yield s, sigs, keys


def signatures(
    texts: Sequence[str | None],
    params: MinHashParams = MinHashParams(),
    num_proc: int = 1,
    chunk: int = 1000,
    min_parallel: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """(signatures [n, num_perm], exact keys [n]) for ``texts``, over ``num_proc`` worker processes."""
    if len(texts) == 0:
        return _empty_sigs(0, params), np.empty(0, dtype=np.uint64)
    parts = list(iter_signatures(texts, params, num_proc, chunk, min_parallel))
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def shingle_sets(
    texts: Sequence[str | None], params: MinHashParams, num_proc: int = 1, chunk: int = 1000, min_parallel: int = 2000
) -> list[np.ndarray]:
    """Sorted unique shingle hashes per text (for exact Jaccard of LSH candidates)."""
    out: list[np.ndarray] = []
    for _, part in _imap(_sets_chunk, texts, params, num_proc, chunk, min_parallel):
        out.extend(part)
    return out


def estimated_jaccard(sigs: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Fraction of equal signature slots for row pairs (i, j), vectorised."""
    if len(i) == 0:
        return np.empty(0)
    return (sigs[i] == sigs[j]).mean(axis=1)


def lean(sig: np.ndarray, params: MinHashParams):
    from datasketch import LeanMinHash

    return LeanMinHash(seed=params.seed, hashvalues=sig, scheme=params.scheme)


def make_lsh(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)):
    """datasketch's MinHashLSH; it picks bands x rows minimising weighted false positives + negatives."""
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)


class LSHPairs:
    """Incremental candidate pairs: each row is queried against the rows inserted before it, then
    inserted, so every candidate pair (earlier, later) shows up once."""

    def __init__(self, params: MinHashParams, threshold: float, weights: tuple[float, float] = (0.5, 0.5)):
        self.params = params
        self.lsh = make_lsh(threshold, params.num_perm, weights)
        self.i: list[int] = []
        self.j: list[int] = []

    def add(self, key: int, sig: np.ndarray) -> None:
        m = lean(sig, self.params)
        for other in self.lsh.query(m):
            self.i.append(other)
            self.j.append(key)
        self.lsh.insert(key, m, check_duplication=False)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.i, dtype=np.int64), np.asarray(self.j, dtype=np.int64)

    @property
    def bands_rows(self) -> tuple[int, int]:
        return self.lsh.b, self.lsh.r


_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)
MAX_BUCKET = 2
"""Default LSH bucket fan-out cap of :func:`band_pairs` (buckets up to this size give all their pairs)."""


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 -> uint64), vectorised."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One uint64 per row of a (m, r) band block: equal rows give equal keys (different rows collide
    with probability ~2^-64; a collision only adds a candidate, which verification then rejects)."""
    with np.errstate(over="ignore"):
        h = np.zeros(len(band), dtype=np.uint64)
        for c in range(band.shape[1]):
            h = _mix64(h * _BAND_MIX + band[:, c].astype(np.uint64))
    return h


def _bucket_runs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, start, size): rows sorted by key (stable: ascending row within a bucket), and per sorted
    position the position its bucket starts at and the bucket's size."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    new = np.r_[True, ks[1:] != ks[:-1]] if len(ks) else np.empty(0, dtype=bool)
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, len(ks)])
    bucket = np.cumsum(new) - 1
    return order, starts[bucket], sizes[bucket]


def band_pairs(
    sigs: np.ndarray,
    bands: int,
    rows: int,
    *,
    max_bucket: int | None = MAX_BUCKET,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Candidate pairs of the rows of ``sigs`` that share a band (datasketch's MinHashLSH rule: some
    band of ``rows`` values identical), as sorted unique codes ``i * len(sigs) + j`` with i < j.

    A bucket (rows sharing one band) of up to ``max_bucket`` rows gives all its pairs. A larger one
    (templated texts: hundreds of near-identical problems) is first split by ``groups`` (when given:
    rows of different groups are never merged by the caller, e.g. problems with different numbers);
    a part still larger than ``max_bucket`` gives each member's pair with the part's first member and
    with its predecessor (a star and a chain: every member is connected; the verification of those
    pairs decides the clusters). So candidates grow linearly with the rows (at most ~2 per row and
    band beyond the cap) instead of with the square of a template's size. ``max_bucket=None``: all
    pairs of every bucket (the reference).
    """
    m = len(sigs)
    codes = np.empty(0, dtype=np.int64)
    if m < 2:
        return codes
    g = None if groups is None else _mix64(np.asarray(groups).astype(np.uint64))
    for b in range(bands):
        key = _band_keys(sigs[:, b * rows : (b + 1) * rows])
        order, start, size = _bucket_runs(key)
        if max_bucket is not None and g is not None and (size > max_bucket).any():
            big = np.zeros(m, dtype=bool)
            big[order[size > max_bucket]] = True
            with np.errstate(over="ignore"):
                key = np.where(big, _mix64(key ^ g), key)
            order, start, size = _bucket_runs(key)
        pos = np.arange(m)
        parts = []
        small = size <= (max_bucket if max_bucket is not None else m)
        d = 1
        while True:  # all pairs of the small buckets (and the chain of the large ones at d == 1)
            p = pos[: m - d]
            same = (start[p] == start[p + d]) & (small[p] | (d == 1))
            if not same.any():
                break
            p = p[same]
            parts.append((order[p], order[p + d]))
            d += 1
        star = ~small & (pos - start > 1)
        if star.any():
            parts.append((order[start[star]], order[pos[star]]))
        if parts:
            i = np.concatenate([a for a, _ in parts]).astype(np.int64)
            j = np.concatenate([c for _, c in parts]).astype(np.int64)
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            codes = np.union1d(codes, lo * m + hi)
    return codes


def bucket_pairs(
    members: np.ndarray, groups: np.ndarray | None = None, max_bucket: int | None = MAX_BUCKET
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i < j) :func:`band_pairs` takes from one bucket (``members`` ascending, ``groups``
    theirs): the same policy for an engine that gathers whole buckets (Ray)."""
    m = np.asarray(members, dtype=np.int64)
    k = len(m)
    if max_bucket is None or k <= max_bucket:
        a, b = np.triu_indices(k, k=1)
        return m[a], m[b]
    if groups is not None:
        g = np.asarray(groups)
        ii, jj = [], []
        for v in np.unique(g):
            i, j = bucket_pairs(m[g == v], None, max_bucket)
            ii.append(i)
            jj.append(j)
        return np.concatenate(ii), np.concatenate(jj)
    return np.r_[np.full(k - 1, m[0]), m[1:-1]], np.r_[m[1:], m[2:]]  # star from the first + chain


def lsh_candidate_pairs(
    sigs: np.ndarray,
    params: MinHashParams,
    threshold: float,
    weights: tuple[float, float] = (0.5, 0.5),
    rows: Iterable[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Candidate pairs (i < j) among ``rows`` (default all) whose signatures share an LSH band, by
    datasketch's own MinHashLSH (all pairs of every bucket; the reference for :func:`band_pairs`).
    Returns (i, j, (bands, rows_per_band))."""
    acc = LSHPairs(params, threshold, weights)
    for k in rows if rows is not None else range(len(sigs)):
        acc.add(int(k), sigs[int(k)])
    i, j = acc.pairs()
    return i, j, acc.bands_rows
