"""The splits of a version behind ``curate view``: the fixed column lists, the ``Split`` and
``Query`` records, and discovery of a version folder, parquet file or JSONL file with each split
registered as a DuckDB view over its shards (``read_parquet`` with the row number)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SourceError, first_line
from ..home import curate_home  # a leaf module: no polars before the first page

try:  # the [view] extra
    import duckdb
except ImportError:  # pragma: no cover - Store() raises the install hint
    duckdb = None  # type: ignore[assignment]

#: filters by value: query parameter -> column
FILTER_COLUMNS: dict[str, str] = {
    "verdict": "verdict",
    "drop_reason": "drop_reason",
    "dropped_by": "dropped_by",
    "bucket": "difficulty_bucket",
    "stage": "curriculum_stage",
    "source": "source",
    "teacher": "teacher",
    "finish": "finish_reason",
    "problem_id": "problem_id",
    "cluster_id": "cluster_id",
}
#: facets offered as drop-downs (problem_id / cluster_id are reached through links)
FACETS = ("verdict", "drop_reason", "dropped_by", "bucket", "stage", "source", "teacher", "finish")
#: small columns the index keeps (when the split has them)
INDEX_COLUMNS = ("sample_id", "problem_id", "sample_index", "gold_answer", "pred_answer", "verdict", "correct",
                 "flags", "drop_reason", "dropped_by", "difficulty_bucket", "difficulty", "pass_rate",
                 "curriculum_stage", "curriculum_rank", "source", "source_index", "teacher", "finish_reason",
                 "reasoning_tokens", "completion_tokens", "cluster_id", "duplicate_of")
#: columns shown in the table, in this order, when present
TABLE_COLUMNS = ("problem_id", "sample_index", "problem", "gold_answer", "pred_answer", "verdict", "flags",
                 "difficulty_bucket", "pass_rate", "curriculum_stage", "reasoning_chars", "teacher", "source",
                 "drop_reason", "dropped_by")
SORTABLE = ("problem_id", "sample_index", "verdict", "difficulty", "difficulty_bucket", "pass_rate",
            "curriculum_rank", "curriculum_stage", "reasoning_chars", "reasoning_tokens", "completion_tokens",
            "teacher", "source", "drop_reason", "dropped_by", "pred_answer", "n_flags")
SEARCH_COLUMNS = ("problem", "reasoning", "answer_text")
PREVIEW_CHARS = 120
INDEX_FORMAT = 2
_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _spill_dir() -> str:
    """DuckDB's spill folder for this process (its default is ``.tmp`` in the working directory)."""
    return str(Path(tempfile.gettempdir()) / f"curate-view-duckdb-{os.getpid()}")


def _q(name: str) -> str:
    """A quoted SQL identifier (names come from the schema or fixed lists; quotes doubled anyway)."""
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def fts_query(text: str) -> str | None:
    """The user's search text as one FTS5 phrase: its words in that order, case-insensitive; a
    trailing ``*`` makes the last word a prefix (``prime fac*``). None when there is no word."""
    prefix = text.rstrip().endswith("*")
    words = text.rstrip().rstrip("*")
    if not re.search(r"\w", words):
        return None
    return '"' + words.replace('"', '""') + '"' + (" *" if prefix else "")


@dataclass
class Split:
    name: str
    files: list[Path]
    columns: dict[str, str] = field(default_factory=dict)  # name -> duckdb type of the shards
    offsets: list[int] = field(default_factory=list)  # rid of each shard's first row
    rows: int = 0
    index_ready: threading.Event = field(default_factory=threading.Event)
    index_error: str | None = None
    search_ready: threading.Event = field(default_factory=threading.Event)
    search_error: str | None = None
    search_progress: float = 0.0
    search_db: Path | None = None
    index_cols: set[str] = field(default_factory=set)
    flags_recomputed: bool = False  # the split has no flags column: curate view computed them

    def has(self, col: str) -> bool:
        return col in self.columns


@dataclass
class Query:
    """One table request, validated by the web layer."""

    split: str
    filters: dict[str, list[str]] = field(default_factory=dict)
    flag: str | None = None
    q: str | None = None
    len_min: int | None = None
    len_max: int | None = None
    correct: bool | None = None
    sort: str | None = None
    desc: bool = False
    page: int = 0
    per: int = 50

    def params(self, **change: Any) -> dict[str, Any]:
        """This query as URL parameters (for links), with ``change`` applied (None removes)."""
        out: dict[str, Any] = {"split": self.split, **{k: list(v) for k, v in self.filters.items()}}
        for k in ("flag", "q", "len_min", "len_max", "sort"):
            out[k] = getattr(self, k)
        out["correct"] = None if self.correct is None else ("1" if self.correct else "0")
        out["desc"] = "1" if self.desc else None
        out["page"] = self.page or None
        out["per"] = self.per if self.per != 50 else None
        out.update(change)
        return {k: v for k, v in out.items() if v is not None and v != "" and v != []}


