"""The data behind ``curate view``: DuckDB over the parquet shards where they lie.

Nothing is loaded whole. Each split is a DuckDB view over its shard files (``read_parquet`` with the
row number; a row's identity is ``(split, shard, row)``, and ``rid`` numbers the rows of a split).
Table pages, filters, sorts and counts are SQL with bound parameters; column names come from fixed
lists, never from the request.

A background thread builds, per split:

1. an in-memory *index*: the filterable columns and a short problem preview (no traces; about 100
   bytes a row). Until it is ready, queries read the shards directly (slower, same answers);
2. a *search index* (SQLite FTS5, contentless, on disk under ``<CURATE_HOME>/view/<fingerprint>/``)
   over problem, reasoning and answer, and the reasoning length of every row. Built once per data
   fingerprint (paths, sizes, mtimes) and reused by later runs. Until it is ready, a search is a
   substring scan of the shards (``ILIKE``; slow at scale) and the length of a row is computed
   from its reasoning; pages say which mode answered.

A JSONL input is copied once to a temporary parquet file by DuckDB (streamed, not loaded whole).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
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


class Store:
    """A version folder, parquet file or JSONL file, queried in place."""

    def __init__(self, path: Path, *, work_dir: Path | None = None, index_dir: Path | None = None,
                 build_index: bool = True, search_index: bool = True, threads: int | None = None,
                 memory_limit: str = "512MB", index_delay: float = 0.0):
        if duckdb is None:
            from ..errors import require

            require("duckdb", "view", "curate view")
        self.path = Path(path)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.manifest: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.splits: dict[str, Split] = {}
        self._discover()
        # spills go to the system temp folder, never to a `.tmp/` in whatever folder the server started in
        cfg: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": _spill_dir()}
        if threads:
            cfg["threads"] = threads
        self.con = duckdb.connect(":memory:", config=cfg)
        for sp in self.splits.values():
            self._register(sp)
        self.work_dir = work_dir if work_dir is not None else self._default_work_dir()
        self.index_dir = index_dir if index_dir is not None else self._default_index_dir()
        self._cache: dict[Any, Any] = {}
        self._cache_lock = threading.Lock()
        self._stop = threading.Event()
        self._search_enabled = search_index
        self._thread: threading.Thread | None = None
        self._go = threading.Event()
        if build_index:
            self._thread = threading.Thread(target=self._build, args=(index_delay,), name="curate-view-index",
                                            daemon=True)
            self._thread.start()
            if not index_delay:
                self._go.set()
        else:
            for sp in self.splits.values():
                sp.index_error = sp.search_error = "not built"
                sp.index_ready.set()
                sp.search_ready.set()

    # ------------------------------------------------------------------ discovery
    def _discover(self) -> None:
        p = self.path
        if not p.exists():
            raise SourceError(f"{p}: no such file or folder")
        if p.is_dir():
            data = p / "data" if (p / "data").is_dir() else p
            groups: dict[str, list[Path]] = {}
            for f in sorted(data.glob("*.parquet")):
                m = _SHARD_RE.match(f.name)
                name = m.group("split") if m else (f.stem if _NAME_RE.match(f.stem) else "train")
                groups.setdefault(name, []).append(f)
            if not groups:
                raise SourceError(f"{p}: no parquet files (expected data/<split>-00000-of-0000N.parquet)")
            self.splits = {name: Split(name, files) for name, files in groups.items()}
            for fname, attr in (("manifest.json", "manifest"), ("audit/summary.json", "summary")):
                f = p / fname
                if f.is_file():
                    try:
                        setattr(self, attr, json.loads(f.read_text()))
                    except (OSError, ValueError) as e:
                        raise SourceError(f"{f}: cannot read ({first_line(e)})") from None
            return
        name = p.name.lower()
        if name.endswith(".parquet"):
            self.splits["train"] = Split("train", [p])
        elif name.endswith((".jsonl", ".ndjson", ".json")):
            self._tmp = tempfile.TemporaryDirectory(prefix="curate-view-")
            out = Path(self._tmp.name) / "train.parquet"
            con = duckdb.connect(":memory:", config={"memory_limit": "256MB", "temp_directory": _spill_dir()})
            try:
                con.execute(f"COPY (SELECT * FROM read_json_auto({_lit(str(p))}, format='newline_delimited')) "
                            f"TO {_lit(str(out))} (FORMAT parquet, ROW_GROUP_SIZE 20000)")
            except duckdb.Error as e:
                raise SourceError(f"{p}: cannot read JSONL ({first_line(e)})") from None
            finally:
                con.close()
            self.splits["train"] = Split("train", [out])
        else:
            raise SourceError(f"{p}: expected a version folder, a .parquet file or a .jsonl file")

    def _default_work_dir(self) -> Path | None:
        name = self.manifest.get("name")
        return curate_home() / name if isinstance(name, str) and _NAME_RE.match(name) else None

    def _default_index_dir(self) -> Path:
        h = hashlib.sha256(json.dumps(INDEX_FORMAT).encode())
        for sp in sorted(self.splits.values(), key=lambda s: s.name):
            for f in sp.files:
                st = f.stat()
                h.update(f"{sp.name}\0{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return curate_home() / "view" / h.hexdigest()[:20]

    def _register(self, sp: Split) -> None:
        files = "[" + ", ".join(_lit(str(f)) for f in sp.files) + "]"
        try:
            meta = self.con.execute(f"SELECT file_name, sum(num_rows) FROM parquet_file_metadata({files}) GROUP BY 1").fetchall()
            src = f"read_parquet({files}, file_row_number=true, filename=true, union_by_name=true)"
            cols = self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
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
        self.con.execute(f"CREATE VIEW {_q('src_' + sp.name)} AS SELECT * EXCLUDE (filename, file_row_number), "
                         f"{', '.join(extra)} FROM {src}")
        for c, t in (("_file", "INTEGER"), ("_row", "BIGINT"), ("rid", "BIGINT")):
            sp.columns[c] = t
        if sp.has("reasoning"):
            sp.columns["reasoning_chars"] = "BIGINT"
        if sp.has("flags"):
            sp.columns["n_flags"] = "BIGINT"
        if sp.has("problem"):
            sp.columns["problem_preview"] = "VARCHAR"

    # ------------------------------------------------------------------ background index
    def start_index(self) -> None:
        """Let the background index start now (the server calls it once its first page is out)."""
        self._go.set()

    def _build(self, delay: float) -> None:
        self._go.wait(delay)  # the server's first page first; at most ``delay`` seconds
        for sp in self.splits.values():
            if self._stop.is_set():
                sp.index_error = sp.search_error = "stopped"
                sp.index_ready.set()
                sp.search_ready.set()
                continue
            t0 = time.monotonic()
            keep = [c for c in INDEX_COLUMNS if sp.has(c)] + ["_file", "_row", "rid"]
            keep += [c for c in ("n_flags", "problem_preview") if sp.has(c)]
            try:
                cur = self.con.cursor()
                cur.execute(f"CREATE TABLE {_q('idx_' + sp.name)} AS SELECT {', '.join(map(_q, keep))} "
                            f"FROM {_q('src_' + sp.name)}")  # insertion (file) order kept
                cur.close()
                sp.index_cols = set(keep)
            except Exception as e:  # noqa: BLE001 - the shards still answer; the index is a speed-up
                sp.index_error = first_line(e)
            sp.index_ready.set()
            self.index_seconds = time.monotonic() - t0
        for sp in self.splits.values():
            if self._stop.is_set():
                break
            if not self._search_enabled or not sp.has("reasoning"):
                sp.search_error = "disabled" if not self._search_enabled else "no reasoning column"
                sp.search_ready.set()
                continue
            try:
                self._build_search(sp)
            except Exception as e:  # noqa: BLE001 - searches fall back to scanning the shards
                sp.search_error = first_line(e)
            sp.search_ready.set()

    def _build_search(self, sp: Split) -> None:
        """FTS5 over the text columns, the reasoning length per row and, for a split without a
        ``flags`` column (``rejected``: the audit stage runs after the drops), the audit flags
        recomputed by ``curate.audit.flags`` with the version's audit config. Reused when complete."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.index_dir
        d.mkdir(parents=True, exist_ok=True)
        db_path, side, done = d / f"search-{sp.name}.sqlite", d / f"rows-{sp.name}.parquet", d / f"done-{sp.name}"
        want_flags = not sp.has("flags")
        if not (done.is_file() and db_path.is_file() and side.is_file()):
            tmp_db, tmp_side = d / f".search-{sp.name}.tmp", d / f".rows-{sp.name}.tmp.parquet"
            tmp_db.unlink(missing_ok=True)
            flagger = self._flagger() if want_flags else None
            db = sqlite3.connect(str(tmp_db))
            parts: list[Any] = []
            try:
                db.execute("PRAGMA journal_mode=OFF")
                db.execute("PRAGMA synchronous=OFF")
                db.execute("CREATE VIRTUAL TABLE fts USING fts5(problem, reasoning, answer, content='', "
                           "tokenize='unicode61 remove_diacritics 2')")
                text = [f"coalesce(CAST({_q(c)} AS VARCHAR), '') AS {_q(c)}" if sp.has(c) else f"'' AS {_q(c)}"
                        for c in SEARCH_COLUMNS]
                more = [_q(c) for c in ("finish_reason", "verdict", "pred_answer", "correct") if flagger and sp.has(c)]
                cur = self.con.cursor()
                reader = cur.sql(f"SELECT rid, {', '.join(text + more)} FROM {_q('src_' + sp.name)}").to_arrow_reader(4096)
                done_rows = 0
                for batch in reader:
                    if self._stop.is_set():
                        raise RuntimeError("stopped")
                    rid, prob, reas, ans = (batch.column(i).to_pylist() for i in range(4))
                    db.execute("BEGIN")
                    db.executemany("INSERT INTO fts(rowid, problem, reasoning, answer) VALUES (?, ?, ?, ?)",
                                   zip(rid, prob, reas, ans))
                    db.execute("COMMIT")
                    cols = {"rid": batch.column(0), "chars": pa.array([len(r) for r in reas], pa.int64())}
                    if flagger is not None:
                        cols["flags"] = flagger(batch)
                    parts.append(pa.table(cols))
                    done_rows += batch.num_rows
                    sp.search_progress = done_rows / max(1, sp.rows)
                cur.close()
                db.execute("INSERT INTO fts(fts) VALUES ('optimize')")
                db.commit()
            finally:
                db.close()
            table = pa.concat_tables(parts) if parts else pa.table({"rid": pa.array([], pa.int64()),
                                                                     "chars": pa.array([], pa.int64())})
            pq.write_table(table, tmp_side)
            del parts, table
            tmp_db.replace(db_path)
            tmp_side.replace(side)
            done.write_text(json.dumps({"rows": sp.rows, "format": INDEX_FORMAT, "flags": want_flags}))
        # the reasoning length (and recomputed flags) join the in-memory index
        if sp.index_error is None:
            has_flags = "flags" in pq.read_schema(side).names
            extra = ", l.flags AS flags, coalesce(len(l.flags), 0) AS n_flags" if has_flags else ""
            cur = self.con.cursor()
            idx = _q("idx_" + sp.name)
            cur.execute(f"CREATE TABLE {_q('idx2_' + sp.name)} AS SELECT i.*, l.chars AS reasoning_chars{extra} "
                        f"FROM {idx} i LEFT JOIN read_parquet({_lit(str(side))}) l USING (rid) ORDER BY rid")
            cur.execute(f"DROP TABLE {idx}")
            cur.execute(f"ALTER TABLE {_q('idx2_' + sp.name)} RENAME TO {idx}")
            cur.close()
            if has_flags:
                sp.flags_recomputed = True
                sp.columns = {**sp.columns, "flags": "VARCHAR[]", "n_flags": "BIGINT"}
            sp.index_cols = sp.index_cols | {"reasoning_chars"} | ({"flags", "n_flags"} if has_flags else set())
            with self._cache_lock:
                self._cache.clear()
        sp.search_db = db_path
        sp.search_progress = 1.0

    def _flagger(self) -> Any:
        """batch -> flags (arrow list<string>) by ``curate.audit.flags.audit_frame`` with the version's
        audit config and the train split's length reference."""
        import polars as pl
        import pyarrow as pa

        from ..audit.flags import audit_frame
        from .measures import audit_config

        cfg = audit_config(self.manifest)
        ref = self.length_ref()

        def flags(batch: Any) -> Any:
            df = pl.from_arrow(batch)
            out = audit_frame(df, cfg, length_ref=ref)["flags"]  # type: ignore[arg-type]
            return pa.array(out.to_list(), pa.list_(pa.string()))

        return flags

    def wait_index(self, timeout: float | None = None, search: bool = False) -> bool:
        ok = all(sp.index_ready.wait(timeout) for sp in self.splits.values())
        if search:
            ok = ok and all(sp.search_ready.wait(timeout) for sp in self.splits.values())
        return ok

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # stop a running index query; nothing to do if none runs
            self.con.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ helpers
    def _rel(self, sp: Split, needs: set[str]) -> str:
        """The in-memory index when it is ready and has every column in ``needs``, else the shards."""
        if sp.index_ready.is_set() and sp.index_error is None and needs <= sp.index_cols:
            return _q("idx_" + sp.name)
        return _q("src_" + sp.name)

    def _rows(self, sql: str, params: list[Any] | None = None, register: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.cursor()  # a cursor per call: requests run on several threads
        try:
            for name, obj in (register or {}).items():
                cur.register(name, obj)
            cur.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            cur.close()

    def _scalar(self, sql: str, params: list[Any] | None = None, register: dict[str, Any] | None = None) -> Any:
        got = self._rows(sql, params, register)
        return next(iter(got[0].values())) if got else None

    def split(self, name: str) -> Split:
        sp = self.splits.get(name)
        if sp is None:
            raise KeyError(name)
        return sp

    # ------------------------------------------------------------------ table queries
    def where(self, sp: Split, qy: Query) -> tuple[str, list[Any], set[str]]:
        """(SQL condition, parameters, columns read) of the non-text filters of ``qy``."""
        conds: list[str] = []
        params: list[Any] = []
        needs: set[str] = set()
        for key, vals in qy.filters.items():
            col = FILTER_COLUMNS[key]
            if not sp.has(col):
                conds.append("false")  # a filter on a column the split lacks matches nothing
                continue
            needs.add(col)
            conds.append(f"CAST({_q(col)} AS VARCHAR) IN ({', '.join('?' for _ in vals)})")
            params.extend(vals)
        if qy.flag:
            if not sp.has("flags"):
                conds.append("false")
            else:
                needs.add("flags")
                if qy.flag == "(any)":
                    conds.append("len(flags) > 0")
                elif qy.flag == "(none)":
                    conds.append("coalesce(len(flags), 0) = 0")
                else:
                    conds.append("list_contains(flags, ?)")
                    params.append(qy.flag)
        if qy.correct is not None:
            if not sp.has("correct"):
                conds.append("false")
            else:
                needs.add("correct")
                conds.append("correct = ?")
                params.append(qy.correct)
        for bound, op in ((qy.len_min, ">="), (qy.len_max, "<")):
            if bound is None:
                continue
            if not sp.has("reasoning_chars"):
                conds.append("false")
            else:
                needs.add("reasoning_chars")
                conds.append(f"reasoning_chars {op} ?")
                params.append(bound)
        return (" AND ".join(conds) or "true"), params, needs

    def _fts(self, sp: Split, sql: str, text: str, params: tuple = ()) -> list[tuple] | None:
        """``sql`` (with ``fts MATCH ?`` first) over the split's search index; None while it is not
        ready, [] for text with no word (or that FTS5 cannot parse)."""
        if not sp.search_ready.is_set() or sp.search_db is None:
            return None
        phrase = fts_query(text)
        if phrase is None:
            return []
        db = sqlite3.connect(f"{sp.search_db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        try:
            return db.execute(sql, (phrase, *params)).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    @staticmethod
    def _shown(sp: Split) -> list[str]:
        return [c for c in TABLE_COLUMNS if c != "problem" and sp.has(c)] + (["problem_preview"] if sp.has("problem") else [])

    def _at_rids(self, sp: Split, rids: list[int]) -> list[dict[str, Any]]:
        """The table columns of the rows ``rids`` (in rid order)."""
        if not rids:
            return []
        shown = self._shown(sp)
        rel = self._rel(sp, set(shown))
        sel = ", ".join(["t.rid", "t._file", "t._row", *(f"t.{_q(c)}" for c in shown)])
        # a semi join on the list (a hash probe) is several times faster than ``rid IN (...)`` here
        return self._rows(f"SELECT {sel} FROM {rel} t SEMI JOIN (SELECT unnest(?::BIGINT[]) AS rid) k ON k.rid = t.rid "
                          "ORDER BY t.rid", [list(rids)])

    def page(self, qy: Query) -> dict[str, Any]:
        """One table page: ``rows``, ``more`` (a next page exists), ``total`` (None when a text search
        had to scan the shards: counting would read them all again) and ``search_mode``."""
        sp = self.split(qy.split)
        cond, params, needs = self.where(sp, qy)
        register: dict[str, Any] = {}
        join = ""
        mode = None
        sorted_ = bool(qy.sort and qy.sort in SORTABLE and sp.has(qy.sort))
        if qy.q and sp.search_ready.is_set() and sp.search_db is not None:
            mode = "index"
            if cond == "true" and not sorted_:
                # only the search: the page and the count come straight from the search index
                got = self._fts(sp, "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid LIMIT ? OFFSET ?", qy.q,
                                (qy.per + 1, qy.page * qy.per)) or []
                n = self._fts(sp, "SELECT count(*) FROM fts WHERE fts MATCH ?", qy.q) or [(0,)]
                rows = self._at_rids(sp, [r[0] for r in got])
                return {"rows": rows[: qy.per], "more": len(got) > qy.per, "total": int(n[0][0]), "search_mode": mode}
            import numpy as np
            import pyarrow as pa

            # every match, as one comma-joined string built inside SQLite (much faster than a row per match)
            got = self._fts(sp, "SELECT group_concat(rowid) FROM fts WHERE fts MATCH ?", qy.q) or [(None,)]
            rids = np.fromstring(got[0][0], dtype=np.int64, sep=",") if got[0][0] else np.zeros(0, np.int64)
            register["_hits"] = pa.table({"rid": pa.array(rids, pa.int64())})
            join = "SEMI JOIN _hits h ON h.rid = t.rid"
        elif qy.q:  # no search index yet: a substring scan of the shards
            mode = "scan"
            cols = [c for c in SEARCH_COLUMNS if sp.has(c)]
            pat = "%" + re.sub(r"([\\%_])", r"\\\1", qy.q) + "%"
            cond += " AND (" + (" OR ".join(f"{_q(c)} ILIKE ? ESCAPE '\\'" for c in cols) or "false") + ")"
            params += [pat] * len(cols)
            needs.update(SEARCH_COLUMNS)
        # no sort: file order, which DuckDB keeps for scans (preserve_insertion_order); an ORDER BY rid
        # would make the shards' first page a full scan before the index is ready
        order = "ORDER BY t.rid" if join else ""
        if sorted_:
            needs.add(qy.sort)
            order = f"ORDER BY {_q(qy.sort)} {'DESC' if qy.desc else 'ASC'} NULLS LAST, rid"
        rel = self._rel(sp, needs | set(self._shown(sp)))
        sel = ", ".join(["t.rid", "t._file", "t._row", *(f"t.{_q(c)}" for c in self._shown(sp))])
        if join:  # the search matches joined once: the page and the count from one materialised result
            key = f", t.{_q(qy.sort)} AS _key" if sorted_ else ""
            order_m = f"ORDER BY _key {'DESC' if qy.desc else 'ASC'} NULLS LAST, rid" if sorted_ else "ORDER BY rid"
            keys = self._rows(f"WITH m AS MATERIALIZED (SELECT t.rid{key} FROM {self._rel(sp, needs)} t {join} "
                              f"WHERE {cond}) SELECT rid, (SELECT count(*) FROM m) AS _total FROM m {order_m} "
                              "LIMIT ? OFFSET ?", params + [qy.per + 1, qy.page * qy.per], register)
            if keys or qy.page == 0:
                total = int(keys[0]["_total"]) if keys else 0
                pos = {k["rid"]: i for i, k in enumerate(keys[: qy.per])}
                rows = sorted(self._at_rids(sp, list(pos)), key=lambda r: pos[r["rid"]])
                return {"rows": rows, "more": len(keys) > qy.per, "total": total, "search_mode": mode}
        if sorted_ and rel.startswith('"idx_'):
            # top-N over the sort key and rid only, then the page's columns (a wide top-N costs 10x more)
            keys = self._rows(f"SELECT t.rid FROM {rel} t {join} WHERE {cond} {order} LIMIT ? OFFSET ?",
                              params + [qy.per + 1, qy.page * qy.per], register)
            pos = {k["rid"]: i for i, k in enumerate(keys)}
            rows = sorted(self._at_rids(sp, list(pos)), key=lambda r: pos[r["rid"]])
        else:
            rows = self._rows(f"SELECT {sel} FROM {rel} t {join} WHERE {cond} {order} LIMIT ? OFFSET ?",
                              params + [qy.per + 1, qy.page * qy.per], register)
        more = len(rows) > qy.per
        rows = rows[: qy.per]
        if mode == "scan":
            total = None
        elif cond == "true" and not join:
            total = sp.rows
        else:
            total = int(self._scalar(f"SELECT count(*) FROM {self._rel(sp, needs)} t {join} WHERE {cond}", params,
                                     register))
        return {"rows": rows, "more": more, "total": total, "search_mode": mode}

    def facet(self, split: str, key: str) -> list[tuple[Any, int]]:
        """Distinct values of a filter column with their counts (cached once the index is ready)."""
        sp = self.split(split)
        ck = ("facet", split, key)
        with self._cache_lock:
            if ck in self._cache:
                return self._cache[ck]
        if key == "flag":
            if not sp.has("flags"):
                return []
            got = self._rows(f"SELECT f, count(*) AS n FROM (SELECT unnest(flags) AS f FROM {self._rel(sp, {'flags'})}) "
                             "GROUP BY f ORDER BY n DESC, f")
        else:
            col = FILTER_COLUMNS[key]
            if not sp.has(col):
                return []
            got = self._rows(f"SELECT {_q(col)} AS v, count(*) AS n FROM {self._rel(sp, {col})} WHERE {_q(col)} IS NOT NULL "
                             "GROUP BY v ORDER BY n DESC, v LIMIT 200")
        vals = [tuple(d.values()) for d in got]
        if sp.index_ready.is_set():
            with self._cache_lock:
                self._cache[ck] = vals
        return vals

    # ------------------------------------------------------------------ one row
    def row(self, split: str, fileno: int, rowno: int) -> dict[str, Any] | None:
        sp = self.split(split)
        if not (0 <= fileno < len(sp.files)) or rowno < 0:
            return None
        got = self._rows(f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({_lit(str(sp.files[fileno]))}, "
                         "file_row_number=true) WHERE file_row_number = ?", [rowno])
        if not got:
            return None
        d = got[0]
        d.update(_split=split, _file=fileno, _row=rowno, _path=str(sp.files[fileno]), rid=sp.offsets[fileno] + rowno)
        return d

    def find(self, column: str, value: Any, limit: int = 12, cols: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Rows of every split whose ``column`` equals ``value`` (a problem's samples, a dedup cluster)."""
        out: list[dict[str, Any]] = []
        if value is None:
            return out
        for sp in self.splits.values():
            if not sp.has(column):
                continue
            want = [c for c in cols if sp.has(c)]
            got = self._rows(f"SELECT _file, _row, {', '.join(['rid', *map(_q, want)])} FROM "
                             f"{self._rel(sp, {column, *want})} WHERE {_q(column)} = ? ORDER BY rid LIMIT ?",
                             [value, limit])
            for d in got:
                d["_split"] = sp.name
                out.append(d)
        return out

    def count_by_split(self, column: str, value: Any) -> dict[str, int]:
        out = {}
        for sp in self.splits.values():
            if sp.has(column) and value is not None:
                out[sp.name] = int(self._scalar(f"SELECT count(*) FROM {self._rel(sp, {column})} WHERE {_q(column)} = ?",
                                                [value]))
        return out

    def problem_text(self, split: str, fileno: int, rowno: int) -> str | None:
        sp = self.split(split)
        if not sp.has("problem"):
            return None
        return self._scalar(f"SELECT problem FROM read_parquet({_lit(str(sp.files[fileno]))}, file_row_number=true) "
                            "WHERE file_row_number = ?", [rowno])

    # ------------------------------------------------------------------ charts
    def _cached(self, key: Any, ready: bool, fn: Any) -> Any:
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        val = fn()
        if ready:
            with self._cache_lock:
                self._cache[key] = val
        return val

    def length_hist(self, bins: int = 24) -> dict[str, Any] | None:
        """Rows per reasoning-length bin (characters, log-spaced) for correct vs not-correct rows, over
        every split (train alone is mostly correct rows; the rejected split holds the rest). None until
        the search index has measured every row."""
        sps = [sp for sp in self.splits.values() if sp.has("reasoning_chars") and sp.has("correct")]
        if not sps or any("reasoning_chars" not in sp.index_cols for sp in sps):
            return None

        def compute() -> dict[str, Any] | None:
            rels = [self._rel(sp, {"reasoning_chars", "correct"}) for sp in sps]
            union = " UNION ALL ".join(f"SELECT reasoning_chars, correct FROM {r} WHERE reasoning_chars > 0" for r in rels)
            lo, hi = self._rows(f"SELECT min(reasoning_chars) AS lo, max(reasoning_chars) AS hi FROM ({union})")[0].values()
            if lo is None:
                return None
            lo, hi = max(1, int(lo)), max(int(lo) + 2, int(hi) + 1)
            llo, step = math.log(lo), (math.log(hi) - math.log(lo)) / bins
            got = self._rows(f"SELECT least({bins - 1}, greatest(0, floor((ln(reasoning_chars) - ?) / ?)))::INT AS b, "
                             f"coalesce(correct, false) AS c, count(*) AS n FROM ({union}) GROUP BY b, c", [llo, step])
            edges = [round(math.exp(llo + i * step)) for i in range(bins + 1)]
            edges[0], edges[-1] = lo, hi
            correct, other = [0] * bins, [0] * bins
            for d in got:
                (correct if d["c"] else other)[int(d["b"])] += int(d["n"])
            return {"edges": edges, "correct": correct, "other": other}

        return self._cached(("hist",), True, compute)

    def pass_by_bucket(self, split: str) -> list[tuple[str, float, int]]:
        """(difficulty bucket, mean pass rate, rows), buckets from easiest to hardest."""
        sp = self.split(split)
        if not (sp.has("difficulty_bucket") and sp.has("pass_rate")):
            return []
        key = "difficulty" if sp.has("difficulty") else "1 - pass_rate"

        def compute() -> list[tuple[str, float, int]]:
            got = self._rows(f"SELECT difficulty_bucket AS b, avg(pass_rate) AS p, count(*) AS n, avg({key}) AS d FROM "
                             f"{self._rel(sp, {'difficulty_bucket', 'pass_rate', 'difficulty'} & set(sp.columns))} "
                             "WHERE difficulty_bucket IS NOT NULL GROUP BY b ORDER BY d, b")
            return [(str(d["b"]), float(d["p"] or 0.0), int(d["n"])) for d in got]

        return self._cached(("pass", split), sp.index_ready.is_set(), compute)

    def length_ref(self) -> tuple[float, float] | None:
        """(median, MAD) of log(1 + reasoning tokens) over the train split, as the audit computes it
        (for the ``length_outlier`` measure of one row)."""
        sp = self.splits.get("train") or next(iter(self.splits.values()))

        def compute() -> tuple[float, float] | None:
            if not sp.has("reasoning_tokens"):
                return None
            rel = self._rel(sp, {"reasoning_tokens"})
            d = self._rows(f"WITH x AS (SELECT ln(1 + reasoning_tokens) AS v FROM {rel} WHERE reasoning_tokens > 0), "
                           "m AS (SELECT median(v) AS med, count(*) AS n FROM x) "
                           "SELECT any_value(m.med) AS med, median(abs(x.v - m.med)) AS mad, any_value(m.n) AS n "
                           "FROM x, m")
            if not d or not d[0]["n"] or d[0]["n"] < 3 or not d[0]["mad"]:
                return None
            return float(d[0]["med"]), float(d[0]["mad"])

        return self._cached(("length_ref",), sp.index_ready.is_set(), compute)

    # ------------------------------------------------------------------ lineage
    def raw_response(self, request_hash: str | None) -> tuple[Path, dict[str, Any]] | None:
        """The logged teacher response of ``request_hash`` from the sampling logs under the work folder
        (``<work>/sampling/*.sqlite``, the tables of ``curate.sampling.RequestLog``). Opened read-only:
        ``RequestLog()`` itself would create folders and tables, and a viewer writes nothing."""
        if not request_hash or self.work_dir is None:
            return None
        for log in sorted((Path(self.work_dir) / "sampling").glob("*.sqlite")):
            try:
                db = sqlite3.connect(f"{log.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
                try:
                    got = db.execute("SELECT payload FROM responses WHERE key = ?", (request_hash,)).fetchone()
                finally:
                    db.close()
                if got:
                    return log, json.loads(got[0])
            except (sqlite3.Error, ValueError):
                continue
        return None
