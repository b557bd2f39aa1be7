"""``curate cache ls | clear``: what the stage cache of a recipe holds (``CURATE_HOME/<name>/cache``),
how big and how old, and deleting it. Published versions are never touched; request logs (paid
teacher replies, ``sampling/``) are only deleted with ``--logs``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import RecipeError


def _recipe_name(recipe: str) -> str:
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        from .recipe import load_recipe

        return load_recipe(p).recipe.name
    return recipe


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def list_cache(recipe: str | None = None) -> list[dict[str, Any]]:
    """One dict per cache entry: recipe, stage, key, rows (kept), bytes, age_s; newest first."""
    from .home import curate_home

    home = curate_home()
    names = [_recipe_name(recipe)] if recipe else sorted(p.name for p in home.iterdir() if p.is_dir()) if home.is_dir() else []
    now = time.time()
    rows = []
    for name in names:
        cache = home / name / "cache"
        if not cache.is_dir():
            continue
        for entry in cache.iterdir():
            meta = entry / "stage.json"
            if entry.is_dir() and not meta.is_file() and (entry / "layer.json").is_file():
                meta = entry / "layer.json"  # the sources' shards (the root every stage entry builds on)
            if not entry.is_dir() or not meta.is_file():
                continue
            try:
                raw = json.loads(meta.read_text())
                rec = raw.get("record") or {"stage": "source", "rows_out": raw.get("rows", "?")}
            except (OSError, json.JSONDecodeError, AttributeError):
                rec = {}
            rows.append({"recipe": name, "stage": rec.get("stage", "?"), "key": entry.name, "rows": rec.get("rows_out", "?"),
                         "bytes": _size(entry), "age_s": now - meta.stat().st_mtime})
    return sorted(rows, key=lambda r: r["age_s"])


def clear_cache(recipe: str, logs: bool = False) -> tuple[int, int, Path]:
    """Delete ``CURATE_HOME/<name>/cache`` (and the request logs with ``logs``): (entries, bytes, folder)."""
    from .home import curate_home

    name = _recipe_name(recipe)
    work = curate_home() / name
    if not work.is_dir():
        raise RecipeError(f"{work}: no cache for recipe '{name}' (CURATE_HOME={curate_home()})")
    lock = work / ".lock"
    if lock.exists():  # a run of this recipe holds the work folder: do not pull its cache away
        from filelock import FileLock, Timeout

        fl = FileLock(str(lock))
        try:
            fl.acquire(timeout=0)
        except Timeout:
            raise RecipeError(f"{work}: a curate run of '{name}' is using this work folder; clear the cache after it ends") from None
        try:
            return _clear(work, logs)
        finally:
            fl.release()
    return _clear(work, logs)


def _clear(work: Path, logs: bool) -> tuple[int, int, Path]:
    n, freed = 0, 0
    targets = [work / "cache", work / "decontam_index", work / "stages"] + ([work / "sampling"] if logs else [])
    for t in targets:
        if t.exists():
            freed += _size(t)
            n += sum(1 for _ in t.iterdir()) if t.is_dir() else 1
            shutil.rmtree(t) if t.is_dir() else t.unlink()
    return n, freed, work


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def human_age(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"
