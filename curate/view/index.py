"""The background index of ``curate view``, built per split by a daemon thread:

1. an in-memory *index*: the filterable columns and a short problem preview (no traces; about 100
   bytes a row);
2. a *search index* (SQLite FTS5, contentless, on disk under ``<CURATE_HOME>/view/<fingerprint>/``)
   over problem, reasoning and answer, and the reasoning length of every row (and, for a split
   without flags, the audit flags recomputed). Built once per data fingerprint and reused."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import first_line
from .splits import INDEX_COLUMNS, INDEX_FORMAT, SEARCH_COLUMNS, Split, _lit, _q


class IndexMixin:
    """The index builder of ``Store`` (which provides ``con``, ``splits``, ``index_dir``, ``manifest``,
    the cache, the stop/go events and ``length_ref``)."""

    con: Any
    splits: dict[str, Split]
    index_dir: Path
    manifest: dict[str, Any]
    _cache: dict[Any, Any]
    _cache_lock: threading.Lock
    _stop: threading.Event
    _go: threading.Event
    _search_enabled: bool
    index_seconds: float

    def length_ref(self) -> tuple[float, float] | None:  # pragma: no cover - Store's charts define it
        raise NotImplementedError

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
        d = self.index_dir
        d.mkdir(parents=True, exist_ok=True)
        db_path, side, done = d / f"search-{sp.name}.sqlite", d / f"rows-{sp.name}.parquet", d / f"done-{sp.name}"
        want_flags = not sp.has("flags")
        if not (done.is_file() and db_path.is_file() and side.is_file()):
            self._write_search(sp, db_path, side, want_flags)
            done.write_text(json.dumps({"rows": sp.rows, "format": INDEX_FORMAT, "flags": want_flags}))
        # the reasoning length (and recomputed flags) join the in-memory index
        if sp.index_error is None:
            self._join_lengths(sp, side)
        sp.search_db = db_path
        sp.search_progress = 1.0

    def _write_search(self, sp: Split, db_path: Path, side: Path, want_flags: bool) -> None:
        """Write the search database and the side table of lengths (and flags) through temporary
        files, each moved into place when complete."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.index_dir
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
            self._fill_search(sp, db, flagger, parts)
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

    def _fill_search(self, sp: Split, db: sqlite3.Connection, flagger: Any, parts: list[Any]) -> None:
        """Stream the split's text into ``db``'s FTS5 table; append each batch's lengths (and flags)
        to ``parts``."""
        import pyarrow as pa

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

    def _join_lengths(self, sp: Split, side: Path) -> None:
        """Join the side table's reasoning lengths (and recomputed flags) into the in-memory index."""
        import pyarrow.parquet as pq

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
