"""The durable request log: finished responses by request hash in SQLite (WAL), one process per log."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import BackendError


# --------------------------------------------------------------------------- durable log
class RequestLog:
    """Finished responses by request hash: SQLite in WAL mode.

    A committed row survives a SIGKILL of the writer (WAL + ``synchronous=NORMAL``: the data is in
    the OS before ``put`` / ``put_many`` returns). Failed requests are recorded separately (for the audit trail)
    and retried by the next run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, payload TEXT NOT NULL, t REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS failures (key TEXT, error TEXT, t REAL)")
        except sqlite3.DatabaseError as e:
            raise BackendError(f"{self.path}: cannot open the sampling log ({e})") from None

    _BATCH = 500
    """Keys per ``WHERE key IN (...)`` query (well under SQLite's bound-variable limit)."""

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The logged responses of ``keys`` (absent keys are left out), looked up by primary key."""
        want = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(want), self._BATCH):
                chunk = want[i : i + self._BATCH]
                marks = ",".join("?" * len(chunk))
                for key, payload in self._db.execute(f"SELECT key, payload FROM responses WHERE key IN ({marks})", chunk):
                    try:
                        out[key] = json.loads(payload)
                    except (TypeError, ValueError):
                        continue  # an unreadable entry counts as not logged: it is requested again
        return out

    def put(self, key: str, payload: dict) -> None:
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, blob, time.time()))

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        """Several responses in one transaction (group commit): all durable when this returns."""
        now = time.time()
        rows = [(k, json.dumps(p, ensure_ascii=False, separators=(",", ":")), now) for k, p in items]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put_failure(self, key: str, error: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO failures VALUES (?, ?, ?)", (key, error, time.time()))

    def close(self) -> None:
        with self._lock:
            self._db.close()

def _lock_log(log_path: Path, label: str) -> Any:
    """An OS lock on ``<log>.lock`` (released by the OS even on SIGKILL): a second process sampling into
    the same log (two runs, two evals of one folder) is refused with one line instead of paying twice."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(log_path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BackendError(
            f"{label}: another process is sampling into {log_path}; wait for it to finish (its responses are "
            "kept and reused), then run again"
        ) from None
    return lock
