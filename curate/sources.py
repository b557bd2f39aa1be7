"""Problem sources: local files (jsonl/json/parquet/csv, globs), HF hub datasets and presets, field
mapping, gold-answer extraction, seeded mixing; and a ``traces`` source for datasets that already hold
teacher outputs (each trace becomes a sample row, so curation and audits run without a teacher).

Every source yields a polars frame with the problem columns of DESIGN.md:
``problem_id, problem, gold_answer, source, source_index, meta`` (meta: JSON text), plus the sample
columns for ``traces``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import columns
from .errors import SourceError
from .progress import Ticker
from .readers import (
    estimate_file_rows,
    file_format,
    file_schema,
    fingerprint_files,
    iter_file,
    read_file,
    read_hub,
    relaxed_schema,
)
from .readers import expand_paths as _expand
from .source_text import (  # noqa: F401 - re-exported: the text helpers of the sources
    detect_trace_format,
    extract_gold,
    format_warnings,
    gsm8k_answer,
    last_boxed,
    normalize_problem,
    problem_id,
    split_plain,
    split_think,
    trace_format,
)

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


# ----------------------------------------------------------------------------- opening a source

#: The columns (and dtypes) of a traces source's rows: the problem columns, then the sample columns.
TRACE_SCHEMA: dict[str, pl.DataType] = {
    **columns.PROBLEM_SCHEMA,
    **{k: v for k, v in columns.SAMPLE_SCHEMA.items() if k not in columns.PROBLEM_SCHEMA},
}
_DETECT_ROWS = 2000  # the trace format is detected on the first rows of a source
_EMPTY_PROBLEM = pl.col("problem").is_null() | (pl.col("problem").str.strip_chars() == "")


def _column(cols: list[str], cfg: _Base, target: str, where: str, required: bool = True) -> str | None:
    col = cfg.fields.get(target, target)
    if col in cols:
        return col
    if required or target in cfg.fields:
        raise SourceError(f"{where}: field '{col}' (for {target}) not found; columns are: {', '.join(cols[:20])}")
    return None


@dataclass
class OpenSource:
    """One source ready to read: local files are streamed chunk by chunk (``files`` with their whole-file
    ``schemas``); hub datasets, presets, json files and ``shuffle: true`` are read whole (``frame``)."""

    cfg: Any
    name: str
    where: str
    inputs: list[dict]
    files: list[Path] = field(default_factory=list)
    schemas: list[Any] = field(default_factory=list)
    frame: pl.DataFrame | None = None
    info: dict = field(default_factory=dict)
    per_row: float = 1.0
    """Rows per raw row (traces per row of a list trace field; set by :func:`estimate_rows`)."""


def open_source(cfg: Any, base_dir: Path, chunk_rows: int | None = None) -> OpenSource:
    """Resolve a source (preset fields, files, fingerprints). ``chunk_rows`` None reads it whole."""
    cfg = _preset_fields(cfg)
    if isinstance(cfg, PresetSource):
        from .presets import get_preset

        pre = get_preset(cfg.preset)
        df, fp = read_hub(pre.path, pre.config, pre.split, pre.revision)
        inputs = [{"hub": pre.path, "config": pre.config, "split": pre.split, "revision": pre.revision, "fingerprint": fp}]
        return OpenSource(cfg, cfg.name or pre.name, f"preset {pre.name} ({pre.path})", inputs, frame=df)
    if isinstance(cfg, HubSource) or (isinstance(cfg, TracesSource) and cfg.hub):
        path = cfg.path if isinstance(cfg.path, str) else cfg.path[0]
        df, fp = read_hub(path, cfg.config, cfg.split, cfg.revision)
        inputs = [{"hub": path, "config": cfg.config, "split": cfg.split, "revision": cfg.revision, "fingerprint": fp}]
        return OpenSource(cfg, cfg.name or path, f"hub {path}", inputs, frame=df)
    files = _expand(cfg.path, base_dir, f"sources[{cfg.kind}]")
    pattern = cfg.path if isinstance(cfg.path, str) else ", ".join(cfg.path)
    where = str(files[0]) if len(files) == 1 else pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
    src = OpenSource(cfg, cfg.name or files[0].stem, where, fingerprint_files(files))
    if chunk_rows and not cfg.shuffle and all(file_format(f, cfg.format) != "json" for f in files):
        src.files, src.schemas = files, [file_schema(f, cfg.format, chunk_rows) for f in files]
    else:
        frames = [read_file(f, cfg.format) for f in files]
        src.frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return src


def _limit(cfg: Any, limit: int | None) -> int | None:
    return min(x for x in (cfg.limit, limit) if x is not None) if (cfg.limit or limit) else None


def raw_chunks(src: OpenSource, limit: int | None, chunk_rows: int | None) -> Iterator[pl.DataFrame]:
    """The source's raw rows with ``source_index``, after ``shuffle`` and the limit, in chunks."""
    lim = _limit(src.cfg, limit)
    if src.frame is not None:
        df, src.frame = src.frame.with_row_index("source_index"), None
        if src.cfg.shuffle:
            df = df.sample(fraction=1.0, shuffle=True, seed=src.cfg.seed)
        df = df.head(lim) if lim is not None else df
        step = chunk_rows or max(df.height, 1)
        yield from (df.slice(off, step) for off in range(0, df.height, step))
        return
    union = pl.DataFrame(schema=relaxed_schema(src.schemas))
    done = 0
    for f, schema in zip(src.files, src.schemas):
        for chunk in iter_file(f, src.cfg.format, chunk_rows or 1 << 62, schema):
            if len(src.files) > 1:
                chunk = pl.concat([union, chunk], how="diagonal_relaxed")
            chunk = chunk.head(lim - done) if lim is not None else chunk
            yield chunk.with_row_index("source_index", done)
            done += chunk.height
            if lim is not None and done >= lim:
                return


