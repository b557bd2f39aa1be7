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
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from . import __version__, shards
from .atomic import atomic_dir
from .columns import ROW_ID
from .engines import forkserver_pools, get_engine
from .errors import RecipeError, VersionExistsError
from .home import curate_home, work_dir_for  # noqa: F401  (re-exported: curate.runner.work_dir_for)
from .memory import release_memory
from .recipe import LoadedRecipe
from .registry import get_stage
from .shards import Layer
from .stages.base import ORDER, Context, Planned

CACHE_FORMAT = "3"


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
    """What a run produced: the final layer of work shards (``train``: its live rows) and, per stage, the
    layer whose dropped rows make the ``rejected`` split. ``train``/``rejected`` read everything into
    memory (small results, notebooks, tests); publishing streams the shards instead."""

    final: Layer
    layers: list[tuple[str, Layer]]
    bad: pl.DataFrame
    records: list[StageRecord]
    inputs: list[dict]
    version_dir: Path | None = None
    executed: list[str] = field(default_factory=list)
    """Labels of the stages that actually ran (not served from the cache)."""
    _memo: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def train_rows(self) -> int:
        return self.final.rows

    @property
    def rejected_rows(self) -> int:
        return self.bad.height + sum(sum(r.dropped.values()) for r in self.records[1:])

    @property
    def train(self) -> pl.DataFrame:
        if "train" not in self._memo:
            df = shards.read_all(self.final)
            self._memo["train"] = shards.public(df)
        return self._memo["train"]

    @property
    def rejected(self) -> pl.DataFrame:
        if "rejected" not in self._memo:
            from .splits import iter_rejected

            parts = list(iter_rejected(self.bad, self.layers))
            self._memo["rejected"] = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        return self._memo["rejected"]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _load(cache_root: Path, key: str) -> tuple[Layer, dict] | None:
    """A finished, reusable stage entry: its layer and its record."""
    try:
        meta = json.loads((cache_root / key / "stage.json").read_text())
    except (OSError, ValueError):
        return None
    if not meta.get("reusable", True):
        return None
    layer = Layer.load(cache_root, key)
    return None if layer is None else (layer, meta)


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
    with work_lock(lr), forkserver_pools():
        engine = get_engine(lr.recipe.engine, lr.recipe.ray.model_dump())
        try:
            return _execute(lr, engine, limit=limit, resume=resume, console=console)
        finally:
            engine.close()


def _write_sources(lr: LoadedRecipe, limit: int | None, out_dir: Path) -> Any:
    from .source_shards import write_source_shards

    return write_source_shards(lr.recipe.sources, lr.base_dir, limit, out_dir, lr.recipe.shard_rows)


def _local_inputs(lr: LoadedRecipe) -> list | None:
    """The content digests of every source's files when all sources are local files (else None): they key
    the sources' shards before reading them, so an unchanged input is not read again."""
    from .readers import expand_paths, fingerprint_files

    out = []
    for i, cfg in enumerate(lr.recipe.sources):
        if cfg.kind not in ("file", "traces") or getattr(cfg, "hub", False):
            return None
        out.append(fingerprint_files(expand_paths(cfg.path, lr.base_dir, f"sources[{i}]")))
    return out


def _source_key(lr: LoadedRecipe, inputs: list, limit: int | None) -> str:
    r = lr.recipe
    return "source-" + _key(CACHE_FORMAT, __version__, lr.public.get("sources"), inputs, limit, r.seed, r.shard_rows)


def _write_source_layer(lr: LoadedRecipe, limit: int | None, cache_root: Path) -> Layer:
    """Read the sources into shards under their content key (kept if that entry exists and is whole)."""
    staged = cache_root / f"source-{os.getpid()}"
    with atomic_dir(staged, on_exists="replace") as tmp:
        src = _write_sources(lr, limit, tmp)
        key = _source_key(lr, [i["inputs"] for i in src.infos], limit)
        Layer(tmp, src.n_shards, src.columns, key, src.rows).save(cache_root)
        src.bad.write_parquet(tmp / "bad.parquet")
        (tmp / "source.json").write_text(json.dumps({"infos": src.infos}, default=str))
    final = cache_root / key
    if final.exists() and Layer.load(cache_root, key) is not None and (final / "source.json").exists():
        shutil.rmtree(staged, ignore_errors=True)  # the same content is there already (its children stay valid)
    else:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staged, final)
    layer = Layer.load(cache_root, key)
    assert layer is not None
    return layer


