"""Aggregates of an audited frame: flag counts, length/reflection statistics, per source and per
difficulty bucket, histograms, the funnel and contamination tables from a manifest. Everything
here is JSON-able: it is ``summary.json`` and what the HTML report draws."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from .config import ALL_FLAGS, AuditConfig


def _f(x: Any, nd: int = 4) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, nd)


def _dist(x: np.ndarray) -> dict[str, float | None]:
    if len(x) == 0:
        return {"n": 0, "mean": None, "p10": None, "p50": None, "p90": None, "p99": None, "max": None}
    q = np.percentile(x, [10, 50, 90, 99])
    return {"n": int(len(x)), "mean": _f(x.mean(), 2), "p10": _f(q[0], 2), "p50": _f(q[1], 2),
            "p90": _f(q[2], 2), "p99": _f(q[3], 2), "max": _f(x.max(), 2)}


def correct_expr(df: pl.DataFrame) -> pl.Expr | None:
    """Per-row correctness: the ``correct`` column, else ``verdict == 'correct'``, else None."""
    if "correct" in df.columns:
        return pl.col("correct").cast(pl.Boolean, strict=False)
    if "verdict" in df.columns:
        return pl.when(pl.col("verdict").is_null()).then(None).otherwise(pl.col("verdict") == "correct")
    return None


def flag_counts(df: pl.DataFrame, flags: tuple[str, ...]) -> dict[str, int]:
    if df.height == 0 or "flags" not in df.columns:
        return {f: 0 for f in flags}
    vc = df.select(pl.col("flags").explode().drop_nulls().value_counts(sort=True)).unnest("flags")
    return ordered_counts(dict(zip(vc["flags"].to_list(), vc["count"].to_list())), flags)


def ordered_counts(got: dict[str, int], flags: Sequence[str]) -> dict[str, int]:
    """Counts per flag: every one of ``flags`` in its order (0 when absent), then any other seen, sorted."""
    names = list(flags) + sorted(k for k in got if k not in flags)
    return {f: int(got.get(f, 0)) for f in names}


_BUCKET_ORDER = ("very_easy", "easy", "medium", "hard", "very_hard", "all") + tuple(f"level_{i}" for i in range(1, 101))


def group_table(df: pl.DataFrame, key: str, flags: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows, correct rate, token and reflection statistics and per-flag rates for each value of key."""
    if key not in df.columns or df.height == 0:
        return []
    ce = correct_expr(df)
    aggs = [
        pl.len().alias("rows"),
        pl.col("reasoning_tokens").mean().alias("tokens_mean"),
        pl.col("reasoning_tokens").median().alias("tokens_p50"),
        pl.col("reflections_per_1k").mean().alias("reflections_per_1k"),
        (pl.col("flags").list.len() > 0).mean().alias("flagged_rate"),
    ]
    if ce is not None:
        aggs.append(ce.cast(pl.Float64).mean().alias("correct_rate"))
    aggs += [pl.col("flags").list.contains(f).sum().alias(f"flag:{f}") for f in flags]
    if key == "difficulty_bucket" and "difficulty" in df.columns:
        aggs.append(pl.col("difficulty").cast(pl.Float64, strict=False).mean().alias("_order"))
    g = df.group_by(pl.col(key).cast(pl.Utf8).fill_null("(none)").alias(key)).agg(aggs)
    if key == "difficulty_bucket":  # easy -> hard: by mean difficulty, else by the known label order
        rank = {b: i for i, b in enumerate(_BUCKET_ORDER)}
        g = g.with_columns(pl.col(key).replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_rank"))
        g = g.sort([c for c in ("_order", "_rank") if c in g.columns] + [key], nulls_last=True)
    else:
        g = g.sort(key)
    out = []
    for r in g.iter_rows(named=True):
        row = {key: r[key], "rows": int(r["rows"]), "correct_rate": _f(r.get("correct_rate")),
               "tokens_mean": _f(r["tokens_mean"], 1), "tokens_p50": _f(r["tokens_p50"], 1),
               "reflections_per_1k": _f(r["reflections_per_1k"], 3), "flagged_rate": _f(r["flagged_rate"]),
               "flags": {f: int(r[f"flag:{f}"]) for f in flags if r[f"flag:{f}"]}}
        out.append(row)
    return out


def _hist(x: np.ndarray, edges: np.ndarray) -> list[int]:
    if len(x) == 0:
        return [0] * (len(edges) - 1)
    return np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)[0].astype(int).tolist()


