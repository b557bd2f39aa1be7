"""Difficulty primitives: Wilson intervals, rank combination, buckets, judge-reply parsing.

Pure functions over numbers, strings and polars frames; the ``difficulty``, ``curriculum`` and
``select`` stages are thin layers over them. Nothing here evaluates untrusted text: judge replies
are read with bounded regular expressions only.
"""

from __future__ import annotations

import math
import re
from statistics import NormalDist
from typing import Iterable, Sequence

import numpy as np
import polars as pl

__all__ = [
    "z_for",
    "wilson_interval",
    "wilson_exprs",
    "normalized_rank",
    "combine_ranks",
    "quantile_edges",
    "assign_buckets",
    "default_bucket_labels",
    "parse_judge_score",
    "seeded_permutation",
    "keyed_random",
    "weighted_interleave",
    "break_ties",
    "length_signals",
    "minmax",
]


# --------------------------------------------------------------------------- Wilson interval


def z_for(confidence: float) -> float:
    """Two-sided normal quantile for a confidence level (0.95 -> 1.959964)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for ``successes`` out of ``n``.

    ``n == 0`` gives the uninformative interval (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def pass_rate_columns(probs: pl.DataFrame, pass_src: str, confidence: float) -> pl.DataFrame:
    """n_samples, pass_rate and its Wilson interval from the ``<pass_src>_n`` / ``_c`` columns."""
    # the pass-rate columns describe the first pass_rate method's source (teacher by default)
    n_col, c_col = f"{pass_src}_n", f"{pass_src}_c"
    if n_col not in probs.columns:
        probs = probs.with_columns(pl.lit(None, pl.Int64).alias(n_col), pl.lit(None, pl.Int64).alias(c_col))
    low, high = wilson_exprs(c_col, n_col, confidence)
    probs = probs.with_columns(
        pl.col(n_col).fill_null(0).cast(pl.Int64).alias("n_samples"),
        pl.when(pl.col(n_col) > 0).then(pl.col(c_col) / pl.col(n_col)).otherwise(None).alias("pass_rate"),
        low.alias("pass_rate_low"),
        high.alias("pass_rate_high"),
    )
    return probs


def wilson_exprs(successes: str, n: str, confidence: float = 0.95) -> tuple[pl.Expr, pl.Expr]:
    """The Wilson bounds as polars expressions over integer columns (null where n == 0)."""
    z = z_for(confidence)
    k = pl.col(successes).cast(pl.Float64)
    nn = pl.col(n).cast(pl.Float64)
    p = k / nn
    z2n = z * z / nn
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * ((p * (1.0 - p) / nn + z2n / (4.0 * nn)).sqrt()) / (1.0 + z2n)
    ok = nn > 0
    low = (
        pl.when(~ok).then(None).when(k == 0).then(0.0)
        .otherwise(pl.max_horizontal(centre - half, pl.lit(0.0)))
    )
    high = (
        pl.when(~ok).then(None).when(k == nn).then(1.0)
        .otherwise(pl.min_horizontal(centre + half, pl.lit(1.0)))
    )
    return low, high


# --------------------------------------------------------------------------- ranks


def normalized_rank(values: Sequence[float | None]) -> np.ndarray:
    """Average-tie ranks scaled to [0, 1] over the non-null values (null stays NaN).

    The smallest value gets 0, the largest 1; a single non-null value gets 0.5.
    """
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    ok = ~np.isnan(v)
    out = np.full(v.shape, np.nan)
    m = int(ok.sum())
    if m == 0:
        return out
    if m == 1:
        out[ok] = 0.5
        return out
    vals = v[ok]
    order = np.argsort(vals, kind="stable")
    ranks = np.empty(m, dtype=float)
    sorted_vals = vals[order]
    i = 0
    while i < m:  # average ranks over ties
        j = i
        while j + 1 < m and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    out[ok] = ranks / (m - 1)
    return out


def combine_ranks(scores: Sequence[Sequence[float | None]], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of normalized ranks, per item, over the methods that have a value for it.

    ``scores[j][i]`` is method j's raw difficulty for item i (higher = harder, None = no signal).
    An item no method scores gets NaN.
    """
    if len(scores) != len(weights):
        raise ValueError("one weight per method")
    if not scores:
        return np.array([], dtype=float)
    n = len(scores[0])
    num = np.zeros(n)
    den = np.zeros(n)
    for s, w in zip(scores, weights):
        r = normalized_rank(s)
        ok = ~np.isnan(r)
        num[ok] += w * r[ok]
        den[ok] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def minmax(vals: list[float | None]) -> list[float | None]:
    """Min-max scaling to [0, 1] over the non-null values (all equal: 0.5; None stays None)."""
    xs = [v for v in vals if v is not None]
    if not xs:
        return vals
    lo, hi = min(xs), max(xs)
    return [None if v is None else (0.5 if hi == lo else (v - lo) / (hi - lo)) for v in vals]