def estimate_rows(src: OpenSource, limit: int | None) -> int:
    """A cheap guess of the rows the source gives (traces: x the mean number of traces per row of its
    first rows); used to size shards only."""
    if src.frame is not None:
        n, head = src.frame.height, src.frame.head(1000)
    else:
        n = sum(estimate_file_rows(f, src.cfg.format) for f in src.files)
        head = next(iter_file(src.files[0], src.cfg.format, 1000, src.schemas[0]), pl.DataFrame())
    lim = _limit(src.cfg, limit)
    n = min(n, lim) if lim is not None else n
    col = getattr(src.cfg, "trace_field", None)
    if col in head.columns and isinstance(head.schema[col], pl.List) and head.height:
        src.per_row = max(1.0, float(head[col].list.len().mean() or 0))
    return round(n * src.per_row)


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


# ----------------------------------------------------------------------------- one source's rows


def _problems(raw: pl.DataFrame, cfg: Any, name: str, pcol: str, gcol: str | None) -> pl.DataFrame:
    """The problem columns of a chunk of raw rows."""
    golds = [extract_gold(g, cfg.answer_extractor) for g in raw[gcol].to_list()] if gcol else [None] * raw.height
    metas = (
        [json.dumps(r, ensure_ascii=False, default=str) for r in raw.select(cfg.meta_fields).to_dicts()]
        if cfg.meta_fields
        else ["{}"] * raw.height
    )
    out = pl.DataFrame(
        {
            "problem": raw[pcol].cast(pl.Utf8, strict=False),
            "gold_answer": pl.Series(golds, dtype=pl.Utf8),
            "source": pl.Series([name] * raw.height, dtype=pl.Utf8),
            "source_index": raw["source_index"].cast(pl.Int64),
            "meta": pl.Series(metas, dtype=pl.Utf8),
        }
    )
    pid = pl.col("problem").map_elements(problem_id, return_dtype=pl.Utf8)
    return out.with_columns(pid.alias("problem_id")).select(PROBLEM_COLUMNS)


def _detect(raw: pl.DataFrame, cfg: TracesSource, where: str) -> tuple[str, list[str]]:
    """The trace format to split with (from the first rows) and warnings where it disagrees with the data."""
    fmt = trace_format(raw.columns, cfg, where)
    traces = raw[cfg.trace_field].head(_DETECT_ROWS).to_list()
    sample = [str(x) for tr in traces for x in (tr if isinstance(tr, list) else [tr]) if x is not None]
    found, share = detect_trace_format(sample)
    return format_warnings(fmt, found, share, cfg.trace_field)