def length_histogram(df: pl.DataFrame, bins: int = 40) -> dict[str, Any]:
    tok = df["reasoning_tokens"].to_numpy().astype(np.float64) if df.height else np.zeros(0)
    hi = float(np.percentile(tok, 99.5)) if len(tok) else 1.0
    edges = np.linspace(0.0, max(hi, 1.0), bins + 1)
    out: dict[str, Any] = {"edges": [round(float(e), 1) for e in edges], "all": _hist(tok, edges),
                           "note": "values above the last edge are counted in the last bin"}
    ce = correct_expr(df)
    if ce is not None and df.height:
        c = df.select(ce.alias("c"))["c"]
        out["correct"] = _hist(tok[(c == True).fill_null(False).to_numpy()], edges)  # noqa: E712
        out["incorrect"] = _hist(tok[(c == False).fill_null(False).to_numpy()], edges)  # noqa: E712
        # shares of each group per bin: the (usually few) incorrect rows are not a flat line next to
        # the correct ones
        out["density"] = {k: [x / max(1, sum(out[k])) for x in out[k]] for k in ("correct", "incorrect")}
    return out


def problem_difficulty(df: pl.DataFrame) -> dict[str, Any] | None:
    """Per-problem pass rate (column ``pass_rate``, else the mean of ``correct`` per problem_id) and
    ``difficulty`` histograms over 10 bins of [0, 1]."""
    if df.height == 0:
        return None
    key = next((k for k in ("problem_id", "__problem_key", "problem") if k in df.columns), None)
    cols: dict[str, pl.Expr] = {}
    if "pass_rate" in df.columns:
        cols["pass_rate"] = pl.col("pass_rate").cast(pl.Float64, strict=False).first()
    elif key is not None and correct_expr(df) is not None:
        cols["pass_rate"] = correct_expr(df).cast(pl.Float64).mean()
    if "difficulty" in df.columns:
        cols["difficulty"] = pl.col("difficulty").cast(pl.Float64, strict=False).first()
    if not cols:
        return None
    per = df.group_by(key).agg(**cols) if key else df.select(**{k: pl.col(k) for k in cols})
    edges = np.linspace(0.0, 1.0, 11)
    out: dict[str, Any] = {"edges": [round(float(e), 2) for e in edges], "problems": per.height}
    for k in cols:
        v = per[k].drop_nulls().to_numpy()
        out[k] = _hist(v, edges)
        out[f"{k}_mean"] = _f(math.fsum(v.tolist()) / len(v)) if len(v) else None  # exact: groups come in any order
    return out


def manifest_tables(manifest: dict | None) -> tuple[list[dict], dict[str, Any]]:
    """(funnel, contamination by benchmark) from a manifest, tolerant of missing pieces."""
    if not manifest:
        return [], {}
    funnel = []
    for st in manifest.get("funnel") or []:
        if not isinstance(st, dict):
            continue
        funnel.append({"stage": str(st.get("stage", "?")), "rows_in": st.get("rows_in"),
                       "rows_out": st.get("rows_out"), "dropped": dict(st.get("dropped") or {}),
                       "seconds": _f(st.get("seconds"), 2)})
    contam: dict[str, Any] = {}
    stages = manifest.get("stages") or []
    if isinstance(stages, dict):
        stages = [dict(v, stage=k) if isinstance(v, dict) else {} for k, v in stages.items()]
    for st in stages:
        stats = (st or {}).get("stats") or {}
        for bench, row in (stats.get("contamination") or {}).items():
            if isinstance(row, dict):
                contam[str(bench)] = {"checked": row.get("checked"), "contaminated": row.get("contaminated"),
                                      "method_counts": dict(row.get("method_counts") or {}),
                                      "examples": list(row.get("examples") or [])[:20]}
    return funnel, contam