def _load_sources(lr: LoadedRecipe, limit: int | None, work: Path, slog: Any) -> tuple[Layer, pl.DataFrame, list[dict], StageRecord]:
    """Stream the sources into work shards (the root layer) and run every `curate validate` check on them
    before the first stage. The layer's fingerprint is the sources' content (input file digests, hub
    revisions) and config: an unchanged input keeps every cached stage after it."""
    recipe = lr.recipe
    cache_root = work / "cache"
    slog.source_start(len(recipe.sources))
    t0 = time.perf_counter()
    inputs = _local_inputs(lr)
    layer = Layer.load(cache_root, _source_key(lr, inputs, limit)) if inputs is not None else None
    if layer is None or not (layer.dir / "source.json").exists():
        layer = _write_source_layer(lr, limit, cache_root)
    infos = json.loads((layer.dir / "source.json").read_text())["infos"]
    bad = pl.read_parquet(layer.dir / "bad.parquet")
    from .validate import check_plan

    sample = shards.read(layer, 0, ["gold_answer"]).head(10_000)  # the gold check needs nothing else
    check_plan(lr, layer.visible(), work, rows=shards.public(sample))
    warnings = [x for i in infos for x in i.get("warnings", [])]
    rec = StageRecord(
        stage="source",
        type="source",
        version=__version__,
        cache_key=layer.dir.name,
        rows_in=layer.rows + bad.height,
        rows_out=layer.rows,
        dropped=shards.counts_of(bad),
        seconds=round(time.perf_counter() - t0, 3),
        stats={"sources": [{k: v for k, v in i.items() if k != "inputs"} for i in infos],
               "shards": layer.n_shards, **({"warnings": warnings} if warnings else {})},
    )
    slog.end(1, rec)
    return layer, bad, infos, rec


def run_problem_shard(stage: Any, layer: Layer, i: int, ctx: Context, out_dir: Path, label: str) -> dict[str, Any]:
    """A problem-scope stage on shard ``i``: its delta part and what the record needs (runs in any worker)."""
    inp = shards.read(layer, i)
    c = dataclasses.replace(ctx, stats={})
    out = stage.run(inp, c)
    d = shards.delta(inp, out, label)
    dropped = shards.counts_of(d)
    return {"fp": shards.write_part(d, out_dir / f"part-{i:05d}.parquet"), "stats": c.stats,
            "columns": shards.columns_after(layer, inp.columns, out), "rows_in": inp.height,
            "rows_out": inp.height - sum(dropped.values()), "dropped": dropped, "cacheable": c.cacheable}


def map_shard_part(stage: Any, layer: Layer, i: int, ctx: Context, out_dir: Path, label: str) -> dict[str, Any]:
    """A global stage's first phase (``map_shard``) on shard ``i``: the columns it adds, as a part."""
    inp = shards.read(layer, i)
    out = stage.map_shard(inp, dataclasses.replace(ctx, stats={}))
    if ROW_ID not in out.columns:
        out = out.with_columns(inp[ROW_ID]) if out.height == inp.height else out
    d = shards.delta(inp, out, label)
    return {"fp": shards.write_part(d, out_dir / f"part-{i:05d}.parquet"), "columns": shards.columns_after(layer, inp.columns, out)}


def _union(cols: list[list[str]]) -> list[str]:
    out: list[str] = []
    for cs in cols:
        out += [c for c in cs if c not in out]
    return out


def _problem_stage(stage: Any, label: str, layer: Layer, ctx: Context, engine: Any, out_dir: Path) -> Layer:
    jobs = [(stage, layer, i, ctx, out_dir, label) for i in range(layer.n_shards)]
    res = engine.map_shards(run_problem_shard, jobs)
    ctx.stats.clear()
    ctx.stats.update(stage.merge_stats([r["stats"] for r in res]))
    ctx.cacheable = all(r["cacheable"] for r in res)
    return Layer(out_dir, layer.n_shards, _union([r["columns"] for r in res]),
                 shards.combine(layer.fingerprint, [r["fp"] for r in res]), sum(r["rows_out"] for r in res), layer)


def _same_rows(inp: pl.DataFrame, out: pl.DataFrame) -> bool:
    """``out`` holds exactly the rows of ``inp`` (by row id, in any order)."""
    return ROW_ID in out.columns and out.height == inp.height and out[ROW_ID].sort().equals(inp[ROW_ID].sort())


