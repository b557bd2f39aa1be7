"""Content fingerprints: of a frame (the stage cache key), of files and folders (local models, adapters).

Everything here hashes *content*, never a path or a name, so that a changed input always changes the
key and an unchanged one always keeps it:

- ``frame_fingerprint(df)``: the column names and dtypes plus polars' per-row hash of every row, in order,
  digested with xxh3-128. It does not depend on how the frame is chunked (read back from parquet or built in
  memory give the same value). polars documents ``hash_rows`` as stable within a polars version only, so the
  polars version is part of the fingerprint: an upgrade recomputes, it never serves a stale entry.
- ``path_fingerprint(path)``: a file's bytes, or a folder's relative file names and bytes (sorted), with
  xxh3-128. Large weight files are read once per (path, size, mtime) and the digest is remembered in a
  small JSON index under ``$CURATE_HOME`` so re-running an eval does not re-read gigabytes; a rewritten
  file changes size or mtime and is read again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import xxhash

_CHUNK = 1 << 22
_SKIP_DIRS = {".git", "__pycache__", ".cache"}


def frame_fingerprint(df: pl.DataFrame) -> str:
    """A content digest of ``df``: schema, row count and every row's value, in order."""
    h = xxhash.xxh3_128()
    h.update(json.dumps([pl.__version__, df.height, [[n, str(t)] for n, t in df.schema.items()]]).encode())
    if df.height and df.width:
        h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()


def _index_path() -> Path:
    return Path(os.environ.get("CURATE_HOME", ".curate")) / "fingerprints.json"


def _load_index() -> dict:
    try:
        return json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_index(index: dict) -> None:
    p = _index_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, p)
    except OSError:  # the memo is an optimisation only
        pass


def _file_digest(path: Path, index: dict) -> str:
    st = path.stat()
    memo = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if memo in index:
        return index[memo]
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    index[memo] = h.hexdigest()
    return index[memo]


def path_fingerprint(path: str | os.PathLike) -> str | None:
    """The content digest of a file or folder (None when ``path`` does not exist locally, e.g. a hub id)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        return None
    index = _load_index()
    before = len(index)
    h = xxhash.xxh3_128()
    if p.is_file():
        h.update(_file_digest(p, index).encode())
    else:
        for f in sorted(q for q in p.rglob("*") if q.is_file() and not (_SKIP_DIRS & set(q.relative_to(p).parts))):
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + _file_digest(f, index).encode() + b"\0")
    if len(index) != before:
        _save_index(index)
    return h.hexdigest()
