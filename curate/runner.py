"""Runs a recipe's stages in order with a content-addressed, stage-level cache and per-stage stats.

Cache key of a stage = sha256(content fingerprint of the frame the stage receives, stage type, stage
version, the stage's public config, the stage's own input fingerprint, the recipe seed). The key is
derived from the *content* of the input, never from the upstream key: a stage whose output changes
(e.g. a re-run recovers rows whose teacher requests failed before) always recomputes everything
downstream of it, and an unchanged input is always served from the cache. Changing a later stage's
config recomputes from that stage only. Each finished stage is written to
``<work_dir>/cache/<key>/`` at once, so Ctrl-C or a crash keeps everything finished so far.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from . import __version__
from .atomic import atomic_dir
from .engines import get_engine
from .errors import RecipeError, VersionExistsError
from .fingerprint import frame_fingerprint
from .home import curate_home, work_dir_for  # noqa: F401  (re-exported: curate.runner.work_dir_for)
from .recipe import LoadedRecipe
from .registry import get_stage
from .sources import load_sources
from .stages.base import DROP, Context

CACHE_FORMAT = "2"


@dataclass
class StageRecord:
    stage: str
    type: str
    version: str
    cache_key: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    train: pl.DataFrame
    rejected: pl.DataFrame
    records: list[StageRecord]
    inputs: list[dict]
    version_dir: Path | None = None
    executed: list[str] = field(default_factory=list)
    """Labels of the stages that actually ran (not served from the cache)."""


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _split_drops(out: pl.DataFrame, label: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    if DROP not in out.columns:
        return out, pl.DataFrame()
    mask = pl.col(DROP).is_not_null()
    rejected = out.filter(mask).with_columns(pl.lit(label).alias("dropped_by"))
    return out.filter(~mask).drop(DROP), rejected


def _counts(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0 or DROP not in rejected.columns:
        return {}
    g = rejected.group_by(DROP).len().sort("len", descending=True)
    return {str(r[DROP]): int(r["len"]) for r in g.to_dicts()}


def _save(cache: Path, kept: pl.DataFrame, rejected: pl.DataFrame, meta: dict) -> None:
    # --no-resume recomputed this key: the fresh result replaces the old one
    with atomic_dir(cache, on_exists="replace") as tmp:
        kept.write_parquet(tmp / "kept.parquet")
        if rejected.height:
            rejected.write_parquet(tmp / "rejected.parquet")
        (tmp / "stage.json").write_text(json.dumps(meta, default=str, indent=1))


def _load(cache: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict] | None:
    if not (cache / "stage.json").exists():
        return None
    kept = pl.read_parquet(cache / "kept.parquet")
    rej_p = cache / "rejected.parquet"
    rejected = pl.read_parquet(rej_p) if rej_p.exists() else pl.DataFrame()
    return kept, rejected, json.loads((cache / "stage.json").read_text())


def version_dir_for(lr: LoadedRecipe, output_dir: str | os.PathLike | None) -> Path:
    root = Path(output_dir) if output_dir else Path(lr.recipe.output.dir)
    return root / lr.recipe.name / lr.recipe.version


_HELD: set[str] = set()


@contextlib.contextmanager
def work_lock(lr: LoadedRecipe) -> Iterator[Path]:
    """Hold ``<CURATE_HOME>/<name>/.lock`` (an OS file lock, released even on SIGKILL): two runs of one
    recipe never pay for the same requests twice; the second is refused with one line. Re-entrant."""
    from filelock import FileLock, Timeout

    from .errors import BusyError
    from .validate import probe_writable

    work = work_dir_for(lr.recipe.name)
    key = os.path.abspath(work)
    if key in _HELD:
        yield work
        return
    probe_writable(work, "CURATE_HOME")
    lock = FileLock(str(work / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BusyError(
            f"{work}: another curate run of '{lr.recipe.name}' is using this work folder (lock {work / '.lock'}); "
            "wait for it to finish, or stop it, then run again (finished work is kept)"
        ) from None
    _HELD.add(key)
    try:
        from .publish import clean_stale_tmp

        clean_stale_tmp(work / "cache")  # cache entries a killed run left half-written
        yield work
    finally:
        _HELD.discard(key)
        lock.release()


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise RecipeError(f"--limit {limit}: must be a positive number of rows per source (leave it out for no limit)")


def execute(
    lr: LoadedRecipe,
    *,
    limit: int | None = None,
    resume: bool = True,
    console: Any = None,
) -> RunResult:
    """Run sources and stages; return the final frames and the funnel (no publishing)."""
    check_limit(limit)
    with work_lock(lr):
        engine = get_engine(lr.recipe.engine, lr.recipe.ray.model_dump())
        try:
            return _execute(lr, engine, limit=limit, resume=resume, console=console)
        finally:
            engine.close()


def _load_sources(lr: LoadedRecipe, limit: int | None, work: Path, slog: Any) -> tuple[pl.DataFrame, pl.DataFrame, list[dict], StageRecord]:
    """Read the sources and run every `curate validate` check on them before the first stage."""
    recipe = lr.recipe
    slog.source_start(len(recipe.sources))
    t0 = time.perf_counter()
    df, bad, infos = load_sources(recipe.sources, lr.base_dir, limit)
    from .validate import check_plan

    check_plan(lr, df.columns, work, rows=df)
    warnings = [x for i in infos for x in i.get("warnings", [])]
    rec = StageRecord(
        stage="source",
        type="source",
        version=__version__,
        cache_key=_key(CACHE_FORMAT, lr.public.get("sources"), [i["inputs"] for i in infos], limit, recipe.seed),
        rows_in=df.height + bad.height,
        rows_out=df.height,
        dropped=_counts(bad),
        seconds=round(time.perf_counter() - t0, 3),
        stats={"sources": [{k: v for k, v in i.items() if k != "inputs"} for i in infos],
               **({"warnings": warnings} if warnings else {})},
    )
    slog.end(1, rec)
    return df, bad, infos, rec


def _run_stage(stage: Any, label: str, df: pl.DataFrame, ctx: Context, key: str, engine: Any,
               lr: LoadedRecipe) -> tuple[pl.DataFrame, pl.DataFrame, StageRecord]:
    """Run one stage (not served from the cache): (kept rows, rejected rows, its funnel record)."""
    cls = type(stage)
    missing = [c for c in cls.requires if c not in df.columns]
    if missing:
        raise RecipeError(
            f"{lr.path}: stage '{label}' needs column(s) {', '.join(missing)} that no earlier "
            f"source or stage produces"
        )
    start = time.perf_counter()
    out = engine.run_stage(stage, df, ctx)
    kept, rejected = _split_drops(out, label)
    rec = StageRecord(stage=label, type=cls.name, version=cls.version, cache_key=key, rows_in=df.height,
                      rows_out=kept.height, dropped=_counts(rejected), seconds=round(time.perf_counter() - start, 3),
                      stats=ctx.stats)
    return kept, rejected, rec


def _execute(lr: LoadedRecipe, engine: Any, *, limit: int | None, resume: bool, console: Any) -> RunResult:
    from .progress import StageLog

    recipe = lr.recipe
    work = work_dir_for(recipe.name)
    cache_root = work / "cache"
    cache_root.mkdir(parents=True, exist_ok=True)
    slog = StageLog(len(recipe.stages) + 1)  # start/end line per stage (the `curate` logger)
    df, bad, infos, src_rec = _load_sources(lr, limit, work, slog)
    records = [src_rec]
    rejected_parts = [bad.with_columns(pl.lit("source").alias("dropped_by"))] if bad.height else []
    executed: list[str] = []
    public_stages = lr.public.get("stages") or []
    for idx, (cfg, label) in enumerate(zip(recipe.stages, lr.stage_labels())):
        stage = get_stage(cfg.type)(cfg)
        pub_cfg = public_stages[idx] if idx < len(public_stages) else cfg.model_dump(mode="json")
        ctx = Context(work_dir=work, base_dir=lr.base_dir, seed=recipe.seed, limit=limit, stage_label=label,
                      resume=resume, show_progress=bool(console is not None and getattr(console, "is_terminal", False)))
        # the key is the *content* of what the stage receives, never the upstream key
        key = _key(CACHE_FORMAT, frame_fingerprint(df), stage.name, stage.version, pub_cfg, stage.fingerprint(ctx), recipe.seed)
        hit = _load(cache_root / key) if resume else None
        if hit is not None:
            kept, rejected, meta = hit
            rec = StageRecord(**{**meta["record"], "cached": True})
        else:
            slog.start(idx + 2, label, df.height)
            kept, rejected, rec = _run_stage(stage, label, df, ctx, key, engine, lr)
            if ctx.cacheable:
                _save(cache_root / key, kept, rejected, {"record": asdict(rec)})
            executed.append(label)
        records.append(rec)
        slog.end(idx + 2, rec)
        if rejected.height:
            rejected_parts.append(rejected)
        df = kept
    rejected_all = pl.concat(rejected_parts, how="diagonal_relaxed") if rejected_parts else pl.DataFrame()
    return RunResult(train=df, rejected=rejected_all, records=records, inputs=infos, executed=executed)


def run_recipe(
    lr: LoadedRecipe,
    *,
    output_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    resume: bool = True,
    console: Any = None,
) -> RunResult:
    """Execute a recipe and publish the version. Refuses (exit 2) if the version already exists."""
    from .publish import clean_stale_tmp, publish
    from .validate import check_folders, probe_writable

    check_limit(limit)
    vdir = version_dir_for(lr, output_dir)
    check_folders(lr, output_dir)  # before any work: the output and work folders can be written
    with work_lock(lr):  # the version check and the paid work happen under the lock
        if vdir.exists():
            raise VersionExistsError(
                f"{vdir}: version {lr.recipe.version} of '{lr.recipe.name}' exists; versions are immutable "
                "(bump `version:` in the recipe or use --set version=X.Y.Z)"
            )
        probe_writable(vdir.parent, "--output" if output_dir else "output.dir")
        clean_stale_tmp(vdir.parent, f".tmp-{lr.recipe.version}-")  # left by a publish that was killed
        result = execute(lr, limit=limit, resume=resume, console=console)
        result.version_dir = publish(lr, result, vdir, limit=limit)
    return result