def _global_stage(stage: Any, label: str, layer: Layer, ctx: Context, engine: Any, out_dir: Path, shard_rows: int) -> Layer:
    base = layer
    if callable(getattr(stage, "map_shard", None)):
        p1 = out_dir / "phase1"
        p1.mkdir()
        res = engine.map_shards(map_shard_part, [(stage, layer, i, ctx, p1, label) for i in range(layer.n_shards)])
        base = Layer(p1, layer.n_shards, _union([r["columns"] for r in res]),
                     shards.combine(layer.fingerprint, [r["fp"] for r in res]), layer.rows, layer)
        base.save(out_dir.parent, moved=(out_dir, out_dir.parent / out_dir.name))
    reads = stage.reads(base.visible())
    given = None if reads is None else [c for c in dict.fromkeys(reads) if c in base.columns]
    if isinstance(stage, Planned) and stage.planned():
        return _planned_stage(stage, label, base, given, ctx, engine, out_dir)
    nar, shard_ids = shards.narrow(base, given)
    out = engine.run_stage(stage, nar, ctx)
    if given is None and not _same_rows(nar, out):  # a stage that makes new rows (sample): a new root layer
        return shards.write_root(out, out_dir, shard_rows)
    if ROW_ID not in out.columns or out.height != nar.height:
        shards.delta(nar, out, label)  # raises: the stage broke the shard contract
    out = out.with_columns(pl.col(c).cast(pl.Utf8) for c in shards.CATEGORICAL
                           if c in out.columns and out[c].dtype == pl.Categorical)
    if not out[ROW_ID].equals(nar[ROW_ID]):  # the stage set a new order (curriculum)
        out = out.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(shards.POS))
        ids = out.select(ROW_ID).join(nar.select(ROW_ID).with_columns(shard_ids), on=ROW_ID, how="left",
                                      maintain_order="left")["__shard"]
    else:
        ids = shard_ids
    d = shards.delta(nar, out, label)
    fps = shards.write_split_by_shard(d, ids, base.n_shards, out_dir)
    live = nar.height - sum(shards.counts_of(d).values())
    return Layer(out_dir, base.n_shards, shards.columns_after(base, list(nar.columns), out),
                 shards.combine(base.fingerprint, fps), live, base)


def summarize_shard(stage: Any, layer: Layer, i: int, ctx: Context, given: list[str] | None) -> dict[str, Any]:
    """A planned stage's ``summarize`` on shard ``i`` (its ``reads`` columns and :data:`ORDER`)."""
    want = None if given is None else [*given, *([shards.POS] if shards.POS in layer.columns else [])]
    df = shards.read(layer, i, want)
    order = pl.col(shards.POS) if shards.POS in df.columns else pl.col(ROW_ID)
    df = df.with_columns(order.alias(ORDER))
    if given is not None and shards.POS in df.columns and shards.POS not in given:
        df = df.drop(shards.POS)
    c = dataclasses.replace(ctx, stats={})
    return {"summary": stage.summarize(df, c), "cacheable": c.cacheable}


def apply_shard(stage: Any, layer: Layer, i: int, ctx: Context, given: list[str] | None, plan: Any,
                out_dir: Path, label: str) -> dict[str, Any]:
    """A planned stage's ``apply`` on shard ``i``: its delta part and stats (runs in any worker)."""
    inp = shards.read(layer, i, given)
    c = dataclasses.replace(ctx, stats={})
    out = stage.apply(inp, plan, c)
    d = shards.delta(inp, out, label)
    dropped = shards.counts_of(d)
    return {"fp": shards.write_part(d, out_dir / f"part-{i:05d}.parquet"), "stats": c.stats,
            "columns": shards.columns_after(layer, inp.columns, out), "rows_out": inp.height - sum(dropped.values()),
            "cacheable": c.cacheable}


def _planned_stage(stage: Any, label: str, base: Layer, given: list[str] | None, ctx: Context, engine: Any,
                   out_dir: Path) -> Layer:
    """A :class:`Planned` global stage: summaries per shard, one plan, then the plan applied per shard; no
    step holds a column of every row (issue 18)."""
    sums = engine.map_shards(summarize_shard, [(stage, base, i, ctx, given) for i in range(base.n_shards)])
    ctx.stats.clear()
    plan = stage.plan([r["summary"] for r in sums], ctx)
    ctx.cacheable = ctx.cacheable and all(r["cacheable"] for r in sums)
    del sums
    res = engine.map_shards(apply_shard, [(stage, base, i, ctx, given, plan, out_dir, label) for i in range(base.n_shards)])
    stats = stage.merge_applied(dict(ctx.stats), [r["stats"] for r in res])
    ctx.stats.clear()
    ctx.stats.update(stats)
    ctx.cacheable = ctx.cacheable and all(r["cacheable"] for r in res)
    return Layer(out_dir, base.n_shards, _union([r["columns"] for r in res]),
                 shards.combine(base.fingerprint, [r["fp"] for r in res]), sum(r["rows_out"] for r in res), base)