def length_signals(df: pl.DataFrame) -> pl.DataFrame:
    """Per problem (from the rows' ``_tokens``): median tokens of the correct traces and mean tokens of all traces."""
    ok = (pl.col("correct") == True) if "correct" in df.columns else pl.lit(False)  # noqa: E712
    return df.group_by("problem_id").agg(
        pl.col("_tokens").filter(ok).median().alias("median_correct_tokens"),
        pl.col("_tokens").mean().alias("_mean_tokens"),
    )


def break_ties(combined: np.ndarray, probs: pl.DataFrame, stats: dict) -> np.ndarray:
    """Order problems with equal combined difficulty by the length signals (median correct-trace
    tokens, then mean tokens; longer = harder), without reordering different ones: the result is
    ``(d + g/2 * t) / (1 + g/2)`` with g the smallest gap between distinct values and t in [0, 1]
    the tie-break rank, so it stays in [0, 1]."""
    d = np.asarray(combined, dtype=float)
    ok = ~np.isnan(d)
    if ok.sum() < 2:
        return d
    vals = np.unique(d[ok])
    if len(vals) == ok.sum():
        return d
    stats["tied_problems"] = int(ok.sum() - len(vals))
    med = probs["median_correct_tokens"].to_numpy().astype(float) if "median_correct_tokens" in probs.columns else np.full(len(d), np.nan)
    mean = probs["_mean_tokens"].to_numpy().astype(float) if "_mean_tokens" in probs.columns else np.full(len(d), np.nan)
    key = np.where(np.isnan(med), mean, med)
    if np.all(np.isnan(key[ok])) or len(np.unique(key[ok & ~np.isnan(key)])) < 2:
        return d
    t = normalized_rank([None if np.isnan(x) else float(x) for x in key])
    t = np.where(np.isnan(t), 0.5, t)
    g = float(np.min(np.diff(vals))) if len(vals) > 1 else 1.0
    stats["tie_break"] = "trace length"
    return np.where(ok, (d + g / 2.0 * t) / (1.0 + g / 2.0), np.nan)


# --------------------------------------------------------------------------- buckets


def default_bucket_labels(n: int) -> list[str]:
    named = {1: ["all"], 2: ["easy", "hard"], 3: ["easy", "medium", "hard"],
             4: ["easy", "medium", "hard", "very_hard"],
             5: ["very_easy", "easy", "medium", "hard", "very_hard"]}
    return named.get(n, [f"level_{i + 1}" for i in range(n)])


