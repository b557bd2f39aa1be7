"""The data behind ``curate view``: DuckDB over the parquet shards where they lie.

Nothing is loaded whole. Each split is a DuckDB view over its shard files (``read_parquet`` with the
row number; a row's identity is ``(split, shard, row)``, and ``rid`` numbers the rows of a split).
Table pages, filters, sorts and counts are SQL with bound parameters; column names come from fixed
lists, never from the request.

The modules: ``splits`` (column lists, discovery and registration of the splits), ``index`` (the
background index and the FTS5 search index), ``queries`` (table pages, facets, rows). A background
thread builds, per split:

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
import json
import math
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

from .index import IndexMixin
from .queries import QueryMixin
from .splits import (
    FACETS,
    FILTER_COLUMNS,
    INDEX_COLUMNS,
    INDEX_FORMAT,
    PREVIEW_CHARS,
    SEARCH_COLUMNS,
    SORTABLE,
    TABLE_COLUMNS,
    Query,
    Split,
    _spill_dir,
    default_index_dir,
    default_work_dir,
    discover,
    duckdb,
    fts_query,
    register,
)

__all__ = ["FACETS", "FILTER_COLUMNS", "INDEX_COLUMNS", "INDEX_FORMAT", "PREVIEW_CHARS", "SEARCH_COLUMNS", "SORTABLE",
           "TABLE_COLUMNS", "Query", "Split", "Store", "fts_query"]


class Store(IndexMixin, QueryMixin):
    """A version folder, parquet file or JSONL file, queried in place."""

    def __init__(self, path: Path, *, work_dir: Path | None = None, index_dir: Path | None = None,
                 build_index: bool = True, search_index: bool = True, threads: int | None = None,
                 memory_limit: str = "512MB", index_delay: float = 0.0):
        if duckdb is None:
            from ..errors import require

            require("duckdb", "view", "curate view")
        self.path = Path(path)
        found = discover(self.path)
        self._tmp: tempfile.TemporaryDirectory | None = found.tmp
        self.manifest: dict[str, Any] = found.manifest
        self.summary: dict[str, Any] = found.summary
        self.splits: dict[str, Split] = found.splits
        # spills go to the system temp folder, never to a `.tmp/` in whatever folder the server started in
        cfg: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": _spill_dir()}
        if threads:
            cfg["threads"] = threads
        self.con = duckdb.connect(":memory:", config=cfg)
        for sp in self.splits.values():
            register(self.con, sp)
        self.work_dir = work_dir if work_dir is not None else default_work_dir(self.manifest)
        self.index_dir = index_dir if index_dir is not None else default_index_dir(self.splits)
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

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # stop a running index query; nothing to do if none runs
            self.con.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()

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