def _run_stage(stage: Any, label: str, layer: Layer, ctx: Context, key: str, engine: Any,
               lr: LoadedRecipe, cache_root: Path) -> tuple[Layer, StageRecord]:
    """Run one stage (not served from the cache) into its cache entry: (its layer, its funnel record)."""
    cls = type(stage)
    missing = [c for c in cls.requires if c not in layer.columns]
    if missing:
        raise RecipeError(
            f"{lr.path}: stage '{label}' needs column(s) {', '.join(missing)} that no earlier "
            f"source or stage produces"
        )
    start = time.perf_counter()
    final = cache_root / key
    with atomic_dir(final, on_exists="replace") as tmp:
        if cls.scope == "problem":
            new = _problem_stage(stage, label, layer, ctx, engine, tmp)
        else:
            new = _global_stage(stage, label, layer, ctx, engine, tmp, lr.recipe.shard_rows)
        if engine.name != "local" and (cls.scope == "problem" or (isinstance(stage, Planned) and stage.planned())
                                      or callable(getattr(stage, "map_shard", None))):
            ctx.stats["engine"] = engine.name  # its shards ran as the engine's tasks
        dropped = [shards.part_drops(new.part(i)) for i in range(new.n_shards)]
        rec = StageRecord(stage=label, type=cls.name, version=cls.version, cache_key=key, rows_in=layer.rows,
                          rows_out=new.rows, dropped=shards.drop_counts(dropped),
                          seconds=round(time.perf_counter() - start, 3), stats=shards.stats_json(ctx.stats))
        new.save(cache_root, moved=(tmp, final))
        (tmp / "stage.json").write_text(json.dumps({"record": asdict(rec), "reusable": ctx.cacheable}, default=str, indent=1))
    new = Layer.load(cache_root, key)
    assert new is not None
    return new, rec


def _execute(lr: LoadedRecipe, engine: Any, *, limit: int | None, resume: bool, console: Any) -> RunResult:
    from .progress import StageLog

    recipe = lr.recipe
    work = work_dir_for(recipe.name)
    cache_root = work / "cache"
    cache_root.mkdir(parents=True, exist_ok=True)
    slog = StageLog(len(recipe.stages) + 1)  # start/end line per stage (the `curate` logger)
    layer, bad, infos, src_rec = _load_sources(lr, limit, work, slog)
    release_memory()
    records = [src_rec]
    layers: list[tuple[str, Layer]] = []
    executed: list[str] = []
    public_stages = lr.public.get("stages") or []
    for idx, (cfg, label) in enumerate(zip(recipe.stages, lr.stage_labels())):
        stage = get_stage(cfg.type)(cfg)
        pub_cfg = public_stages[idx] if idx < len(public_stages) else cfg.model_dump(mode="json")
        ctx = Context(work_dir=work, base_dir=lr.base_dir, seed=recipe.seed, limit=limit, stage_label=label,
                      resume=resume, show_progress=bool(console is not None and getattr(console, "is_terminal", False)))
        # the key is the *content* of what the stage receives, never the upstream key
        key = _key(CACHE_FORMAT, layer.fingerprint, stage.name, stage.version, pub_cfg, stage.fingerprint(ctx), recipe.seed)
        hit = _load(cache_root, key) if resume else None
        if hit is not None:
            new, meta = hit
            rec = StageRecord(**{**meta["record"], "cached": True})
        else:
            slog.start(idx + 2, label, layer.rows)
            new, rec = _run_stage(stage, label, layer, ctx, key, engine, lr, cache_root)
            executed.append(label)
        records.append(rec)
        slog.end(idx + 2, rec)
        release_memory()
        layers.append((label, new))
        layer = new
    return RunResult(final=layer, layers=layers, bad=bad, records=records, inputs=infos, executed=executed)


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
        release_memory()
        result.version_dir = publish(lr, result, vdir, limit=limit)
    return result
