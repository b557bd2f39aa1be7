"""Benchmark contamination index: word n-gram overlap plus MinHash similarity.

Texts are compared as the field does it (open-r1, s1, the GPT-3 / PaLM contamination studies):
words and numbers only (:func:`contam_tokens`). LaTeX command names, punctuation, braces and
Asymptote drawing code (``[asy] ... [/asy]``) are not evidence: ``\frac{1}{2}`` and ``1/2`` are
both ``1 2``, and ``f ( x ) = \frac {`` is no n-gram at all.

One :class:`BenchmarkIndex` per benchmark set holds
* the sorted unique hashes of every word n-gram (default 8, as open-r1 and s1 use) of its texts,
  with the benchmark row each came from (for the report's examples) and the number of benchmark
  rows that contain it (its document frequency: a stock phrase such as "where m and n are
  relatively prime positive integers" found in many rows is weak evidence; a row's score is the sum
  of 1/df over the n-grams it shares, so one n-gram unique to one benchmark row counts 1), and
* MinHash signatures (datasketch-compatible) plus exact shingle sets of its texts, for
  light edits that break every long n-gram; candidates come from datasketch's MinHashLSH and are
  confirmed by exact Jaccard.

The index is saved as an ``.npz`` under a key derived from the benchmark's content and the
parameters, so a second run loads it instead of rebuilding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import xxhash

from .minhash import MinHashParams, lean, make_lsh, signatures
from .text import jaccard, ngram_hashes, normalize, shingle_set, word_token_hashes

INDEX_VERSION = "2"  # 2: words-and-numbers tokens, n-gram document frequencies

_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.S)
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+")
_WORD_OR_NUMBER = re.compile(r"[^\W\d_]+|\d+")


def contam_tokens(text: str | None) -> list[str]:
    """The tokens contamination is judged on: lower-case runs of letters and runs of digits of the
    normalised text, after dropping Asymptote blocks and LaTeX command names (``\\frac``)."""
    t = normalize(text)
    if "[asy]" in t:
        t = _ASY.sub(" ", t)
    if "\\" in t:
        t = _LATEX_CMD.sub(" ", t)
    return _WORD_OR_NUMBER.findall(t)


def contam_text(text: str | None) -> str:
    """:func:`contam_tokens` joined by single spaces (what the n-gram and MinHash checks hash)."""
    return " ".join(contam_tokens(text))


@dataclass(frozen=True)
class ContamParams:
    ngram: int = 8
    min_overlap: float = 3.0
    """Rarity-weighted shared n-grams needed to call a row contaminated: each distinct shared n-gram
    counts 1 / (number of benchmark rows containing it). 3 is three n-grams unique to one benchmark
    row, e.g. a shared run of 10 words and numbers."""
    minhash: bool = True
    minhash_ngram: int = 1
    minhash_threshold: float = 0.5
    minhash_min_shingles: int = 15
    """MinHash compares only texts with at least this many distinct shingles on both sides: the
    word-set Jaccard of two short problems ("what is the value of ...") is high by chance."""
    num_perm: int = 128
    seed: int = 1

    @property
    def mh(self) -> MinHashParams:
        return MinHashParams(num_perm=self.num_perm, seed=self.seed, ngram=self.minhash_ngram, shingle="word")


@dataclass
class Match:
    row: int  # index of the checked text
    bench_row: int
    method: str  # ngram | minhash
    similarity: float  # Jaccard of the MinHash shingle sets (exact)
    matched: str  # the rarest shared n-gram (ngram), or "" (minhash)
    shared: int  # number of distinct shared n-grams
    score: float = 0.0  # rarity-weighted shared n-grams (sum of 1/df)


def content_key(texts: Sequence[str], params: ContamParams) -> str:
    h = xxhash.xxh3_128()
    h.update(f"{INDEX_VERSION}|{params.ngram}|{params.minhash}|{params.minhash_ngram}|{params.num_perm}|{params.seed}".encode())
    for t in texts:
        b = (t or "").encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _word_ngrams(text: str | None, n: int) -> np.ndarray:
    """n-gram hashes of a text already in :func:`contam_text` form."""
    ids = word_token_hashes(text)
    if len(ids) < n:  # a text shorter than n has no n-gram (it could not share one)
        return np.empty(0, dtype=np.uint64)
    return ngram_hashes(ids, n)


class BenchmarkIndex:
    def __init__(self, texts: list[str], params: ContamParams, arrays: dict[str, np.ndarray]):
        self.texts = texts
        self.params = params
        self.ng_hash = arrays["ng_hash"]
        self.ng_row = arrays["ng_row"]
        self.ng_df = arrays["ng_df"]
        self.sigs = arrays["sigs"]
        self.set_offsets = arrays["set_offsets"]
        self.set_values = arrays["set_values"]
        self._lsh = None

    def __getstate__(self) -> dict:
        """Pickled (to an engine's workers) without the LSH, which each copy builds when it needs it."""
        return {**self.__dict__, "_lsh": None}

    # ------------------------------------------------------------------ build / cache
    @classmethod
    def build(cls, texts: list[str], params: ContamParams) -> "BenchmarkIndex":
        hs, rows = [], []
        ctexts = [contam_text(t) for t in texts]
        for i, t in enumerate(ctexts):
            h = np.unique(_word_ngrams(t, params.ngram))
            hs.append(h)
            rows.append(np.full(len(h), i, dtype=np.int64))
        ng = np.concatenate(hs) if hs else np.empty(0, dtype=np.uint64)
        rw = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        order = np.argsort(ng, kind="stable")
        ng, rw = ng[order], rw[order]
        first = np.r_[True, ng[1:] != ng[:-1]] if len(ng) else np.empty(0, dtype=bool)
        starts = np.flatnonzero(first)
        df = np.diff(np.r_[starts, len(ng)]).astype(np.int64)  # rows per n-gram (unique within a row)
        arrays = {"ng_hash": ng[first], "ng_row": rw[first], "ng_df": df}
        mh = params.mh
        sigs, _ = signatures(ctexts, mh)
        sets = [shingle_set(t, mh.ngram, mh.shingle) for t in ctexts]
        arrays["sigs"] = sigs
        arrays["set_offsets"] = np.cumsum([0] + [len(s) for s in sets]).astype(np.int64)
        arrays["set_values"] = np.concatenate(sets) if sets else np.empty(0, dtype=np.uint64)
        return cls(texts, params, arrays)

    @classmethod
    def load_or_build(cls, texts: list[str], params: ContamParams, cache_dir: Path | None) -> tuple["BenchmarkIndex", bool]:
        """(index, loaded_from_cache)."""
        if cache_dir is None:
            return cls.build(texts, params), False
        path = Path(cache_dir) / f"{content_key(texts, params)}.npz"
        if path.exists():
            try:
                with np.load(path) as z:
                    return cls(texts, params, {k: z[k] for k in z.files}), True
            except Exception:  # a torn or foreign file: rebuild below
                pass
        idx = cls.build(texts, params)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ng_hash=idx.ng_hash, ng_row=idx.ng_row, ng_df=idx.ng_df, sigs=idx.sigs,
                 set_offsets=idx.set_offsets, set_values=idx.set_values)
        tmp.replace(path)
        return idx, False

    def shingles(self, i: int) -> np.ndarray:
        return self.set_values[self.set_offsets[i] : self.set_offsets[i + 1]]

    # ------------------------------------------------------------------ queries
    def ngram_matches(self, texts: Sequence[str | None]) -> dict[int, Match]:
        p = self.params
        out: dict[int, Match] = {}
        if len(self.ng_hash) == 0:
            return out
        for i, raw in enumerate(texts):
            t = contam_text(raw)
            h = _word_ngrams(t, p.ngram)
            if len(h) == 0:
                continue
            pos = np.searchsorted(self.ng_hash, h)
            pos[pos >= len(self.ng_hash)] = 0
            hit = self.ng_hash[pos] == h
            if not hit.any():
                continue
            _, first = np.unique(h[hit], return_index=True)  # distinct shared n-grams
            at = np.flatnonzero(hit)[first]  # their positions in the text
            w = 1.0 / self.ng_df[pos[at]]
            score = float(w.sum())
            if score < p.min_overlap - 1e-9:
                continue
            k = int(at[w == w.max()].min())  # the rarest shared n-gram (first in the text)
            toks = t.split()  # same tokens, in order, as the ids hashed above
            out[i] = Match(i, int(self.ng_row[pos[k]]), "ngram", float("nan"), " ".join(toks[k : k + p.ngram]),
                           len(at), round(score, 4))
        return out

    def minhash_matches(self, texts: Sequence[str | None], skip: set[int] = frozenset()) -> dict[int, Match]:
        p = self.params
        mh = p.mh
        out: dict[int, Match] = {}
        if not p.minhash or len(self.texts) == 0:
            return out
        if self._lsh is None:
            self._lsh = make_lsh(max(0.05, p.minhash_threshold - 0.1), mh.num_perm, (0.1, 0.9))
            for j in range(len(self.sigs)):
                self._lsh.insert(j, lean(self.sigs[j], mh), check_duplication=False)
        todo = [i for i in range(len(texts)) if i not in skip]
        ctexts = {i: contam_text(texts[i]) for i in todo}
        sigs, _ = signatures([ctexts[i] for i in todo], mh)
        for i, sig in zip(todo, sigs):
            cands = np.asarray(self._lsh.query(lean(sig, mh)), dtype=np.int64)
            if len(cands) == 0:
                continue
            # signature estimate first (one numpy op over all candidates), exact Jaccard for the
            # plausible ones only (margin: > 3 standard deviations of the estimate at 128 perms)
            est = (self.sigs[cands] == sig).mean(axis=1)
            cands = cands[est >= p.minhash_threshold - 0.15]
            sizes = self.set_offsets[cands + 1] - self.set_offsets[cands]
            cands = cands[sizes >= p.minhash_min_shingles]
            if len(cands) == 0:
                continue
            mine = shingle_set(ctexts[i], mh.ngram, mh.shingle)
            if len(mine) < p.minhash_min_shingles:
                continue
            best = max(((jaccard(mine, self.shingles(int(j))), int(j)) for j in cands), default=(0.0, -1))
            if best[0] >= p.minhash_threshold:
                out[i] = Match(i, best[1], "minhash", best[0], f"(MinHash: word {mh.ngram}-gram Jaccard {best[0]:.2f})", 0)
        return out

    def similarity(self, text: str | None, j: int) -> float:
        mh = self.params.mh
        return jaccard(shingle_set(contam_text(text), mh.ngram, mh.shingle), self.shingles(j))

    def check(self, texts: Sequence[str | None]) -> dict[int, Match]:
        """Contaminated texts by index: n-gram overlap first, then MinHash for the rest."""
        found = self.ngram_matches(texts)
        for m in found.values():
            m.similarity = self.similarity(texts[m.row], m.bench_row)
        found.update(self.minhash_matches(texts, skip=set(found)))
        return found
