"""Problem sources: local files (jsonl/json/parquet/csv, globs), HF hub datasets and presets, field
mapping, gold-answer extraction, seeded mixing; and a ``traces`` source for datasets that already hold
teacher outputs (each trace becomes a sample row, so curation and audits run without a teacher).

Every source yields a polars frame with the problem columns of DESIGN.md:
``problem_id, problem, gold_answer, source, source_index, meta`` (meta: JSON text), plus the sample
columns for ``traces``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import columns
from .errors import SourceError
from .readers import expand_paths as _expand  # noqa: F401
from .readers import fingerprint_files, read_file, read_hub

PROBLEM_COLUMNS = list(columns.PROBLEM_COLUMNS)  # the data contract: curate.columns

#: What ``fields:`` may map (target -> column in the data); anything else is a recipe error.
FIELD_TARGETS = ("problem", "gold_answer")
_FIELD_HINTS = {
    "answer": "gold_answer", "gold": "gold_answer", "solution": "gold_answer", "question": "problem",
    "prompt": "problem",
    "reasoning": "the reasoning of a traces source comes from trace_field (+ trace_format), or reasoning_field "
                 "with trace_format: column",
    "trace": "a traces source names its trace column with trace_field",
    "generation": "a traces source names its trace column with trace_field",
    "correct": "sources do not read grader labels: a verify stage grades every trace against gold_answer",
    "is_correct": "sources do not read grader labels: a verify stage grades every trace against gold_answer",
    "teacher": "use teacher: NAME or teacher_field: COLUMN",
    "finish_reason": "use finish_reason_field: COLUMN",
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    """Value of the ``source`` column (defaults to the file stem / hub id / preset name)."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Column mapping target -> column in the data, e.g. ``{problem: question, gold_answer: answer}``."""
    answer_extractor: Literal["field", "gsm8k", "boxed"] = "field"
    """How the gold answer is read from its column: as is, after ``####`` (GSM8K), or the last \\boxed{}."""
    meta_fields: list[str] = Field(default_factory=list)
    """Extra columns kept inside ``meta`` (e.g. subject, level)."""
    limit: int | None = Field(default=None, ge=1)
    """Keep at most this many rows from this source (seeded sample when ``shuffle``)."""
    shuffle: bool = False
    seed: int = 0
    on_bad_row: Literal["reject", "fail"] = "reject"
    """A row without a problem text: keep it in the rejected split with a reason, or stop the run."""

    @field_validator("fields")
    @classmethod
    def _known_targets(cls, v: dict[str, str]) -> dict[str, str]:
        """``fields`` maps a target (problem, gold_answer) to a column of the data; a key that is not a
        target (a reversed map, ``reasoning``, ``correct``) would be ignored: it is an error."""
        for key in v:
            if key not in FIELD_TARGETS:
                hint = _FIELD_HINTS.get(key.lower())
                if hint in FIELD_TARGETS:
                    hint = f"did you mean {hint}: {v[key]}? (the key is the target, the value the data's column)"
                raise ValueError(
                    f"fields: unknown target '{key}' (targets: {', '.join(FIELD_TARGETS)}; written "
                    f"target: column_in_the_data){'; ' + hint if hint else ''}"
                )
        return v


class FileSource(_Base):
    kind: Literal["file"] = "file"
    path: str | list[str]
    """A path or glob (or a list of them), relative to the recipe file."""
    format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"


class HubSource(_Base):
    kind: Literal["hub"] = "hub"
    path: str
    """Hub dataset id (``openai/gsm8k``) or anything ``datasets.load_dataset`` accepts."""
    config: str | None = None
    split: str = "train"
    revision: str | None = None


class PresetSource(_Base):
    kind: Literal["preset"] = "preset"
    preset: str
    """gsm8k | math500 | aime24 | aime25 (see curate.presets)."""


