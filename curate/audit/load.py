"""``curate audit DATASET``: load a version folder, a parquet/jsonl/csv file, a local dataset folder
or a hub dataset id, map its columns onto the sample columns, and write the report."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import SourceError
from ..readers import read_dataset as load_target  # the one reader (re-exported)
from .config import AuditConfig
from .report import write_report

#: mapping keys (what the audit reads) -> canonical column names
MAPPING_TARGETS: dict[str, str] = {
    "problem": "problem",
    "reasoning": "reasoning",
    "answer": "answer_text",
    "answer_text": "answer_text",
    "messages": "messages",
    "completion": "completion",
    "source": "source",
    "finish_reason": "finish_reason",
    "correct": "correct",
    "verdict": "verdict",
    "pred_answer": "pred_answer",
    "problem_id": "problem_id",
    "sample_id": "sample_id",
    "difficulty": "difficulty",
    "difficulty_bucket": "difficulty_bucket",
    "pass_rate": "pass_rate",
}


def split_completions(col: pl.Expr) -> dict[str, pl.Expr]:
    """reasoning / answer_text / think_status from completions ``<think>\\n...\\n</think>\\n\\n...``.

    ``</think>`` present: ok (``<think>`` may be prefilled by the chat template); only ``<think>``:
    unclosed (all reasoning, empty answer); no tags: missing (empty reasoning, all answer).
    """
    from ..traces import split_exprs

    return split_exprs(col)


def _message_content(df: pl.DataFrame, role: str, where: str) -> pl.Expr:
    dtype = df.schema["messages"]
    if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)
            and {"role", "content"} <= {f.name for f in dtype.inner.fields}):
        raise SourceError(f"{where}: column 'messages' must be a list of {{role, content}} (got {dtype})")
    return pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == role).struct.field("content").cast(pl.Utf8)
    ).list.last()


def apply_mapping(df: pl.DataFrame, mapping: dict[str, str] | None, where: str) -> pl.DataFrame:
    """Rename mapped columns to the canonical names and derive ``reasoning``/``answer_text``."""
    mapping = dict(mapping or {})
    ren: dict[str, str] = {}
    for key, col in mapping.items():
        if key not in MAPPING_TARGETS:
            raise SourceError(f"{where}: unknown mapping key '{key}' (known: {', '.join(MAPPING_TARGETS)})")
        if col not in df.columns:
            raise SourceError(f"{where}: column '{col}' (mapped to {key}) not found; columns: {', '.join(df.columns)}")
        ren[col] = MAPPING_TARGETS[key]
    if ren:
        clash = [c for c in ren.values() if c in df.columns and c not in ren]
        df = df.drop(clash).rename(ren)
    if "reasoning" not in df.columns:
        if "messages" in df.columns:
            cols = split_completions(_message_content(df, "assistant", where))
            if "problem" not in df.columns:
                cols["problem"] = _message_content(df, "user", where)
            df = df.with_columns(**cols)
        elif "completion" in df.columns and df.schema["completion"] == pl.Utf8:
            df = df.with_columns(**split_completions(pl.col("completion")))
        else:
            raise SourceError(
                f"{where}: column 'reasoning' not found (nor 'messages'/'completion'); columns: "
                f"{', '.join(df.columns)}; map one with --map reasoning=COLUMN"
            )
    if "think_status" in df.columns and df.height and (df["think_status"] == "missing").mean() >= 0.5:
        # mostly no <think> tags: plain chain of thought, split at the final-answer paragraph
        from ..sources import split_plain

        src = df["completion"] if "completion" in df.columns else df["answer_text"]
        parts = [split_plain(t) for t in src.fill_null("").to_list()]
        df = df.with_columns(
            pl.Series("reasoning", [p[0] for p in parts], dtype=pl.Utf8),
            pl.Series("answer_text", [p[1] for p in parts], dtype=pl.Utf8),
            pl.lit("plain").alias("think_status"),
        )
    if df.schema["reasoning"] != pl.Utf8:
        raise SourceError(f"{where}: column 'reasoning' must be text (got {df.schema['reasoning']})")
    return df


def audit_dataset(target: str | Path, out_dir: Path, mapping: dict[str, str] | None = None,
                  config: AuditConfig | None = None) -> dict:
    """Audit any dataset of traces: writes ``out_dir/audit/report.html`` + ``summary.json``."""
    cfg = config or AuditConfig()
    train, rejected, manifest = load_target(target)
    train = apply_mapping(train, mapping, str(target))
    train = train.drop([c for c in ("flags", "reasoning_tokens", "reflections_per_1k") if c in train.columns])
    return write_report(Path(out_dir), train, rejected, manifest, cfg)
