"""``curate audit DATASET``: load a version folder, a parquet/jsonl/csv file, a local dataset folder
or a hub dataset id, map its columns onto the sample columns, and write the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import SourceError, first_line
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


def _read_parquets(files: list[Path], where: str) -> pl.DataFrame:
    try:
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    except Exception as e:  # noqa: BLE001 - arrow/polars parse errors
        raise SourceError(f"{where}: cannot read parquet: {first_line(e)}") from None


def _from_datasets(obj: Any, where: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(train, rejected) from a datasets Dataset or DatasetDict."""
    if hasattr(obj, "keys"):  # DatasetDict
        splits = list(obj.keys())
        if not splits:
            raise SourceError(f"{where}: the dataset has no splits")
        main = "train" if "train" in splits else splits[0]
        rej = obj["rejected"] if "rejected" in splits and main != "rejected" else None
        return _arrow(obj[main]), (_arrow(rej) if rej is not None else None)
    return _arrow(obj), None


def _arrow(ds: Any) -> pl.DataFrame:
    if hasattr(ds, "to_polars"):  # applies any indices mapping (select/shuffle)
        return ds.to_polars()
    return pl.from_arrow(ds.with_format("arrow")[:])  # type: ignore[return-value]


def load_target(target: str | Path) -> tuple[pl.DataFrame, pl.DataFrame | None, dict | None]:
    """(train, rejected or None, manifest or None) for a version dir, a file, a folder or a hub id."""
    p = Path(str(target)).expanduser()
    where = str(target)
    if p.is_dir():
        man = p / "manifest.json"
        manifest = None
        if man.is_file():
            try:
                manifest = json.loads(man.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise SourceError(f"{man}:{e.lineno}: malformed JSON ({e.msg})") from None
        data = p / "data"
        train_files = sorted(data.glob("train-*.parquet")) if data.is_dir() else []
        if train_files:
            rej_files = sorted(data.glob("rejected-*.parquet"))
            rejected = _read_parquets(rej_files, where) if rej_files else None
            return _read_parquets(train_files, where), rejected, manifest
        if (p / "dataset_info.json").is_file() and (p / "state.json").is_file():
            import datasets

            return (*_from_datasets(datasets.load_from_disk(str(p)), where), manifest)
        files = sorted(p.glob("*.parquet")) or sorted((p / "data").glob("*.parquet") if data.is_dir() else [])
        if files:
            return _read_parquets(files, where), None, manifest
        return (*_load_hub(str(p), where), manifest)
    if p.is_file():
        from ..sources import read_file

        return read_file(p), None, None
    if p.suffix in (".parquet", ".jsonl", ".json", ".csv") or str(target).startswith((".", "/", "~")):
        raise SourceError(f"{where}: no such file or folder")
    return (*_load_hub(str(target), where), None)


def _load_hub(name: str, where: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    import datasets

    split = None
    if ":" in name and not Path(name).exists():
        name, split = name.rsplit(":", 1)
    try:
        obj = datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - network, missing repo, bad files
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise SourceError(f"{where}: cannot load dataset: {first}") from None
    return _from_datasets(obj, where)


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
