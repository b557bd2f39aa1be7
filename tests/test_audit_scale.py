"""Issue 18 (scale): the audit stage under the shard contract (per-shard measures, a narrow global step)
and the version's audit report over a LazyFrame of parquet files (bounded memory, same report)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_audit import _body, _clean, _frame

from curate.audit import AuditConfig, audit_frame, write_report
from curate.columns import ROW_ID
from curate.stages.audit import AuditStage
from curate.stages.base import Context

_TEXT = ("reasoning", "answer_text", "problem")


def _rows() -> pl.DataFrame:
    """The planted-flag frame plus rows of a second problem family, with difficulty columns; ids as the
    runner gives them (``__rid``: position in the sources' order)."""
    df = _frame()
    extra = pl.DataFrame([{**_clean(400 + i), "problem_id": f"q{i % 5}",
                           "reasoning": _body(400 + i, 30 + i) + f" so \\boxed{{{400 + i}}}"} for i in range(25)])
    df = pl.concat([df, extra], how="diagonal_relaxed")
    df = df.with_columns(
        pl.col("difficulty_bucket").fill_null("medium"),
        (pl.int_range(pl.len()) % 5 / 5).alias("difficulty"),
        (1 - pl.int_range(pl.len()) % 5 / 5).alias("pass_rate"),
    )
    return df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_ID))


def test_audit_stage_sharded_map_then_narrow_run_equals_whole(tmp_path: Path, monkeypatch) -> None:
    df = _rows()
    stage = AuditStage(AuditConfig())
    whole_ctx = Context.for_test(tmp_path)
    whole = stage.run(df, whole_ctx)
    assert whole["flags"].list.contains("length_outlier").any()  # the frame-wide length reference matters

    # phase 1 per problem-disjoint shard (any order), phase 2 on the narrow columns of every row
    shard = pl.col("problem_id").hash(seed=1) % 3
    parts = [stage.map_shard(df.filter(shard == k), Context.for_test(tmp_path)) for k in (2, 0, 1)]
    mapped = pl.concat(parts)
    cols = stage.reads([c for c in mapped.columns if c != ROW_ID])
    assert cols is not None and not set(cols) & set(_TEXT), cols
    assert all(mapped[c].dtype != pl.Utf8 for c in cols if c.startswith("__audit")), "measures hold no text"

    def boom(*a, **k):
        raise AssertionError("run() re-measured a frame that carries the measures")

    monkeypatch.setattr("curate.audit.flags.measure", boom)
    ctx = Context.for_test(tmp_path)
    got = stage.run(mapped.select(cols + [ROW_ID]), ctx)
    assert got.height == df.height and ROW_ID in got.columns
    assert not [c for c in got.columns if c.startswith("__audit")], got.columns
    joined = (df.drop([c for c in got.columns if c != ROW_ID], strict=False)
              .join(got, on=ROW_ID, how="left").sort(ROW_ID).select(whole.columns))
    assert_frame_equal(joined, whole)
    assert ctx.stats == whole_ctx.stats


def test_audit_stage_reads_all_columns_without_the_measures(tmp_path: Path) -> None:
    stage = AuditStage(AuditConfig())
    assert stage.reads(list(_rows().columns)) is None  # no map phase ran: run() measures itself
    empty = stage.map_shard(_rows().clear(), Context.for_test(tmp_path))
    assert empty.height == 0 and any(c.startswith("__audit") for c in empty.columns)


