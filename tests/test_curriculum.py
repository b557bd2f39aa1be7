"""curriculum stage: orders, stages, determinism, config errors."""

from __future__ import annotations

import pydantic
import polars as pl
import pytest

from curate.errors import RecipeError
from curate.registry import get_stage
from curate.stages.base import Context
from curate.stages.curriculum import CurriculumConfig, CurriculumStage

LABELS = ["easy", "medium", "hard"]


def frame(n_problems: int = 12, k: int = 2, ties: bool = False) -> pl.DataFrame:
    rows = []
    for p in range(n_problems):
        d = (p // 2) / ((n_problems - 1) // 2) if ties else p / (n_problems - 1)
        for s in range(k):
            rows.append(
                dict(
                    problem_id=f"p{p:02d}",
                    sample_index=s,
                    sample_id=f"p{p:02d}-{s}",
                    difficulty=d,
                    difficulty_bucket=LABELS[min(2, int(d * 3))] if d < 1 else "hard",
                )
            )
    # shuffle the input so order never comes from the input by accident
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=3)


def run(df: pl.DataFrame, tmp_path, run_seed: int = 0, **cfg) -> tuple[pl.DataFrame, dict]:
    ctx = Context.for_test(tmp_path, seed=run_seed)
    out = CurriculumStage(CurriculumConfig(**cfg)).run(df, ctx)
    return out, ctx.stats


def test_registered():
    assert get_stage("curriculum") is CurriculumStage


def test_easy_to_hard_is_monotone_with_ranks_and_stages(tmp_path):
    df = frame(ties=True)
    out, stats = run(df, tmp_path)
    d = out["difficulty"].to_list()
    assert d == sorted(d)
    assert out["curriculum_rank"].to_list() == list(range(out.height))
    st = out["curriculum_stage"].to_list()
    assert st == sorted(st) and set(st) == {1, 2, 3}
    # a stage is a bucket
    assert out.group_by("curriculum_stage").agg(pl.col("difficulty_bucket").n_unique())["difficulty_bucket"].max() == 1
    # rows of one problem stay together
    pids = out["problem_id"].to_list()
    assert all(pids.index(p) + pids.count(p) - 1 == len(pids) - 1 - pids[::-1].index(p) for p in set(pids))
    assert "easiest to hardest" in stats["description"]
    assert sorted(out["sample_id"].to_list()) == sorted(df["sample_id"].to_list())


def test_hard_to_easy_and_nulls_last(tmp_path):
    df = frame().with_columns(
        pl.when(pl.col("problem_id") == "p03").then(None).otherwise(pl.col("difficulty")).alias("difficulty")
    )
    out, _ = run(df, tmp_path, order="hard_to_easy")
    d = out["difficulty"].to_list()
    assert d[-2:] == [None, None]
    assert d[:-2] == sorted(d[:-2], reverse=True)


def test_determinism_for_a_seed_and_independent_of_input_order(tmp_path):
    df = frame(ties=True)
    for order in ("easy_to_hard", "staged", "interleaved", "random"):
        a, _ = run(df, tmp_path, order=order, run_seed=5)
        b, _ = run(df.reverse(), tmp_path, order=order, run_seed=5)
        c, _ = run(df, tmp_path, order=order, run_seed=6)
        assert a["sample_id"].to_list() == b["sample_id"].to_list(), order
        if order != "easy_to_hard":
            assert a["sample_id"].to_list() != c["sample_id"].to_list(), order
    # the seed in the config wins over the run seed
    a, _ = run(df, tmp_path, order="random", run_seed=1, seed=9)
    b, _ = run(df, tmp_path, order="random", run_seed=2, seed=9)
    assert a["sample_id"].to_list() == b["sample_id"].to_list()


def test_staged_by_buckets_shuffles_inside_stages(tmp_path):
    df = frame(n_problems=30)
    out, stats = run(df, tmp_path, order="staged")
    st = out["curriculum_stage"].to_list()
    assert st == sorted(st)
    for s, label in zip((1, 2, 3), LABELS):
        part = out.filter(pl.col("curriculum_stage") == s)
        assert set(part["difficulty_bucket"]) == {label}
    first = out.filter(pl.col("curriculum_stage") == 1)["difficulty"].to_list()
    assert first != sorted(first)  # shuffled inside the stage
    assert stats["stage_sizes"] == {str(s): n for s, n in zip((1, 2, 3), out.group_by("curriculum_stage").len().sort("curriculum_stage")["len"])}


def test_staged_with_explicit_stage_count(tmp_path):
    df = frame(n_problems=12, k=1)
    out, _ = run(df, tmp_path, order="staged", stages=4)
    sizes = out.group_by("curriculum_stage").len().sort("curriculum_stage")["len"].to_list()
    assert sizes == [3, 3, 3, 3]
    mx = out.group_by("curriculum_stage").agg(pl.col("difficulty").max(), pl.col("difficulty").min().alias("lo")).sort("curriculum_stage")
    assert all(a < b for a, b in zip(mx["difficulty"][:-1], mx["lo"][1:]))


def test_interleaved_follows_the_ratio(tmp_path):
    df = frame(n_problems=60, k=1)  # 20 per bucket
    out, _ = run(df, tmp_path, order="interleaved", ratio={"easy": 2, "medium": 1, "hard": 1})
    first = out.head(20)["difficulty_bucket"].to_list()
    assert first.count("easy") == 10 and first.count("medium") == 5 and first.count("hard") == 5
    out2, _ = run(df, tmp_path, order="interleaved", ratio=[2, 1, 1])
    assert out2["sample_id"].to_list() == out["sample_id"].to_list()
    assert set(out["curriculum_stage"]) == {1}


def test_bad_configs_and_missing_columns(tmp_path):
    with pytest.raises(pydantic.ValidationError):
        CurriculumConfig(order="sideways")
    with pytest.raises(pydantic.ValidationError):
        CurriculumConfig(order="easy_to_hard", ratio=[1, 2])
    with pytest.raises(pydantic.ValidationError):
        CurriculumConfig(order="interleaved", ratio=[0, 0])
    with pytest.raises(RecipeError, match="no weight for bucket"):
        run(frame(), tmp_path, order="interleaved", ratio={"easy": 1})
    with pytest.raises(RecipeError, match="3 buckets"):
        run(frame(), tmp_path, order="interleaved", ratio=[1, 1])
    with pytest.raises(RecipeError, match="difficulty stage"):
        run(frame().drop("difficulty"), tmp_path)
    out, _ = run(frame().drop("difficulty", "difficulty_bucket"), tmp_path, order="random")
    assert out.height == 24


def test_empty_frame(tmp_path):
    out, _ = run(frame().clear(), tmp_path)
    assert out.height == 0 and {"curriculum_rank", "curriculum_stage"} <= set(out.columns)