def _leading(chunks: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """The chunks, the first ones merged until it holds ``rows`` rows (what the format detection reads)."""
    head: list[pl.DataFrame] = []
    for chunk in chunks:
        if head is not None:
            head.append(chunk)
            if sum(c.height for c in head) < rows:
                continue
            chunk, head = pl.concat(head), None  # type: ignore[assignment]
        yield chunk
    if head:
        yield pl.concat(head)


def source_rows(src: OpenSource, limit: int | None, chunk_rows: int | None, counters: dict[str, int]) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(good rows, rejected rows) of one source, chunk by chunk; ``src.info`` is set at the end.
    ``counters`` numbers the traces of each problem (shared by the sources of one run; the traces of
    rejected rows are numbered per source)."""
    cfg, where = src.cfg, src.where
    detected: tuple[str, list[str]] | None = None
    pcol: str | None = None
    good, empty_counters = 0, {}  # type: ignore[var-annotated]
    tick = Ticker(None, f"{where}: traces") if isinstance(cfg, TracesSource) else None
    raw_rows = max(1, int(chunk_rows / src.per_row)) if chunk_rows else None  # a chunk: chunk_rows rows out
    for raw in _leading(raw_chunks(src, limit, raw_rows), _DETECT_ROWS):
        if pcol is None:
            pcol, gcol = _column(raw.columns, cfg, "problem", where), _column(raw.columns, cfg, "gold_answer", where, False)
            for m in cfg.meta_fields:
                if m not in raw.columns:
                    raise SourceError(f"{where}: meta field '{m}' not found; columns are: {', '.join(raw.columns[:20])}")
            detected = _detect(raw, cfg, where) if isinstance(cfg, TracesSource) else None
        out = _problems(raw, cfg, src.name, pcol, gcol)  # type: ignore[arg-type]
        if detected is not None:
            out = _traces(out, raw, cfg, detected[0], (counters, empty_counters), tick)
        bad_mask = _EMPTY_PROBLEM
        bad = out.filter(bad_mask)
        if bad.height and cfg.on_bad_row == "fail":
            raise SourceError(f"{where}: row {bad['source_index'][0]}: field '{pcol}' is empty (on_bad_row: fail)")
        good += out.height - bad.height
        yield out.filter(~bad_mask), bad.with_columns(pl.lit("empty_problem").alias("drop_reason"))
    if pcol is None:
        raise SourceError(f"{where}: no rows")
    if tick is not None:
        tick.close()
    src.info = {"name": src.name, "kind": cfg.kind, "where": where, "inputs": src.inputs, "rows": good}
    if detected is not None:
        src.info["trace_format"] = detected[0]
        if detected[1]:
            src.info["warnings"] = [f"{src.name}: {w}" for w in detected[1]]


def _split(text: str, fmt: str, rsn: Any) -> tuple[str, str]:
    """(reasoning, answer_text) of one trace in the given format."""
    if fmt == "column":
        return ("" if rsn is None else str(rsn)).strip(), text.strip()
    return split_plain(text) if fmt == "plain" else split_think(text)


def _traces(problems: pl.DataFrame, raw: pl.DataFrame, cfg: TracesSource, fmt: str,
            counters: tuple[dict, dict], tick: Any) -> pl.DataFrame:
    """One sample row per trace. A problem's traces are numbered by ``counters[0]`` (over all sources)
    or, for an empty problem (a rejected row), by ``counters[1]`` (per source)."""
    traces = raw[cfg.trace_field].to_list()
    reasonings = raw[cfg.reasoning_field].to_list() if fmt == "column" else [None] * raw.height
    teachers = raw[cfg.teacher_field].to_list() if cfg.teacher_field else [cfg.teacher] * raw.height
    finishes = raw[cfg.finish_reason_field].to_list() if cfg.finish_reason_field else [None] * raw.height
    empty = problems.select(_EMPTY_PROBLEM).to_series().to_list()
    cols: dict[str, list] = {k: [] for k in ("i", "sample_id", "sample_index", "teacher", "reasoning", "answer_text", "finish_reason")}
    for i, (pid, tr, teacher, fin, rsn) in enumerate(zip(problems["problem_id"].to_list(), traces, teachers, finishes, reasonings)):
        tick.advance(1)
        count = counters[1] if empty[i] else counters[0]
        items = tr if isinstance(tr, list) else [tr]
        rsn_items = rsn if isinstance(rsn, list) else [rsn] * len(items)
        for j, text in enumerate(items):
            text = "" if text is None else str(text)
            reasoning, answer = _split(text, fmt, rsn_items[j] if j < len(rsn_items) else None)
            k = count.get(pid, 0)
            count[pid] = k + 1
            fin_reason = fin if isinstance(fin, str) else None
            if fin_reason is None:
                fin_reason = "length" if ("<think>" in text and "</think>" not in text) else "stop"
            for key, v in (("i", i), ("sample_id", columns.sample_id(columns.trace_origin(pid), k)), ("sample_index", k),
                           ("teacher", str(teacher)), ("reasoning", reasoning), ("answer_text", answer), ("finish_reason", fin_reason)):
                cols[key].append(v)
    prompt = pl.concat_list(pl.struct(pl.lit("user").alias("role"), pl.col("problem").fill_null("").alias("content")))
    out = problems.select(pl.all().gather(pl.Series(cols.pop("i"), dtype=pl.UInt32))).with_columns(
        *(pl.Series(k, v, dtype=TRACE_SCHEMA[k]) for k, v in cols.items()), prompt.alias("prompt")
    )
    return out.select(pl.col(k).cast(t) if k in out.columns else pl.lit(None, dtype=t).alias(k) for k, t in TRACE_SCHEMA.items())


def load_one(cfg: Any, base_dir: Path, limit: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Load one source. Returns (rows, bad rows with drop_reason, info for the manifest)."""
    src = open_source(cfg, base_dir)
    parts = list(source_rows(src, limit, None, {}))
    return pl.concat([g for g, _ in parts]), pl.concat([b for _, b in parts]), src.info


# ----------------------------------------------------------------------------- several sources


class SourceRows:
    """The rows of several sources, chunk by chunk (``chunk_rows`` None: a chunk per source), in the order
    of :func:`load_sources`, every chunk with all of its columns (``schema``). Across chunks and sources it
    keeps the first occurrence of a problem row (repeats go to ``bad()`` as duplicate_problem; trace rows
    are exempt: rows of one problem are its traces) and numbers the traces of a problem once over all
    sources. ``infos`` fills as sources end."""

    def __init__(self, configs: list[Any], base_dir: Path, limit: int | None = None, chunk_rows: int | None = None):
        self.configs, self.base_dir, self.limit, self.chunk_rows = list(configs), base_dir, limit, chunk_rows
        traces = any(isinstance(c, TracesSource) for c in self.configs)
        self.schema: dict[str, pl.DataType] = dict(TRACE_SCHEMA if traces else columns.PROBLEM_SCHEMA)
        self.infos: list[dict] = []
        self._open: dict[int, OpenSource] = {}
        self._rejected: list[pl.DataFrame] = []
        self._repeated: list[pl.DataFrame] = []
        self._seen: set[str] = set()
        self._counters: dict[str, int] = {}

    def source(self, i: int) -> OpenSource:
        if i not in self._open:
            self._open[i] = open_source(self.configs[i], self.base_dir, self.chunk_rows)
        return self._open[i]

    def estimate(self) -> int:
        """A cheap guess of the number of rows (opens every source)."""
        return sum(estimate_rows(self.source(i), self.limit) for i in range(len(self.configs)))

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for i in range(len(self.configs)):
            src = self.source(i)
            for good, bad in source_rows(src, self.limit, self.chunk_rows, self._counters):
                if bad.height:
                    self._rejected.append(bad)
                good = good.select(  # every chunk with all the columns of the rows (as a diagonal concat gives)
                    pl.col(c) if c in good.columns else pl.lit(None, dtype=t).alias(c) for c, t in self.schema.items()
                )
                yield self._first_problems(good)
            self.infos.append(src.info)
            del self._open[i]

    def _first_problems(self, rows: pl.DataFrame) -> pl.DataFrame:
        is_problem = rows["sample_id"].is_null() if "sample_id" in rows.columns else pl.Series([True] * rows.height)
        seen = self._seen

        def repeat(pid: str | None, problem: bool) -> bool:
            if not problem or pid is None:
                return False
            if pid in seen:
                return True
            seen.add(pid)
            return False

        dup = pl.Series([repeat(p, q) for p, q in zip(rows["problem_id"].to_list(), is_problem.to_list())], dtype=pl.Boolean)
        if dup.any():
            self._repeated.append(rows.filter(dup).with_columns(pl.lit("duplicate_problem").alias("drop_reason")))
            rows = rows.filter(~dup)
        return rows

    def bad(self) -> pl.DataFrame:
        """The rejected rows so far: empty problems per source, then repeated problems."""
        bads = self._rejected + self._repeated
        return pl.concat(bads, how="diagonal_relaxed") if bads else pl.DataFrame()


def load_sources(
    configs: list[Any], base_dir: Path, limit: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """Load and mix several sources (per-source limits, seeded sampling). Returns (rows, bad, infos)."""
    stream = SourceRows(configs, base_dir, limit)
    chunks = list(stream)
    rows = pl.concat(chunks) if len(chunks) > 1 else chunks[0]
    return rows, stream.bad(), stream.infos


def load_source(cfg: Any, ctx: Any) -> pl.DataFrame:
    """One source config -> problem frame (bad rows dropped). ``ctx`` is a stages.base.Context."""
    df, _, _ = load_one(cfg, Path(ctx.base_dir), ctx.limit)
    return df