class TracesSource(_Base):
    """Existing teacher outputs: one row per trace, or a list column of traces per problem."""

    kind: Literal["traces"] = "traces"
    path: str | list[str]
    format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"
    hub: bool = False
    """Treat ``path`` as a hub dataset id (with ``split``/``config``/``revision``)."""
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    trace_field: str = "generation"
    """Column with the trace text, or a list of traces (e.g. OpenR1-Math's ``generations``)."""
    teacher: str = "unknown"
    """Teacher name written to the ``teacher`` column (or a column name via ``teacher_field``)."""
    teacher_field: str | None = None
    finish_reason_field: str | None = None
    trace_format: Literal["auto", "think", "plain", "column"] = "auto"
    """How a trace splits into ``reasoning`` and ``answer_text``: ``think`` (R1 style,
    ``<think>...</think>`` then the answer), ``plain`` (chain of thought without tags: the reasoning
    is everything before the final-answer paragraph, the one holding the last ``\\boxed{}``),
    ``column`` (reasoning in ``reasoning_field``, the answer in ``trace_field``). ``auto``: column when
    ``reasoning_field`` is set, think when the traces carry ``</think>``, else plain. A declared
    format that does not fit the data gives a warning under the funnel."""
    reasoning_field: str | None = None
    """Column holding the reasoning (``trace_format: column``)."""


SourceConfig = Annotated[
    Union[FileSource, HubSource, PresetSource, TracesSource], Field(discriminator="kind")
]


# ----------------------------------------------------------------------------- text helpers

_WS = re.compile(r"\s+")


