"""Pure difficulty primitives: Wilson interval, ranks, buckets, judge-reply parsing, seeded orders."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from curate import difficulty as D

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17:857-872,
# Table I, method 3 (Wilson score interval without continuity correction), 95 %.
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize("k,n,lo,hi", NEWCOMBE)
def test_wilson_matches_published_values(k, n, lo, hi):
    low, high = D.wilson_interval(k, n, 0.95)
    assert low == pytest.approx(lo, abs=6e-5)
    assert high == pytest.approx(hi, abs=6e-5)


def _wilson_reference(k: int, n: int, z: float) -> tuple[float, float]:
    # the textbook form: the roots in p of (p_hat - p)^2 = z^2 p (1 - p) / n
    a = 1 + z * z / n
    b = -(2 * k / n + z * z / n)
    c = (k / n) ** 2
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def test_wilson_against_quadratic_roots_and_expression():
    z = D.z_for(0.9)
    assert z == pytest.approx(1.644854, abs=1e-6)
    pairs = [(k, n) for n in (1, 2, 4, 7, 50, 100) for k in range(0, n + 1, max(1, n // 5))]
    frame = pl.DataFrame({"k": [k for k, _ in pairs], "n": [n for _, n in pairs]})
    lo_e, hi_e = D.wilson_exprs("k", "n", 0.9)
    got = frame.with_columns(lo_e.alias("lo"), hi_e.alias("hi"))
    for (k, n), lo, hi in zip(pairs, got["lo"], got["hi"]):
        rl, rh = _wilson_reference(k, n, z)
        fl, fh = D.wilson_interval(k, n, 0.9)
        assert fl == pytest.approx(max(rl, 0.0), abs=1e-12) and fh == pytest.approx(min(rh, 1.0), abs=1e-12)
        assert lo == pytest.approx(fl, abs=1e-12) and hi == pytest.approx(fh, abs=1e-12)


def test_wilson_edges_and_sample_size_matters():
    assert D.wilson_interval(0, 0) == (0.0, 1.0)
    assert D.wilson_interval(0, 5)[0] == 0.0 and D.wilson_interval(5, 5)[1] == 1.0
    small, big = D.wilson_interval(1, 2), D.wilson_interval(50, 100)
    assert small[1] - small[0] > 2.5 * (big[1] - big[0])  # 1/2 is far less certain than 50/100
    with pytest.raises(ValueError):
        D.wilson_interval(3, 2)
    frame = pl.DataFrame({"k": [0], "n": [0]}).with_columns(*[e.alias(f"b{i}") for i, e in enumerate(D.wilson_exprs("k", "n"))])
    assert frame["b0"][0] is None and frame["b1"][0] is None


def test_normalized_rank_and_weighted_combination():
    r = D.normalized_rank([3, 1, None, 3, 2])
    assert np.isnan(r[2])
    assert list(r[[1, 4, 0, 3]]) == [0.0, pytest.approx(1 / 3), pytest.approx(5 / 6), pytest.approx(5 / 6)]
    assert D.normalized_rank([None, 7])[1] == 0.5
    # method A says 0 < 1 < 2; method B (weight 3) says the reverse; item 1 has no B score
    c = D.combine_ranks([[0, 1, 2], [2, None, 0]], [1.0, 3.0])
    assert c[0] == pytest.approx((0 * 1 + 1 * 3) / 4)
    assert c[1] == pytest.approx(0.5)  # only A: its rank
    assert c[2] == pytest.approx((1 * 1 + 0 * 3) / 4)
    assert np.isnan(D.combine_ranks([[None, 1]], [1.0])[0])


def test_quantile_and_fixed_buckets():
    vals = [i / 9 for i in range(10)]
    edges = D.quantile_edges(vals, 3)
    idx = D.assign_buckets(vals, edges)
    assert idx == sorted(idx) and [idx.count(b) for b in range(3)] in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert D.assign_buckets([0.0, 0.3, 0.31, 1.0, None], [0.3, 0.7]) == [0, 0, 1, 2, None]
    # ties never straddle a bucket edge
    tied = [0.5] * 6 + [0.9]
    idx = D.assign_buckets(tied, D.quantile_edges(tied, 3))
    assert len(set(idx[:6])) == 1
    assert D.default_bucket_labels(3) == ["easy", "medium", "hard"]


@pytest.mark.parametrize(
    "reply,score",
    [
        ("7", 7.0),
        ("**8**", 8.0),
        ("Difficulty: 7", 7.0),
        ("**Difficulty:** 7/10", 7.0),
        ('{"difficulty": 9}', 9.0),
        ("I would rate this a 6 out of 10.", 6.0),
        ("Score = 3", 3.0),
        ("Difficulty: 6-7", 6.5),
        ("<think>It might be a 3 or 9.</think>\nFinal answer: \\boxed{8}", 8.0),
        ("The proof needs 12 steps and 3 lemmas. Difficulty: 5.", 5.0),
        ("First I thought difficulty 4, but on reflection the difficulty is 6.", 6.0),
        ("Difficulty level: 4 (moderate)", 4.0),
        ("difficulty 7.5", 7.5),
        ("10", 10.0),
        ("Difficulty: 8. (The answer itself would be \\boxed{42}.)", 8.0),
        ("Difficulty: 7\n\nScore breakdown: 3 steps, 120 words", 7.0),
        # unparseable or out of range
        ("hard", None),
        ("", None),
        (None, None),
        ("Difficulty: 15", None),
        ("Difficulty: 100", None),
        ("Difficulty: 7.5/10", 7.5),
        ("The year 2024 problem. 8/10", 8.0),
        ("rating 0", None),
        ("I rate it 4/5", None),
        ("eleven", None),
        ("__import__('os').system('echo pwned')", None),
        ("<think>Difficulty: 5 maybe", None),
    ],
)
def test_parse_judge_score(reply, score):
    assert D.parse_judge_score(reply) == score


def test_parse_judge_score_is_fast_on_hostile_text():
    import time

    text = "difficulty " + "9" * 50_000 + " " + "a" * 100_000
    t = time.perf_counter()
    assert D.parse_judge_score(text) is None
    assert time.perf_counter() - t < 1.0


def test_seeded_orders_are_deterministic_and_order_free():
    keys = [f"k{i}" for i in range(20)]
    a = D.random_keys(keys, 7, "x")
    b = D.random_keys(list(reversed(keys)), 7, "x")
    assert sorted(a.tolist()) == list(range(20))
    assert dict(zip(keys, a.tolist())) == dict(zip(reversed(keys), b.tolist()))
    assert a.tolist() != D.random_keys(keys, 8, "x").tolist()
    assert D.weighted_interleave([[1, 2, 3, 4, 5, 6], [10, 11, 12]], [2, 1]) == [1, 10, 2, 3, 11, 4, 5, 12, 6]
    assert D.weighted_interleave([[1, 2], [3, 4, 5]], [1, 0]) == [1, 2, 3, 4, 5]