def quantile_edges(values: Iterable[float], n_buckets: int) -> list[float]:
    """The n-1 inner edges splitting ``values`` (NaN ignored) into equal-count buckets."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if n_buckets < 1:
        raise ValueError("n_buckets must be >= 1")
    if v.size == 0 or n_buckets == 1:
        return []
    qs = np.quantile(v, [i / n_buckets for i in range(1, n_buckets)])
    return [float(q) for q in qs]


def assign_buckets(values: Sequence[float | None], edges: Sequence[float]) -> list[int | None]:
    """Bucket index per value: bucket i holds edges[i-1] < x <= edges[i] (None stays None)."""
    e = np.asarray(list(edges), dtype=float)
    out: list[int | None] = []
    for x in values:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            out.append(None)
        else:
            out.append(int(np.searchsorted(e, float(x), side="left")))
    return out


# --------------------------------------------------------------------------- judge replies

_NUM = r"(?<![\d.])(\d{1,2}(?:\.\d+)?)(?!\.?\d)"
_RANGE = _NUM + r"(?:\s*(?:-|–|to)\s*" + _NUM + r")?"
_AFTER = r"[^0-9\n]{0,24}?" + _RANGE + r"(?!\s*/\s*(?!10\b)\d)(?!\.\d)(?!\s*%)"
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_PATTERNS = [
    # \boxed{7}
    re.compile(r"\\boxed\s*\{\s*" + _RANGE + r"\s*(?:/\s*10\s*)?\}"),
    # "Difficulty: 7", "**Difficulty:** 7/10", '"difficulty": 7', "difficulty rating of 8"
    re.compile(r"difficulty\b" + _AFTER, re.I),
    # "Score = 7", "rating: 7", "I rate it a 6"
    re.compile(r"(?:score|rating|rate(?:d)?(?:\s+(?:it|this|the\s+problem))?)\b" + _AFTER, re.I),
    # "7/10", "7 out of 10"
    re.compile(r"(?<![\d.])" + _RANGE + r"\s*(?:/|out\s+of)\s*10\b", re.I),
]
_BARE = re.compile(r"^[\s*_`#>\"'(\[]*" + _RANGE + r"[\s*_`\"')\].!]*$")


def parse_judge_score(text: str | None, lo: float = 1.0, hi: float = 10.0) -> float | None:
    """A difficulty score in [lo, hi] read from a judge reply, or None when it cannot be read.

    Looks for ``\\boxed{N}``, then "difficulty/score/rating ... N", then "N/10" or "N out of 10",
    then a reply that is just a number; within a kind the last in-range mention wins. A range "6-7" gives its midpoint.
    Reasoning inside ``<think>`` is ignored. Out-of-range numbers give None.
    """
    if not text:
        return None
    body = _THINK.sub(" ", str(text)[:20000]).strip()
    if not body:
        return None
    for pat in _PATTERNS:  # the last in-range mention of the most explicit kind wins
        for m in reversed(list(pat.finditer(body))):
            x = _score(m, lo, hi)
            if x is not None:
                return x
    m = _BARE.match(body)
    return _score(m, lo, hi) if m else None


def _score(m: re.Match, lo: float, hi: float) -> float | None:
    a = float(m.group(1))
    b = m.group(2)
    x = (a + float(b)) / 2.0 if b is not None else a
    return x if lo <= x <= hi else None


# --------------------------------------------------------------------------- seeded orders


def seeded_permutation(n: int, seed: int, salt: str = "") -> np.ndarray:
    """A permutation of range(n) that depends only on (n, seed, salt)."""
    import zlib

    s = (int(seed) & 0xFFFFFFFF, zlib.crc32(salt.encode("utf-8")))
    return np.random.default_rng(s).permutation(n)


def weighted_interleave(queues: Sequence[Sequence[int]], weights: Sequence[float]) -> list[int]:
    """Merge queues so that, at every prefix, each queue's share follows ``weights``.

    Smooth weighted round-robin: deterministic, no randomness; an exhausted queue drops out and the
    others continue in their ratio.
    """
    pos = [0] * len(queues)
    cur = [0.0] * len(queues)
    out: list[int] = []
    total_items = sum(len(q) for q in queues)
    while len(out) < total_items:
        live = [i for i, q in enumerate(queues) if pos[i] < len(q) and weights[i] > 0]
        if not live:  # only zero-weight queues remain: append them in order
            for i, q in enumerate(queues):
                out.extend(q[pos[i]:])
                pos[i] = len(q)
            break
        tot = sum(weights[i] for i in live)
        for i in live:
            cur[i] += weights[i]
        best = max(live, key=lambda i: (cur[i], -i))
        cur[best] -= tot
        out.append(queues[best][pos[best]])
        pos[best] += 1
    return out


KEY_COLUMNS = ("sample_id", "problem_id", "sample_index")
"""The columns :func:`stable_row_keys` reads (a global stage lists those present in its ``reads``)."""


def key_columns(columns: Sequence[str]) -> list[str]:
    """The columns of ``columns`` that :func:`stable_row_keys` uses."""
    return [c for c in KEY_COLUMNS if c in columns]


def stable_row_keys(df: pl.DataFrame) -> list[str]:
    """A content key per row: its sample_id, else problem_id + sample_index, else problem_id + the row's
    place among its problem's rows. No frame position: a problem's rows keep their order in any frame that
    holds them (a shard, the rows of a narrow read in any shard order), so the keys are the same there."""
    return stable_row_key_series(df).to_list()


def stable_row_key_series(df: pl.DataFrame) -> pl.Series:
    """:func:`stable_row_keys` as a Utf8 series (no Python string per row)."""
    pid = (pl.col("problem_id").cast(pl.Utf8).fill_null("None") if "problem_id" in df.columns else pl.lit(""))
    nth = pl.int_range(pl.len(), dtype=pl.Int64).over(pid)
    key = pl.concat_str([pid, pl.lit("\x00"), nth.cast(pl.Utf8).str.zfill(12)])
    if "sample_index" in df.columns:
        idx = pl.concat_str([pid, pl.lit("\x00"), pl.col("sample_index").cast(pl.Int64).cast(pl.Utf8).str.zfill(12)])
        key = pl.when(pl.col("sample_index").is_not_null()).then(idx).otherwise(key)
    if "sample_id" in df.columns:
        key = pl.when(pl.col("sample_id").is_not_null()).then(pl.col("sample_id").cast(pl.Utf8)).otherwise(key)
    return df.select(key.alias("_key"))["_key"]


def keyed_random(keys: pl.Series, seed: int, salt: str = "") -> np.ndarray:
    """A seeded random number per key that depends on that key alone (xxh3-64 of seed, salt and key): the
    same in any frame or shard that holds the row, unlike :func:`random_keys`' ranks over a set."""
    import xxhash

    head = f"{seed}\x00{salt}\x00".encode()
    return np.fromiter((xxhash.xxh3_64_intdigest(head + k.encode()) for k in keys.cast(pl.Utf8).fill_null("").to_list()),
                       dtype=np.uint64, count=len(keys))


def random_keys(keys: Sequence[str] | pl.Series, seed: int, salt: str = "") -> np.ndarray:
    """A seeded random rank per key: depends on the set of keys and the seed, not on their order."""
    n = len(keys)
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    s = keys.cast(pl.Utf8) if isinstance(keys, pl.Series) else pl.Series(list(keys), dtype=pl.Utf8)
    # by key (UTF-8 byte order = code point order), ties by position
    order = s.alias("k").to_frame().with_row_index("i").sort(["k", "i"])["i"].to_numpy()
    out[order] = seeded_permutation(n, seed, salt)
    return out