@dataclass
class Discovered:
    """What a path holds: its splits, the manifest and audit summary of a version folder, and the
    temporary folder of a JSONL input's parquet copy (None otherwise)."""

    splits: dict[str, Split]
    manifest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tmp: tempfile.TemporaryDirectory | None = None


def discover(p: Path) -> Discovered:
    """The splits under ``p`` (a version folder, a parquet file or a JSONL file)."""
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    if p.is_dir():
        return _discover_folder(p)
    name = p.name.lower()
    if name.endswith(".parquet"):
        return Discovered({"train": Split("train", [p])})
    if name.endswith((".jsonl", ".ndjson", ".json")):
        tmp = tempfile.TemporaryDirectory(prefix="curate-view-")
        out = Path(tmp.name) / "train.parquet"
        con = duckdb.connect(":memory:", config={"memory_limit": "256MB", "temp_directory": _spill_dir()})
        try:
            con.execute(f"COPY (SELECT * FROM read_json_auto({_lit(str(p))}, format='newline_delimited')) "
                        f"TO {_lit(str(out))} (FORMAT parquet, ROW_GROUP_SIZE 20000)")
        except duckdb.Error as e:
            raise SourceError(f"{p}: cannot read JSONL ({first_line(e)})") from None
        finally:
            con.close()
        return Discovered({"train": Split("train", [out])}, tmp=tmp)
    raise SourceError(f"{p}: expected a version folder, a .parquet file or a .jsonl file")


def _discover_folder(p: Path) -> Discovered:
    data = p / "data" if (p / "data").is_dir() else p
    groups: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*.parquet")):
        m = _SHARD_RE.match(f.name)
        name = m.group("split") if m else (f.stem if _NAME_RE.match(f.stem) else "train")
        groups.setdefault(name, []).append(f)
    if not groups:
        raise SourceError(f"{p}: no parquet files (expected data/<split>-00000-of-0000N.parquet)")
    found = Discovered({name: Split(name, files) for name, files in groups.items()})
    for fname, attr in (("manifest.json", "manifest"), ("audit/summary.json", "summary")):
        f = p / fname
        if f.is_file():
            try:
                setattr(found, attr, json.loads(f.read_text()))
            except (OSError, ValueError) as e:
                raise SourceError(f"{f}: cannot read ({first_line(e)})") from None
    return found


def default_work_dir(manifest: dict[str, Any]) -> Path | None:
    name = manifest.get("name")
    return curate_home() / name if isinstance(name, str) and _NAME_RE.match(name) else None


def default_index_dir(splits: dict[str, Split]) -> Path:
    h = hashlib.sha256(json.dumps(INDEX_FORMAT).encode())
    for sp in sorted(splits.values(), key=lambda s: s.name):
        for f in sp.files:
            st = f.stat()
            h.update(f"{sp.name}\0{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return curate_home() / "view" / h.hexdigest()[:20]


def register(con: Any, sp: Split) -> None:
    """Create the view ``src_<split>`` over the split's shards and fill in its columns, row count
    and per-shard row offsets."""
    files = "[" + ", ".join(_lit(str(f)) for f in sp.files) + "]"
    try:
        meta = con.execute(f"SELECT file_name, sum(num_rows) FROM parquet_file_metadata({files}) GROUP BY 1").fetchall()
        src = f"read_parquet({files}, file_row_number=true, filename=true, union_by_name=true)"
        cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    except duckdb.Error as e:
        raise SourceError(f"{sp.files[0]}: cannot read parquet ({first_line(e)})") from None
    counts = {str(k): int(v) for k, v in meta}
    sp.offsets, total = [], 0
    for f in sp.files:
        sp.offsets.append(total)
        total += counts.get(str(f), 0)
    sp.rows = total
    sp.columns = {c[0]: c[1] for c in cols if c[0] not in ("filename", "file_row_number")}
    fileno = "CASE filename " + " ".join(f"WHEN {_lit(str(f))} THEN {i}" for i, f in enumerate(sp.files)) + " END"
    rid = "CASE filename " + " ".join(f"WHEN {_lit(str(f))} THEN {o}" for f, o in zip(sp.files, sp.offsets)) + " END"
    extra = [f"({fileno})::INTEGER AS _file", "file_row_number AS _row", f"({rid}) + file_row_number AS rid"]
    if sp.has("reasoning"):
        extra.append("length(reasoning) AS reasoning_chars")
    if sp.has("flags"):
        extra.append("coalesce(len(flags), 0) AS n_flags")
    if sp.has("problem"):
        extra.append(f"left(problem, {PREVIEW_CHARS}) AS problem_preview")
    con.execute(f"CREATE VIEW {_q('src_' + sp.name)} AS SELECT * EXCLUDE (filename, file_row_number), "
                f"{', '.join(extra)} FROM {src}")
    for c, t in (("_file", "INTEGER"), ("_row", "BIGINT"), ("rid", "BIGINT")):
        sp.columns[c] = t
    if sp.has("reasoning"):
        sp.columns["reasoning_chars"] = "BIGINT"
    if sp.has("flags"):
        sp.columns["n_flags"] = "BIGINT"
    if sp.has("problem"):
        sp.columns["problem_preview"] = "VARCHAR"