def rejected_table(rejected: pl.DataFrame | pl.LazyFrame | None, cfg: AuditConfig | None = None) -> dict[str, Any]:
    """Rows of the rejected split by stage / reason; with traces in it, their flags too (what the
    curation threw away is audited as well: a filter that drops good traces shows here). A LazyFrame
    is read in batches (narrow columns kept; see :mod:`curate.audit.frames`)."""
    from .frames import columns, flag_tallies, height

    n = 0 if rejected is None else height(rejected)
    if rejected is None or n == 0:
        return {"rows": 0, "by_reason": {}}
    out: dict[str, Any] = {"rows": n, "by_reason": {}}
    have = columns(rejected)
    cols = [c for c in ("dropped_by", "drop_reason") if c in have]
    if cols:
        label = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("None") for c in cols], separator=" / ")
        vc = (rejected.lazy().select(label.alias("_k")).group_by("_k").len()
              .sort(["len", "_k"], descending=[True, False]).collect())
        out["by_reason"] = {k: int(v) for k, v in vc.iter_rows()}
    if cfg is not None and "reasoning" in have and "answer_text" in have:
        t = flag_tallies(rejected, cfg, cols, where=pl.col("reasoning").is_not_null() | pl.col("answer_text").is_not_null())
        if t is not None:
            enabled = cfg.enabled()
            out["audited_rows"] = t["rows"]
            out["rows_flagged"] = t["flagged"]
            out["flag_counts"] = {f: c for f, c in ordered_counts(t["counts"], enabled).items() if c}
            if cols:
                out["flags_by_reason"] = {k: {f: n for f in enabled if (n := g.get(f, 0))} for k, g in t["by"].items()}
    return out


def summarize(df: pl.DataFrame, cfg: AuditConfig, *, rejected: pl.DataFrame | pl.LazyFrame | None = None,
              manifest: dict | None = None) -> dict[str, Any]:
    """The summary dict (``summary.json``) of an audited frame."""
    flags = cfg.enabled()
    tok = df["reasoning_tokens"].to_numpy().astype(np.float64) if df.height else np.zeros(0)
    refl = df["reflections_per_1k"].to_numpy().astype(np.float64) if df.height else np.zeros(0)
    counts = flag_counts(df, flags)
    ce = correct_expr(df)
    tokens_by: dict[str, Any] = {}
    correct_rate = None
    if ce is not None and df.height:
        c = df.select(ce.alias("c"))["c"]
        correct_rate = _f(c.cast(pl.Float64).mean())
        tokens_by = {"correct": _dist(tok[(c == True).fill_null(False).to_numpy()]),  # noqa: E712
                     "incorrect": _dist(tok[(c == False).fill_null(False).to_numpy()])}  # noqa: E712
    funnel, contam = manifest_tables(manifest)
    n = df.height
    return {
        "rows": n,
        "rows_flagged": int((df["flags"].list.len() > 0).sum()) if n else 0,
        "correct_rate": correct_rate,
        "flag_counts": {f: c for f, c in counts.items()},
        "reasoning_tokens": _dist(tok),
        "token_count_method": f"tokenizer:{cfg.tokenizer}" if cfg.tokenizer else "approx-regex",
        "flags": {f: {"count": c, "rate": _f(c / n) if n else 0.0} for f, c in counts.items()},
        "reasoning_tokens_by_correct": tokens_by,
        "reflections_per_1k": _dist(refl),
        "by_source": group_table(df, "source", flags),
        "by_difficulty": group_table(df, "difficulty_bucket", flags),
        "length_histogram": length_histogram(df),
        "difficulty_histogram": problem_difficulty(df),
        "rejected": rejected_table(rejected, cfg),
        "funnel": funnel,
        "contamination": contam,
        "thresholds": cfg.model_dump(exclude={"label", "type", "reflection_markers"}),
        "reflection_markers": list(cfg.reflection_markers),
        "version": (manifest or {}).get("version"),
        "name": (manifest or {}).get("name"),
    }


__all__ = ["summarize", "flag_counts", "group_table", "correct_expr", "ALL_FLAGS"]
