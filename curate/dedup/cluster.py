"""Near-duplicate search over a list of texts: exact keys, MinHash + LSH candidates, verification,
connected components (scipy) and the keep policy inside a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np

from .minhash import MAX_BUCKET, MinHashParams, band_pairs, estimated_jaccard, iter_signatures, make_lsh, shingle_sets
from .text import jaccard

Verify = Literal["exact", "minhash"]


@dataclass
class DedupResult:
    labels: np.ndarray  # component label per text (connected components of duplicate edges)
    keys: np.ndarray  # exact key per text (xxh3-64 of the canonical text)
    pairs_i: np.ndarray  # verified near-duplicate pairs (i < j) with their similarity
    pairs_j: np.ndarray
    similarity: np.ndarray
    n_candidates: int = 0
    lsh_params: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)


def find_duplicates(
    texts: Sequence[str | None],
    params: MinHashParams = MinHashParams(),
    threshold: float = 0.8,
    *,
    near: bool = True,
    verify: Verify = "exact",
    lsh_threshold: float | None = None,
    lsh_weights: tuple[float, float] = (0.1, 0.9),
    num_proc: int = 1,
    progress: Callable[[int], None] | None = None,
    groups: np.ndarray | None = None,
    max_bucket: int | None = MAX_BUCKET,
) -> DedupResult:
    """Group ``texts`` into duplicate clusters.

    Exact duplicates share the hash of their canonical text. Near duplicates: MinHash signatures
    (vectorised, ``num_proc`` processes) of one representative per exact group are cut into the bands
    x rows datasketch's MinHashLSH picks for recall at ``lsh_threshold`` (default ``threshold - 0.1``);
    texts sharing a band are candidates (:func:`.minhash.band_pairs`: all pairs of a bucket of up to
    ``max_bucket`` texts, a star and a chain through a larger one after splitting it by ``groups``, so
    candidates grow linearly on templated texts). Candidates are kept if their exact shingle-set
    Jaccard (``verify="exact"``) or the signature estimate (``verify="minhash"``) is >= ``threshold``.
    Clusters are connected components (scipy). ``groups``: optional int per text; the caller never
    merges texts of different groups (the stage: problems with different numbers).
    ``progress(k)`` is called as each chunk of k texts is signed.
    """
    n = len(texts)
    sigs = np.empty((n, params.num_perm), dtype=np.uint32 if params.scheme == "affine32" else np.uint64)
    keys = np.empty(n, dtype=np.uint64)
    rep = np.empty(n, dtype=np.int64)  # first text with the same exact key
    first_of: dict[int, int] = {}
    lt = max(0.05, threshold - 0.1) if lsh_threshold is None else lsh_threshold
    for s, sg, ky in iter_signatures(texts, params, num_proc=num_proc):
        sigs[s : s + len(sg)] = sg
        keys[s : s + len(ky)] = ky
        for k, key in enumerate(ky.tolist(), start=s):
            rep[k] = first_of.setdefault(key, k)
        if progress is not None:
            progress(len(ky))
    del first_of
    pi = pj = np.empty(0, dtype=np.int64)
    sim = np.empty(0)
    n_cand, lsh_params = 0, None
    if near:
        lsh = make_lsh(lt, params.num_perm, lsh_weights)  # datasketch picks bands x rows
        lsh_params = (lsh.b, lsh.r)
        reps = np.flatnonzero(rep == np.arange(n))
        codes = band_pairs(sigs[reps], lsh.b, lsh.r, max_bucket=max_bucket,
                           groups=None if groups is None else np.asarray(groups)[reps])
        ci, cj = reps[codes // max(1, len(reps))], reps[codes % max(1, len(reps))]
        n_cand = len(ci)
        if n_cand:
            sim = _similarity(texts, sigs, ci, cj, params, verify, num_proc)
            ok = sim >= threshold
            pi, pj, sim = ci[ok], cj[ok], sim[ok]
    return DedupResult(cluster_labels(rep, pi, pj), keys, pi, pj, sim, n_candidates=n_cand, lsh_params=lsh_params)


PAIR_CHUNK = 50_000
"""Candidate pairs whose exact Jaccard is computed together: only their texts' shingle sets are held."""


def _similarity(texts, sigs: np.ndarray, ci: np.ndarray, cj: np.ndarray, params: MinHashParams, verify: Verify,
                num_proc: int) -> np.ndarray:
    """Similarity of each candidate pair: exact shingle-set Jaccard (chunk of pairs by chunk: bounded
    memory at any number of candidates), or the signature estimate."""
    if verify != "exact":
        return estimated_jaccard(sigs, ci, cj)
    out = np.empty(len(ci), dtype=np.float64)
    for s in range(0, len(ci), PAIR_CHUNK):
        a, b = ci[s : s + PAIR_CHUNK], cj[s : s + PAIR_CHUNK]
        involved = np.unique(np.concatenate([a, b]))
        sets = shingle_sets([texts[int(k)] for k in involved], params, num_proc=num_proc)
        ia, ib = np.searchsorted(involved, a), np.searchsorted(involved, b)
        out[s : s + len(a)] = [jaccard(sets[x], sets[y]) for x, y in zip(ia.tolist(), ib.tolist())]
    return out


def cluster_labels(rep: np.ndarray, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
    """Cluster label per text: connected components (scipy) of "same exact key as ``rep[i]``" edges
    plus the verified near-duplicate pairs ``(pi, pj)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(rep)
    src = np.concatenate([np.arange(n), pi])
    dst = np.concatenate([rep, pj])
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def choose_kept(labels: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Index of the kept member for every element: the lowest ``score`` in its cluster (ties: first)."""
    n = len(labels)
    idx = np.arange(n)
    order = np.lexsort((idx, score, labels))
    lab_sorted = labels[order]
    starts = np.r_[True, lab_sorted[1:] != lab_sorted[:-1]]
    best_of_label = np.empty(labels.max() + 1 if n else 0, dtype=np.int64)
    best_of_label[lab_sorted[starts]] = order[starts]
    return best_of_label[labels]
