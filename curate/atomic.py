"""The one atomic-directory helper: a folder is written under a temporary sibling name and renamed into
place only when complete, so a crash or Ctrl-C never leaves a partial version, cache entry or run folder.

    with atomic_dir(vdir, on_exists="error") as tmp:   # FileExistsError if vdir exists (or appears meanwhile)
        write(tmp / "data" / ...)

``on_exists``: ``"error"`` (immutable versions, eval runs), ``"keep"`` (a content-addressed entry that
another process may have written first: theirs is as good as ours), ``"replace"`` (``--no-resume``
recomputed the entry). Temporary folders are named ``.tmp-<name>-<random>``; ``stale_tmp_dirs`` lists the
ones a killed process left behind.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

TMP_PREFIX = ".tmp-"


def _tmp_name(target: Path) -> Path:
    return target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_dir(target: str | os.PathLike, *, on_exists: Literal["error", "keep", "replace"] = "error") -> Iterator[Path]:
    target = Path(target)
    if on_exists == "error" and target.exists():
        raise FileExistsError(str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() and on_exists == "replace":
            old = target.parent / f"{TMP_PREFIX}old-{target.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(target, old)
            except OSError:
                pass
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)  # atomic on one file system; fails if target is a non-empty folder
        except OSError:
            if on_exists == "error":
                raise FileExistsError(str(target)) from None
            shutil.rmtree(tmp, ignore_errors=True)  # "keep": another process won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stale_tmp_dirs(parent: str | os.PathLike, *, older_than_s: float = 3600.0) -> list[Path]:
    """Temporary folders under ``parent`` left by killed writers (older than ``older_than_s``)."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    now = time.time()
    out = []
    for p in parent.iterdir():
        if p.name.startswith(TMP_PREFIX) and p.is_dir():
            try:
                if now - p.stat().st_mtime > older_than_s:
                    out.append(p)
            except OSError:
                continue
    return out
