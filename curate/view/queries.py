"""The queries of ``curate view``: table pages, facets, single rows and look-ups, as SQL with bound
parameters over a split's in-memory index when it is ready and has the columns, else over its
shards. Column names come from fixed lists, never from the request. A text search goes through the
split's FTS5 index when it is built, else it is a substring scan (``ILIKE``) of the shards."""

from __future__ import annotations

import re
import sqlite3
import threading
from typing import Any

from .splits import (
    FILTER_COLUMNS,
    SEARCH_COLUMNS,
    SORTABLE,
    TABLE_COLUMNS,
    Query,
    Split,
    _lit,
    _q,
    fts_query,
)


class QueryMixin:
    """The read side of ``Store`` (which provides ``con``, ``splits``, ``_cache`` and ``_cache_lock``)."""

    con: Any
    splits: dict[str, Split]
    _cache: dict[Any, Any]
    _cache_lock: threading.Lock

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
                return self._search_only_page(sp, qy)
            register["_hits"] = self._search_hits(sp, qy.q)
            join = "SEMI JOIN _hits h ON h.rid = t.rid"
        elif qy.q:  # no search index yet: a substring scan of the shards
            mode = "scan"
            cols = [c for c in SEARCH_COLUMNS if sp.has(c)]
            pat = "%" + re.sub(r"([\\%_])", r"\\\1", qy.q) + "%"
            cond += " AND (" + (" OR ".join(f"{_q(c)} ILIKE ? ESCAPE '\\'" for c in cols) or "false") + ")"
            params += [pat] * len(cols)
            needs.update(SEARCH_COLUMNS)
        if sorted_:
            needs.add(qy.sort)  # type: ignore[arg-type]
        if join:  # the search matches joined once: the page and the count from one materialised result
            got = self._joined_page(sp, qy, cond, params, needs, register, join, sorted_)
            if got is not None:
                return {**got, "search_mode": mode}
        return self._plain_page(sp, qy, (cond, params, needs), register, join, sorted_, mode)

    def _search_only_page(self, sp: Split, qy: Query) -> dict[str, Any]:
        """Only the search: the page and the count come straight from the search index."""
        got = self._fts(sp, "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid LIMIT ? OFFSET ?", qy.q or "",
                        (qy.per + 1, qy.page * qy.per)) or []
        n = self._fts(sp, "SELECT count(*) FROM fts WHERE fts MATCH ?", qy.q or "") or [(0,)]
        rows = self._at_rids(sp, [r[0] for r in got])
        return {"rows": rows[: qy.per], "more": len(got) > qy.per, "total": int(n[0][0]), "search_mode": "index"}

    def _search_hits(self, sp: Split, text: str) -> Any:
        """Every match of ``text`` as an arrow table of rids."""
        import numpy as np
        import pyarrow as pa

        # every match, as one comma-joined string built inside SQLite (much faster than a row per match)
        got = self._fts(sp, "SELECT group_concat(rowid) FROM fts WHERE fts MATCH ?", text) or [(None,)]
        rids = np.fromstring(got[0][0], dtype=np.int64, sep=",") if got[0][0] else np.zeros(0, np.int64)
        return pa.table({"rid": pa.array(rids, pa.int64())})

    def _joined_page(self, sp: Split, qy: Query, cond: str, params: list[Any], needs: set[str],
                     register: dict[str, Any], join: str, sorted_: bool) -> dict[str, Any] | None:
        """The page and the count of a search joined with filters or a sort; None for a page past the
        end (the caller then answers it the plain way)."""
        key = f", t.{_q(qy.sort)} AS _key" if sorted_ and qy.sort else ""
        order_m = f"ORDER BY _key {'DESC' if qy.desc else 'ASC'} NULLS LAST, rid" if sorted_ else "ORDER BY rid"
        keys = self._rows(f"WITH m AS MATERIALIZED (SELECT t.rid{key} FROM {self._rel(sp, needs)} t {join} "
                          f"WHERE {cond}) SELECT rid, (SELECT count(*) FROM m) AS _total FROM m {order_m} "
                          "LIMIT ? OFFSET ?", params + [qy.per + 1, qy.page * qy.per], register)
        if not (keys or qy.page == 0):
            return None
        total = int(keys[0]["_total"]) if keys else 0
        pos = {k["rid"]: i for i, k in enumerate(keys[: qy.per])}
        rows = sorted(self._at_rids(sp, list(pos)), key=lambda r: pos[r["rid"]])
        return {"rows": rows, "more": len(keys) > qy.per, "total": total}

    def _plain_page(self, sp: Split, qy: Query, where: tuple[str, list[Any], set[str]], register: dict[str, Any],
                    join: str, sorted_: bool, mode: str | None) -> dict[str, Any]:
        cond, params, needs = where
        # no sort: file order, which DuckDB keeps for scans (preserve_insertion_order); an ORDER BY rid
        # would make the shards' first page a full scan before the index is ready
        order = "ORDER BY t.rid" if join else ""
        if sorted_ and qy.sort:
            order = f"ORDER BY {_q(qy.sort)} {'DESC' if qy.desc else 'ASC'} NULLS LAST, rid"
        rel = self._rel(sp, needs | set(self._shown(sp)))
        sel = ", ".join(["t.rid", "t._file", "t._row", *(f"t.{_q(c)}" for c in self._shown(sp))])
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
