"""select stage: budget, category spread, favouring difficulty, determinism."""

from __future__ import annotations

import json

import polars as pl
import pytest

from curate.errors import RecipeError
from curate.registry import get_stage
from curate.stages.base import DROP, Context, mark_drop
from curate.stages.select import SelectConfig, SelectStage


def frame(sizes: dict[str, int], k: int = 2, as_meta: bool = True) -> pl.DataFrame:
    rows = []
    p = 0
    for subject, size in sizes.items():
        for i in range(size):
            for s in range(k):
                row = dict(
                    problem_id=f"{subject}{i:03d}",
                    sample_index=s,
                    sample_id=f"{subject}{i:03d}-{s}",
                    difficulty=(i + 0.5) / size,
                )
                if as_meta:
                    row["meta"] = json.dumps({"subject": subject, "level": 3})
                else:
                    row["subject"] = subject
                rows.append(row)
            p += 1
    return pl.DataFrame(rows)


def run(df, tmp_path, run_seed=0, **cfg):
    ctx = Context.for_test(tmp_path, seed=run_seed)
    out = SelectStage(SelectConfig(**cfg)).run(df, ctx)
    return out, ctx.stats


def kept(out: pl.DataFrame) -> pl.DataFrame:
    return out.filter(pl.col(DROP).is_null())


def test_registered():
    assert get_stage("select") is SelectStage


def test_budget_and_balanced_spread_with_a_small_category(tmp_path):
    df = frame({"alg": 30, "geo": 30, "nt": 2, "comb": 30})
    out, stats = run(df, tmp_path, n=20, category="subject")
    assert out.height == df.height  # rows are marked, never deleted
    assert out["sample_id"].to_list() == df["sample_id"].to_list()  # order kept
    k = kept(out)
    assert k["problem_id"].n_unique() == 20 and k.height == 40  # all traces of a chosen problem
    per = k.group_by(pl.col("problem_id").str.slice(0, 2).alias("cat")).agg(pl.col("problem_id").n_unique())
    counts = dict(per.iter_rows())
    assert counts["nt"] == 2  # the small category gives everything it has
    assert sorted(counts[c] for c in ("al", "ge", "co")) == [6, 6, 6]
    assert set(out.filter(pl.col(DROP).is_not_null())[DROP]) == {"not_selected"}
    assert stats["selected_problems"] == 20 and stats["categories"]["nt"] == {"available": 2, "selected": 2}


def test_proportional_spread(tmp_path):
    df = frame({"a": 60, "b": 30, "c": 10}, k=1)
    out, stats = run(df, tmp_path, n=20, category="subject", spread="proportional")
    sel = {c: v["selected"] for c, v in stats["categories"].items()}
    assert sel == {"a": 12, "b": 6, "c": 2}
    assert kept(out).height == 20


def test_favours_difficulty_and_strength_zero_is_uniform(tmp_path):
    df = frame({"x": 200}, k=1, as_meta=False)
    strong, _ = run(df, tmp_path, n=40, strength=50.0)
    assert kept(strong)["difficulty"].min() > 0.75  # the hardest fifth, nearly exactly
    mild, _ = run(df, tmp_path, n=40)
    flat, _ = run(df, tmp_path, n=40, strength=0.0)
    m, f = kept(mild)["difficulty"].mean(), kept(flat)["difficulty"].mean()
    assert m > 0.65 and 0.3 < f < 0.7 and m > f + 0.1


def test_deterministic_for_a_seed_and_input_order(tmp_path):
    df = frame({"a": 20, "b": 20})
    a, _ = run(df, tmp_path, n=10, category="subject", run_seed=3)
    b, _ = run(df.reverse(), tmp_path, n=10, category="subject", run_seed=3)
    c, _ = run(df, tmp_path, n=10, category="subject", run_seed=4)
    ids = lambda o: sorted(kept(o)["sample_id"].to_list())  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_row_budget_and_earlier_drops(tmp_path):
    df = frame({"a": 10, "b": 10}, k=3)
    df = mark_drop(df, pl.col("sample_index") == 2, "incorrect_trace")
    out, stats = run(df, tmp_path, n=7, unit="rows", category="subject")
    k = kept(out)
    assert k.height == 7 and stats["selected_rows"] == 7
    assert (out.filter(pl.col("sample_index") == 2)[DROP] == "incorrect_trace").all()  # earlier reason kept
    # at most one problem is cut short
    per = k.group_by("problem_id").len()["len"].to_list()
    assert sorted(per)[1:] == [2] * (len(per) - 1)


def test_budget_larger_than_data_and_errors(tmp_path):
    df = frame({"a": 3}, k=1)
    out, _ = run(df, tmp_path, n=100)
    assert kept(out).height == 3
    with pytest.raises(RecipeError, match="difficulty stage before select"):
        run(df.drop("difficulty"), tmp_path, n=2)
    with pytest.raises(RecipeError, match="neither a column nor a key"):
        run(df.drop("meta"), tmp_path, n=2, category="subject")
    with pytest.raises(Exception):
        SelectConfig(n=0)
    # a category key absent from meta: one "unknown" category, no error
    out, stats = run(df, tmp_path, n=2, category="topic")
    assert list(stats["categories"]) == ["unknown"]