def normalize_problem(text: str) -> str:
    """NFKC, lower case, collapsed whitespace: the basis of the stable ``problem_id``."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def problem_id(text: str) -> str:
    return hashlib.sha256(normalize_problem(text).encode("utf-8")).hexdigest()[:16]


def last_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with nested braces, or None."""
    if not text:
        return None
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        # "\boxed 5" form
        m = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[idx:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced


def gsm8k_answer(text: str | None) -> str | None:
    if not text or "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def extract_gold(text: Any, extractor: str) -> str | None:
    if text is None:
        return None
    s = str(text)
    if extractor == "gsm8k":
        return gsm8k_answer(s)
    if extractor == "boxed":
        return last_boxed(s)
    return s.strip()


_PARAGRAPH = re.compile(r"\n\s*\n")


def split_plain(text: str) -> tuple[str, str]:
    """(reasoning, answer_text) of a plain chain of thought: the answer is the paragraph holding the
    last ``\\boxed``/``\\fbox`` and what follows it (anything written after the answer stays
    visible to the audit), else the last paragraph; the reasoning is everything before it."""
    t = (text or "").strip()
    at = max(t.rfind("\\boxed"), t.rfind("\\fbox"))
    if at < 0:
        at = len(t)
    cut = 0
    for m in _PARAGRAPH.finditer(t, 0, at):
        cut = m.end()
    if cut == 0 and at == len(t):  # no box: the last paragraph is the answer
        for m in _PARAGRAPH.finditer(t):
            cut = m.end()
    return t[:cut].strip(), t[cut:].strip()


def detect_trace_format(texts: list[str]) -> tuple[str, float]:
    """('think' | 'plain', share of texts with ``</think>``)."""
    texts = [t for t in texts if t]
    if not texts:
        return "plain", 0.0
    share = sum("</think>" in t or "<think>" in t for t in texts) / len(texts)
    return ("think" if share >= 0.5 else "plain"), share


def split_think(text: str) -> tuple[str, str]:
    """Split a completion into (reasoning, answer_text) at ``</think>`` (``curate.traces.split``)."""
    from .traces import split

    s = split(text)
    return s.reasoning, s.answer


# ----------------------------------------------------------------------------- readers


# ----------------------------------------------------------------------------- loading


def _column(df: pl.DataFrame, cfg: _Base, target: str, where: str, required: bool = True) -> str | None:
    col = cfg.fields.get(target, target)
    if col in df.columns:
        return col
    if required or target in cfg.fields:
        raise SourceError(
            f"{where}: field '{col}' (for {target}) not found; columns are: {', '.join(df.columns[:20])}"
        )
    return None


def _raw_frame(cfg: Any, base_dir: Path) -> tuple[pl.DataFrame, str, str, list[dict]]:
    """Read the source's raw rows. Returns (frame, display name, where-label, input fingerprints)."""
    if isinstance(cfg, PresetSource):
        from .presets import get_preset

        pre = get_preset(cfg.preset)
        df, fp = read_hub(pre.path, pre.config, pre.split, pre.revision)
        return df, cfg.name or pre.name, f"preset {pre.name} ({pre.path})", [
            {"hub": pre.path, "config": pre.config, "split": pre.split, "revision": pre.revision,
             "fingerprint": fp}
        ]
    if isinstance(cfg, HubSource) or (isinstance(cfg, TracesSource) and cfg.hub):
        path = cfg.path if isinstance(cfg.path, str) else cfg.path[0]
        df, fp = read_hub(path, cfg.config, cfg.split, cfg.revision)
        return df, cfg.name or path, f"hub {path}", [
            {"hub": path, "config": cfg.config, "split": cfg.split, "revision": cfg.revision,
             "fingerprint": fp}
        ]
    files = _expand(cfg.path, base_dir, f"sources[{cfg.kind}]")
    frames = []
    for f in files:
        frames.append(read_file(f, cfg.format))
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    name = cfg.name or files[0].stem
    return df, name, str(files[0]) if len(files) == 1 else f"{files[0].parent}/{cfg.path}", fingerprint_files(files)


def _preset_fields(cfg: Any) -> Any:
    """Apply a preset's field mapping unless the user gave one."""
    if not isinstance(cfg, PresetSource):
        return cfg
    from .presets import get_preset

    pre = get_preset(cfg.preset)
    upd: dict[str, Any] = {}
    if not cfg.fields:
        upd["fields"] = {"problem": pre.problem_field, "gold_answer": pre.answer_field}
    if cfg.answer_extractor == "field" and pre.answer_extractor != "field":
        upd["answer_extractor"] = pre.answer_extractor
    if not cfg.meta_fields and pre.extra_fields:
        upd["meta_fields"] = list(pre.extra_fields)
    return cfg.model_copy(update=upd)


def load_one(cfg: Any, base_dir: Path, limit: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Load one source. Returns (rows, bad rows with drop_reason, info for the manifest)."""
    cfg = _preset_fields(cfg)
    df, name, where, fps = _raw_frame(cfg, base_dir)
    if df.height == 0:
        raise SourceError(f"{where}: no rows")
    pcol = _column(df, cfg, "problem", where)
    gcol = _column(df, cfg, "gold_answer", where, required=False)
    for m in cfg.meta_fields:
        if m not in df.columns:
            raise SourceError(f"{where}: meta field '{m}' not found; columns are: {', '.join(df.columns[:20])}")
    df = df.with_row_index("source_index")
    if cfg.shuffle:
        df = df.sample(fraction=1.0, shuffle=True, seed=cfg.seed)
    lim = min(x for x in (cfg.limit, limit) if x is not None) if (cfg.limit or limit) else None
    if lim is not None:
        df = df.head(lim)

    problems = df[pcol].cast(pl.Utf8, strict=False)
    golds = (
        [extract_gold(g, cfg.answer_extractor) for g in df[gcol].to_list()] if gcol else [None] * df.height
    )
    metas = (
        [json.dumps(r, ensure_ascii=False, default=str) for r in df.select(cfg.meta_fields).to_dicts()]
        if cfg.meta_fields
        else ["{}"] * df.height
    )
    out = pl.DataFrame(
        {
            "problem": problems,
            "gold_answer": pl.Series(golds, dtype=pl.Utf8),
            "source": [name] * df.height,
            "source_index": df["source_index"].cast(pl.Int64),
            "meta": pl.Series(metas, dtype=pl.Utf8),
        }
    )
    out = out.with_columns(
        pl.col("problem").map_elements(problem_id, return_dtype=pl.Utf8).alias("problem_id")
    ).select(PROBLEM_COLUMNS)
    detected: tuple[str, list[str]] | None = None
    if isinstance(cfg, TracesSource):
        out, detected = _traces(out, df, cfg, where)
    bad_mask = pl.col("problem").is_null() | (pl.col("problem").str.strip_chars() == "")
    bad = out.filter(bad_mask)
    if bad.height and cfg.on_bad_row == "fail":
        idx = bad["source_index"][0]
        raise SourceError(f"{where}: row {idx}: field '{pcol}' is empty (on_bad_row: fail)")
    bad = bad.with_columns(pl.lit("empty_problem").alias("drop_reason"))
    info = {"name": name, "kind": cfg.kind, "where": where, "inputs": fps, "rows": out.height - bad.height}
    if detected is not None:
        fmt, warnings = detected
        info["trace_format"] = fmt
        if warnings:
            info["warnings"] = [f"{name}: {w}" for w in warnings]
    return out.filter(~bad_mask), bad, info


def _trace_format(raw: pl.DataFrame, cfg: TracesSource, where: str) -> str:
    """The named fields exist; the trace format asked for (``column`` when reasoning_field is set)."""
    if cfg.trace_field not in raw.columns:
        raise SourceError(
            f"{where}: field '{cfg.trace_field}' (trace_field) not found; columns are: {', '.join(raw.columns[:20])}"
        )
    if cfg.teacher_field and cfg.teacher_field not in raw.columns:
        raise SourceError(f"{where}: field '{cfg.teacher_field}' (teacher_field) not found")
    if cfg.finish_reason_field and cfg.finish_reason_field not in raw.columns:
        raise SourceError(f"{where}: field '{cfg.finish_reason_field}' (finish_reason_field) not found")
    fmt = cfg.trace_format
    if fmt == "column" or cfg.reasoning_field:
        if not cfg.reasoning_field:
            raise SourceError(f"{where}: trace_format: column needs reasoning_field (the column with the reasoning)")
        if cfg.reasoning_field not in raw.columns:
            raise SourceError(
                f"{where}: field '{cfg.reasoning_field}' (reasoning_field) not found; columns are: {', '.join(raw.columns[:20])}"
            )
        if fmt not in ("auto", "column"):
            raise SourceError(f"{where}: reasoning_field is set, so trace_format must be column (got {fmt})")
        fmt = "column"
    return fmt


def _format_warnings(fmt: str, found: str, share: float, trace_field: str) -> tuple[str, list[str]]:
    """The trace format to use (``auto``: the one found) and warnings where the one asked for disagrees with the data."""
    warnings: list[str] = []
    if fmt == "auto":
        fmt = found
    elif fmt == "think" and found == "plain":
        warnings.append(
            f"trace_format: think, but {100 * (1 - share):.0f}% of the traces have no <think> tags: their reasoning "
            "is empty and everything lands in answer_text; they look like plain chain of thought (trace_format: plain)"
        )
    elif fmt == "plain" and found == "think":
        warnings.append(
            f"trace_format: plain, but {100 * share:.0f}% of the traces carry <think> tags (trace_format: think)"
        )
    elif fmt == "column" and share >= 0.5:
        warnings.append(f"trace_format: column, but {100 * share:.0f}% of the '{trace_field}' values carry <think> tags")
    return fmt, warnings


def _traces(problems: pl.DataFrame, raw: pl.DataFrame, cfg: TracesSource, where: str) -> tuple[pl.DataFrame, tuple[str, list[str]]]:
    """One sample row per trace; also (the trace format used, warnings)."""
    fmt = _trace_format(raw, cfg, where)
    traces = raw[cfg.trace_field].to_list()
    reasonings = raw[cfg.reasoning_field].to_list() if fmt == "column" else [None] * raw.height
    teachers = raw[cfg.teacher_field].to_list() if cfg.teacher_field else [cfg.teacher] * raw.height
    finishes = raw[cfg.finish_reason_field].to_list() if cfg.finish_reason_field else [None] * raw.height
    sample = [str(x) for tr in traces[:2000] for x in (tr if isinstance(tr, list) else [tr]) if x is not None]
    found, share = detect_trace_format(sample)
    fmt, warnings = _format_warnings(fmt, found, share, cfg.trace_field)
    rows: list[dict] = []
    counters: dict[str, int] = {}
    from .progress import Ticker

    tick = Ticker(raw.height, f"{where}: traces")  # plain progress lines on long reads
    for prob, tr, teacher, fin, rsn in zip(problems.to_dicts(), traces, teachers, finishes, reasonings):
        tick.advance(1)
        items = tr if isinstance(tr, list) else [tr]
        rsn_items = rsn if isinstance(rsn, list) else [rsn] * len(items)
        for j, text in enumerate(items):
            text = "" if text is None else str(text)
            if fmt == "column":
                r = rsn_items[j] if j < len(rsn_items) else None
                reasoning, answer = ("" if r is None else str(r)).strip(), text.strip()
            elif fmt == "plain":
                reasoning, answer = split_plain(text)
            else:
                reasoning, answer = split_think(text)
            k = counters.get(prob["problem_id"], 0)
            counters[prob["problem_id"]] = k + 1
            fin_reason = fin if isinstance(fin, str) else None
            if fin_reason is None:
                fin_reason = "length" if ("<think>" in text and "</think>" not in text) else "stop"
            rows.append(
                {
                    **prob,
                    "sample_id": columns.sample_id(columns.trace_origin(prob["problem_id"]), k),
                    "sample_index": k,
                    "teacher": str(teacher),
                    "prompt": [{"role": "user", "content": prob["problem"] or ""}],
                    "reasoning": reasoning,
                    "answer_text": answer,
                    "finish_reason": fin_reason,
                    "prompt_tokens": None,
                    "completion_tokens": None,
                    "request_hash": None,
                }
            )
    tick.close()
    from .sampling import SAMPLE_SCHEMA

    schema = {**dict(problems.schema), **{k: v for k, v in SAMPLE_SCHEMA.items() if k not in problems.schema}}
    for r in rows:
        r.setdefault("error", None)
    return pl.DataFrame(rows, schema=schema), (fmt, warnings)


def load_sources(
    configs: list[Any], base_dir: Path, limit: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """Load and mix several sources (per-source limits, seeded sampling). Returns (rows, bad, infos)."""
    frames, bads, infos = [], [], []
    for cfg in configs:
        df, bad, info = load_one(cfg, base_dir, limit)
        frames.append(df)
        if bad.height:
            bads.append(bad)
        infos.append(info)
    rows = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    # The same problem twice (within or across problem sources) would be sampled and paid twice:
    # keep its first occurrence. Trace rows are exempt: rows of one problem are its traces.
    is_problem = pl.col("sample_id").is_null() if "sample_id" in rows.columns else pl.lit(True)
    dup = is_problem & ~pl.struct("problem_id", is_problem.alias("_p")).is_first_distinct()
    repeated = rows.filter(dup)
    if repeated.height:
        bads.append(repeated.with_columns(pl.lit("duplicate_problem").alias("drop_reason")))
        rows = rows.filter(~dup)
    if "sample_id" in rows.columns and len(frames) > 1:
        # traces of one problem from several sources: number them once over all sources
        idx = pl.int_range(pl.len()).over("problem_id", "_is_trace")
        rows = (
            rows.with_columns(pl.col("sample_id").is_not_null().alias("_is_trace"))
            .with_columns(
                pl.when(pl.col("_is_trace")).then(idx).otherwise(pl.col("sample_index")).alias("sample_index")
            )
            .with_columns(
                pl.when(pl.col("_is_trace"))
                .then(
                    pl.struct("problem_id", "sample_index").map_elements(
                        lambda r: columns.sample_id(columns.trace_origin(r["problem_id"]), r["sample_index"]),
                        return_dtype=pl.Utf8,
                    )
                )
                .otherwise(pl.col("sample_id"))
                .alias("sample_id")
            )
            .drop("_is_trace")
        )
    bad = pl.concat(bads, how="diagonal_relaxed") if bads else pl.DataFrame()
    return rows, bad, infos


def load_source(cfg: Any, ctx: Any) -> pl.DataFrame:
    """One source config -> problem frame (bad rows dropped). ``ctx`` is a stages.base.Context."""
    df, _, _ = load_one(cfg, Path(ctx.base_dir), ctx.limit)
    return df