def _write_parts(df: pl.DataFrame, d: Path, n: int = 3) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    step = -(-df.height // n)
    files = []
    for i in range(n):
        p = d / f"part-{i:05d}.parquet"
        df.slice(i * step, step).write_parquet(p, row_group_size=5)
        files.append(p)
    return files


@pytest.mark.parametrize("variant", ["raw", "audited", "no_problem_id"])
def test_write_report_lazy_parquet_equals_dataframe(tmp_path: Path, monkeypatch, variant: str) -> None:
    from curate.audit import frames

    df = _rows().drop(ROW_ID)
    if variant == "audited":
        df = audit_frame(df, AuditConfig())
    if variant == "no_problem_id":
        df = df.drop("problem_id")
    rejected = pl.concat([
        pl.DataFrame([{**_clean(300), "reasoning": "  ", "dropped_by": "difficulty", "drop_reason": "incorrect_trace"},
                      {**_clean(301), "dropped_by": "dedup", "drop_reason": "near_duplicate"}]),
        _frame().with_columns(pl.lit("verify").alias("dropped_by"), pl.lit("wrong").alias("drop_reason")),
    ], how="diagonal_relaxed")
    manifest = {"name": "demo", "version": "v2"}
    cfg = AuditConfig(examples_per_flag=3)
    want = write_report(tmp_path / "df", df, rejected, manifest, cfg)
    assert want["rejected"]["audited_rows"] == rejected.height and sum(len(v) for v in want["examples"].values())

    monkeypatch.setattr(frames, "BATCH_ROWS", 7)  # flags computed batch by batch
    train = pl.scan_parquet(_write_parts(df, tmp_path / "train"))
    rej = pl.scan_parquet(_write_parts(rejected, tmp_path / "rejected", 2))
    got = write_report(tmp_path / "lazy", train, rej, manifest, cfg)
    assert got == want
    for f in ("summary.json", "report.html"):
        assert (tmp_path / "lazy" / "audit" / f).read_text() == (tmp_path / "df" / "audit" / f).read_text(), f
    assert json.loads((tmp_path / "lazy" / "audit" / "summary.json").read_text())["rows"] == df.height


def test_write_report_lazy_reads_text_only_of_example_rows(tmp_path: Path) -> None:
    """With flags stored, the report reads the traces of flagged rows only (the candidates for the worst
    examples): the text of every unflagged row replaced, the report is the same."""
    df = audit_frame(_rows().drop(ROW_ID), AuditConfig())
    cfg = AuditConfig(examples_per_flag=2)
    want = write_report(tmp_path / "df", df, None, None, cfg)
    assert (df["flags"].list.len() == 0).sum() > df.height // 2
    poisoned = df.with_columns(
        [pl.when(pl.col("flags").list.len() > 0).then(pl.col(c)).otherwise(pl.lit("POISON")).alias(c) for c in _TEXT]
    )
    got = write_report(tmp_path / "lazy", poisoned.lazy(), None, None, cfg)
    assert got == want
    assert (tmp_path / "lazy" / "audit" / "report.html").read_text() == (tmp_path / "df" / "audit" / "report.html").read_text()


def test_measures_belong_to_their_settings(tmp_path: Path) -> None:
    """A second audit stage with other thresholds measures again and never reads the first one's measures;
    no hidden measure column is returned."""
    df = _rows()
    first = AuditStage(AuditConfig())
    other = AuditStage(AuditConfig(tail_chars=500, repeat_min_count=3))
    mapped = first.map_shard(df, Context.for_test(tmp_path))
    assert other.reads(mapped.columns) is None
    want = other.run(df, Context.for_test(tmp_path))
    got = other.run(other.map_shard(mapped, Context.for_test(tmp_path)), Context.for_test(tmp_path))
    assert_frame_equal(got, want)
    assert not [c for c in got.columns if c.startswith("__audit")]


def test_audit_planned_on_shards_equals_whole_and_plans_over_token_counts_only(tmp_path: Path) -> None:
    """The runner's path (issue 18): map_shard, then per shard only the token counts go to ``plan`` (one
    integer per row, no frame of every row), and each shard is flagged with the frame-wide reference."""
    from support.planned import run_planned

    df = _rows()
    stage = AuditStage(AuditConfig())
    whole_ctx = Context.for_test(tmp_path)
    whole = stage.run(df, whole_ctx)
    shard = pl.col("problem_id").hash(seed=1) % 3
    parts = [stage.map_shard(df.filter(shard == k), Context.for_test(tmp_path)) for k in (2, 0, 1)]
    got, stats, sums = run_planned(stage, parts, lambda: Context.for_test(tmp_path))
    assert all(s.ndim == 1 and s.dtype.kind in "iu" for s in sums)  # token counts, nothing else
    assert not [c for c in got.columns if c.startswith("__")  and c != ROW_ID]
    joined = (df.drop([c for c in got.columns if c != ROW_ID], strict=False)
              .join(got, on=ROW_ID, how="left").sort(ROW_ID).select(whole.columns))
    assert_frame_equal(joined, whole)
    assert stats == whole_ctx.stats
    assert stats["flag_counts"]["length_outlier"] > 0


def test_rejected_flags_are_tallied_batch_by_batch_as_over_every_row(tmp_path: Path, monkeypatch) -> None:
    """The rejected split's flags: measured batch by batch, spilled, flagged with the length reference of
    every row, counted (no column of every row held): the counts of flagging the whole frame at once."""
    from curate.audit import frames
    from curate.audit.frames import audited, flag_tallies
    from curate.audit.summary import flag_counts

    rejected = pl.concat([
        _rows().drop(ROW_ID).with_columns(pl.lit("verify").alias("dropped_by"), pl.lit("wrong").alias("drop_reason")),
        pl.DataFrame([{**_clean(300), "reasoning": None, "answer_text": None, "dropped_by": "dedup",
                       "drop_reason": "near_duplicate"}]),
        _frame().with_columns(pl.lit("difficulty").alias("dropped_by"), pl.lit("incorrect_trace").alias("drop_reason")),
    ], how="diagonal_relaxed")
    cfg = AuditConfig()
    where = pl.col("reasoning").is_not_null() | pl.col("answer_text").is_not_null()
    cols = ["dropped_by", "drop_reason"]
    whole = audited(rejected, cfg, cols, recompute=True, where=where)  # every row at once
    assert whole["flags"].list.contains("length_outlier").any()
    key = pl.concat_str([pl.col(c).fill_null("") for c in cols], separator=" / ")
    want_by = {k: {f: int(g["flags"].list.contains(f).sum()) for f in cfg.enabled()}
               for (k,), g in whole.with_columns(key.alias("_k")).group_by("_k", maintain_order=True)}
    monkeypatch.setattr(frames, "BATCH_ROWS", 6)
    lazy = pl.scan_parquet(_write_parts(rejected, tmp_path / "rej", 3))
    got = flag_tallies(lazy, cfg, cols, where=where)
    assert got["rows"] == whole.height == rejected.height - 1
    assert got["flagged"] == int((whole["flags"].list.len() > 0).sum())
    assert {k: v for k, v in got["counts"].items() if v} == {k: v for k, v in flag_counts(whole, cfg.enabled()).items() if v}
    assert got["by"] == want_by
