"""The report's input of any size: a DataFrame or a LazyFrame (``pl.scan_parquet`` over a version's split
files). Only narrow columns are collected for every row; traces are read in batches of ``BATCH_ROWS`` rows
(measured, then dropped) and, at the end, for the few rows the report shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import polars as pl

from .config import AuditConfig
from .flags import FLAG_INPUTS, MeasureKernel, audit_frame

Frame = pl.DataFrame | pl.LazyFrame
AUDIT_COLUMNS = ("flags", "reasoning_tokens", "reflections_per_1k")
TEXT = ("reasoning", "answer_text", "problem")
ROW = "__row"
PROBLEM_KEY = "__problem_key"
"""A 64-bit hash of ``problem`` standing in for it as the per-problem key when there is no problem_id."""
BATCH_ROWS = 20_000


def columns(f: Frame) -> list[str]:
    return f.columns if isinstance(f, pl.DataFrame) else f.collect_schema().names()


def height(f: Frame) -> int:
    return f.height if isinstance(f, pl.DataFrame) else int(f.select(pl.len()).collect().item())


def batches(f: Frame, cols: Sequence[str], rows: int | None = None) -> Iterator[pl.DataFrame]:
    """``cols`` plus ``__row`` (the row's position) in consecutive slices of ``rows`` rows, at least one
    (maybe empty); a LazyFrame over parquet reads only the row groups of each slice."""
    rows = rows or BATCH_ROWS
    if isinstance(f, pl.DataFrame):
        df = f.select(cols).with_row_index(ROW)  # zero-copy columns
        yield from (df.slice(off, rows) for off in range(0, max(df.height, 1), rows))
        return
    lf = f.select(cols)  # the row index is added after the slice: before it, it defeats slice pushdown
    for off in range(0, max(height(f), 1), rows):
        yield lf.slice(off, rows).collect().with_row_index(ROW, offset=off)


def map_rows(f: Frame, rows: Sequence[int], cols: Sequence[str],
             fn: Callable[[pl.DataFrame], pl.DataFrame]) -> list[pl.DataFrame]:
    """``fn`` over the given rows (``__row`` and those of ``cols`` the frame has), a slice of the frame
    at a time: only the slices holding a wanted row are read, and only one is in memory."""
    cols = [c for c in dict.fromkeys(cols) if c in columns(f)]
    want = pl.Series(sorted({int(r) for r in rows}), dtype=pl.UInt32)
    b, out = BATCH_ROWS, []
    starts = sorted({int(r) // b * b for r in want})
    for off in starts:
        if isinstance(f, pl.DataFrame):
            part = f.select(cols).slice(off, b)
        else:
            part = f.select(cols).slice(off, b).collect()
        part = part.with_row_index(ROW, offset=off).filter(pl.col(ROW).is_in(want.implode()))
        out.append(fn(part))
    return out


def _compact(df: pl.DataFrame) -> pl.DataFrame:
    """A copy of a few rows filtered out of a slice: polars' string views would otherwise keep the whole
    slice's text buffers alive (about 30 MB per slice of traces for a handful of rows)."""
    return pl.from_arrow(df.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]


def fetch_rows(f: Frame, rows: Sequence[int], cols: Sequence[str]) -> pl.DataFrame:
    """``__row`` and those of ``cols`` the frame has, for the given row positions (in row order); only
    the slices holding a wanted row are read."""
    parts = map_rows(f, rows, cols, _compact)
    keep = [c for c in dict.fromkeys(cols) if c in columns(f)]
    return pl.concat(parts) if parts else f.lazy().select(keep).clear().collect().with_row_index(ROW)


def measured_batches(f: Frame, cols: Sequence[str], where: pl.Expr | None,
                     kernel: MeasureKernel | None) -> Iterator[tuple[pl.DataFrame, pl.DataFrame | None]]:
    """:func:`batches` of ``cols`` (the rows ``where`` holds), each with its traces' measures by
    ``kernel`` (None without a kernel or for an empty batch)."""
    for b in batches(f, cols):
        if where is not None:
            b = b.filter(where)
        yield b, (kernel(b.drop(ROW)) if kernel is not None and b.height else None)


def audited(f: Frame, cfg: AuditConfig, keep: Sequence[str], *, recompute: bool = False,
            where: pl.Expr | None = None, problem_key: bool = False) -> pl.DataFrame:
    """The ``keep`` columns (those present), ``__row`` and the audit's ``flags``/``reasoning_tokens``/
    ``reflections_per_1k`` of every row (of the rows ``where`` holds), in row order. The stored
    audit columns are used unless ``recompute`` or absent; else the traces are measured batch by batch
    (only the measures kept) and flagged at the end with the whole frame's length reference: the same
    flags as :func:`audit_frame` on the whole frame. ``problem_key``: add ``__problem_key``."""
    have = columns(f)
    keep = [c for c in dict.fromkeys(keep) if c in have and c not in AUDIT_COLUMNS]
    stored = not recompute and all(c in have for c in AUDIT_COLUMNS)
    plain = keep + ([] if stored else [c for c in FLAG_INPUTS if c in have and c not in keep])
    extra = [c for c in AUDIT_COLUMNS] if stored else [c for c in TEXT if c in have and c not in plain]
    if problem_key and "problem" in have and "problem" not in plain + extra:
        extra.append("problem")
    parts: list[pl.DataFrame] = []
    measures: list[pl.DataFrame] = []
    for b, m in measured_batches(f, plain + extra, where, None if stored else MeasureKernel(cfg)):
        part = b.select(ROW, *plain, *([c for c in AUDIT_COLUMNS] if stored else []),
                        *([pl.col("problem").hash().alias(PROBLEM_KEY)] if problem_key and "problem" in have else []))
        parts.append(part)
        if m is not None:
            measures.append(m)
    base = pl.concat(parts)
    if stored:
        return base
    out = audit_frame(base, cfg, measured=pl.concat(measures) if measures else None)
    return out.select(ROW, *[c for c in out.columns if c in keep or c == PROBLEM_KEY], *AUDIT_COLUMNS)


def flag_tallies(f: Frame, cfg: AuditConfig, by: Sequence[str], where: pl.Expr | None = None) -> dict | None:
    """Flag counts of every row (that ``where`` holds) measured from its traces, without holding a column
    of every row: the traces are measured batch by batch and the measures spilled to a temporary parquet
    file per batch; the length reference is taken over all rows' token counts (one integer per row); the
    batches are then flagged with it and counted. The same counts as :func:`audited` with ``recompute``.
    Returns None when no row qualifies, else ``rows``, ``flagged``, ``counts`` (flag -> rows, every flag
    seen) and ``by`` (the ``by`` columns' joined value -> flag -> rows, in order of first appearance)."""
    import shutil
    import tempfile
    from pathlib import Path

    import numpy as np

    from .flags import length_stats

    have = columns(f)
    by = [c for c in by if c in have]
    plain = [*by, *[c for c in FLAG_INPUTS if c in have and c not in by]]
    text = [c for c in TEXT if c in have and c not in plain]
    tmp = Path(tempfile.mkdtemp(prefix="curate-audit-"))
    try:
        files, tokens = [], []
        for k, (b, m) in enumerate(measured_batches(f, plain + text, where, MeasureKernel(cfg))):
            if m is None:
                continue
            path = tmp / f"{k:06d}.parquet"
            pl.concat([b.select(plain), m], how="horizontal").write_parquet(path)
            files.append((path, m.columns))
            tokens.append(m["reasoning_tokens"].to_numpy())
        if not files:
            return None
        tok = np.concatenate(tokens)
        ref = length_stats(tok) if len(tok) >= cfg.length_min_rows else None
        del tokens
        counts: dict[str, int] = {}
        groups: dict[str, dict[str, int]] = {}
        flagged = 0
        for path, mcols in files:
            part = pl.read_parquet(path)
            out = audit_frame(part.select(plain), cfg, measured=part.select(mcols), length_ref=ref)
            flagged += int((out["flags"].list.len() > 0).sum())
            for name, n in out.select(pl.col("flags").explode().drop_nulls().value_counts()).unnest("flags").iter_rows():
                counts[name] = counts.get(name, 0) + int(n)
            if by:
                key = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in by], separator=" / ")
                for (kv,), g in out.with_columns(key.alias("_k")).group_by("_k", maintain_order=True):
                    into = groups.setdefault(kv, {})
                    for fl in cfg.enabled():
                        into[fl] = into.get(fl, 0) + int(g["flags"].list.contains(fl).sum())
        return {"rows": len(tok), "flagged": flagged, "counts": counts, "by": groups}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
