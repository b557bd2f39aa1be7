"""Work shards: how rows live on disk between stages, in bounded memory.

The rows of a run are split into parquet *shards*, each holding whole problems (every row of one
``problem_id`` is in one shard) and carrying the hidden ``__rid`` column (the row's position in the
sources' order). What a stage produces is a :class:`Layer`: per shard, only ``__rid``, the columns the
stage added or changed and its ``drop_reason`` marks; every other column is read from the layer below.
So a cached stage never stores a column it did not change (the traces are stored once, by the source),
and reading a shard's live rows joins a short chain of small files by ``__rid``, reading only the
columns asked for.

A *root* layer (the sources; a stage that makes new rows, such as ``sample``) stores every column.
A stage that reorders the rows (curriculum) records the new order in the hidden ``__pos`` column; the
published split is written in ``__pos`` order if a stage set one, else in ``__rid`` (source) order.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from .columns import DROP_REASON as DROP
from .columns import ROW_ID, ROW_POS
from .errors import CurateError
from .fingerprint import frame_fingerprint

POS = ROW_POS
HIDDEN = (ROW_ID, POS)
CATEGORICAL = ("problem",)
"""Columns constant per problem that narrow reads hand over as pl.Categorical (one string per problem)."""


def public(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` without the runner's and the stages' hidden ``__*`` columns (row ids, order, per-shard measures)."""
    return df.drop([c for c in df.columns if c.startswith("__")])


def shard_of(problem_ids: pl.Series, n: int) -> pl.Series:
    """The shard of each row: a stable hash of its problem id, modulo ``n`` (same in every process)."""
    if n <= 1:
        return pl.Series("shard", [0] * len(problem_ids), dtype=pl.UInt32)
    vals = problem_ids.cast(pl.Utf8).fill_null("").to_list()
    return pl.Series("shard", [xxhash.xxh3_64_intdigest(v.encode()) % n for v in vals], dtype=pl.UInt32)


@dataclass
class Layer:
    """One stage's output on disk (see the module docstring)."""

    dir: Path
    n_shards: int
    columns: list[str]
    """Columns of the live rows after this layer, in order (hidden ones included)."""
    fingerprint: str
    """Content fingerprint of the live rows (parent's fingerprint + this layer's parts)."""
    rows: int
    parent: Layer | None = None

    def part(self, i: int) -> Path:
        return self.dir / f"part-{i:05d}.parquet"

    @property
    def ordered_by(self) -> str:
        return POS if POS in self.columns else ROW_ID

    def visible(self) -> list[str]:
        return [c for c in self.columns if c not in HIDDEN]

    def save(self, root: Path, moved: tuple[Path, Path] | None = None) -> None:
        """Write ``layer.json``; ``moved``: (temporary folder, final folder) it is about to be renamed to."""
        meta = {"n_shards": self.n_shards, "columns": self.columns, "fingerprint": self.fingerprint,
                "rows": self.rows, "parent": None}
        if self.parent is not None:
            pdir = self.parent.dir
            if moved is not None and (pdir == moved[0] or moved[0] in pdir.parents):
                pdir = moved[1] / pdir.relative_to(moved[0])
            meta["parent"] = {"ref": pdir.relative_to(root).as_posix(), "fingerprint": self.parent.fingerprint}
        (self.dir / "layer.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, root: Path, ref: str) -> Layer | None:
        """The layer at ``root/ref`` with its parents, or None when it or a parent is missing or changed."""
        d = root / ref
        try:
            meta = json.loads((d / "layer.json").read_text())
        except (OSError, ValueError):
            return None
        parent = None
        if meta["parent"] is not None:
            parent = cls.load(root, meta["parent"]["ref"])
            if parent is None or parent.fingerprint != meta["parent"]["fingerprint"]:
                return None  # the layer below was recomputed: this one no longer applies
        if not all((d / f"part-{i:05d}.parquet").exists() for i in range(meta["n_shards"])):
            return None
        return cls(d, meta["n_shards"], meta["columns"], meta["fingerprint"], meta["rows"], parent)


# ----------------------------------------------------------------------------- reading


def read(layer: Layer, i: int, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """The live rows of shard ``i`` after ``layer`` (all columns, or ``columns`` + ``__rid``), in shard order."""
    want = None if columns is None else {*columns, ROW_ID}
    df = _read(layer, i, want)
    cols = [c for c in layer.columns if want is None or c in want]
    return df.select([c for c in cols if c in df.columns])


def _read(layer: Layer, i: int, want: set[str] | None) -> pl.DataFrame:
    path = layer.part(i)
    stored = pl.read_parquet_schema(path)
    if layer.parent is None:
        df = pl.read_parquet(path, columns=[c for c in stored if want is None or c in want or c == DROP])
    else:
        own = [c for c in stored if c not in (ROW_ID, DROP) and (want is None or c in want)]
        need = None if want is None else {c for c in want if c not in own}
        base = _read(layer.parent, i, need)
        d = pl.read_parquet(path, columns=[ROW_ID, *own, *([DROP] if DROP in stored else [])])
        base = base.drop([c for c in own if c in base.columns])
        if d.height == base.height and d[ROW_ID].equals(base[ROW_ID]):
            df = pl.concat([base, d.drop(ROW_ID)], how="horizontal")
        else:
            df = base.join(d, on=ROW_ID, how="left", maintain_order="left")
    if DROP in df.columns:
        df = df.filter(pl.col(DROP).is_null()).drop(DROP)
    return df


def read_all(layer: Layer, columns: Iterable[str] | None = None) -> pl.DataFrame:
    """Every live row (in memory: for small results and tests), in the dataset's order, hidden columns kept."""
    parts = [read(layer, i, columns) for i in range(layer.n_shards)]
    df = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    return df.sort(layer.ordered_by) if layer.ordered_by in df.columns else df


def read_rejected(layer: Layer, i: int) -> pl.DataFrame | None:
    """The rows of shard ``i`` that ``layer`` dropped: the columns they had, the layer's own, ``drop_reason``."""
    path = layer.part(i)
    stored = pl.read_parquet_schema(path)
    if DROP not in stored:
        return None
    d = pl.read_parquet(path).filter(pl.col(DROP).is_not_null())
    if d.height == 0:
        return None
    if layer.parent is None:
        return d
    base = _read(layer.parent, i, None)
    base = base.drop([c for c in d.columns if c != ROW_ID and c in base.columns])
    out = base.join(d, on=ROW_ID, how="inner", maintain_order="left")
    order = [c for c in layer.columns if c in out.columns]
    return out.select([*order, *[c for c in out.columns if c not in order]])


def narrow(layer: Layer, columns: list[str] | None) -> tuple[pl.DataFrame, pl.Series]:
    """Every live row with only ``columns`` (+ ``__rid``), in the dataset's order, and each row's shard.
    Problem-constant text columns come as pl.Categorical (one string per problem in memory)."""
    want = None if columns is None else [*columns, POS] if POS in layer.columns else columns
    parts = []
    for i in range(layer.n_shards):
        df = read(layer, i, want)
        if columns is not None:
            df = df.with_columns(pl.col(c).cast(pl.Categorical) for c in CATEGORICAL if c in df.columns and df[c].dtype == pl.Utf8)
        parts.append(df.with_columns(pl.lit(i, pl.UInt32).alias("__shard")))
    df = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
    if POS in df.columns:
        df = df.sort(POS).drop(POS)
    elif layer.n_shards > 1:
        df = df.sort(ROW_ID)  # the dataset's order (source order), not the shards'
    return df.drop("__shard"), df["__shard"]


# ----------------------------------------------------------------------------- writing


def delta(inp: pl.DataFrame, out: pl.DataFrame, label: str) -> pl.DataFrame:
    """What ``out`` (a stage's result for the rows ``inp``) adds to them: ``__rid``, new and changed
    columns and ``drop_reason``. A stage must keep ``__rid`` and every row (drop rows by marking them)."""
    if ROW_ID not in out.columns:
        raise CurateError(f"stage '{label}' removed the hidden row id column {ROW_ID} (stages must keep it)")
    if out.height != inp.height:
        raise CurateError(f"stage '{label}' returned {out.height} rows for {inp.height}; mark drops with drop_reason instead")
    same = out[ROW_ID].equals(inp[ROW_ID])
    aligned = inp if same else out.select(ROW_ID).join(inp, on=ROW_ID, how="left", maintain_order="left")
    keep = [ROW_ID]
    for c in out.columns:
        if c == ROW_ID:
            continue
        if c == DROP or c not in aligned.columns:
            keep.append(c)
            continue
        a, b = out[c], aligned[c]
        if b.dtype == pl.Categorical and a.dtype in (pl.Categorical, pl.Utf8):
            a, b = a.cast(pl.Utf8), b.cast(pl.Utf8)
        if a.dtype != b.dtype or not a.equals(b, check_names=False, null_equal=True):
            keep.append(c)
    return out.select(keep)


def write_part(df: pl.DataFrame, path: Path) -> str:
    """Write one part; returns its content fingerprint."""
    df.write_parquet(path, statistics=False)
    return frame_fingerprint(df)


def combine(parent_fp: str | None, part_fps: list[str]) -> str:
    h = xxhash.xxh3_128()
    h.update((parent_fp or "root").encode())
    for fp in part_fps:
        h.update(fp.encode())
    return h.hexdigest()


def columns_after(parent: Layer, given: list[str], out: pl.DataFrame) -> list[str]:
    """The layer's columns: the parent's (less those ``run`` was given and did not return), then new ones."""
    removed = {c for c in given if c not in out.columns}
    cols = [c for c in parent.columns if c not in removed]
    return cols + [c for c in out.columns if c not in cols and c != DROP]


def write_split_by_shard(d: pl.DataFrame, shards: pl.Series, n: int, out_dir: Path) -> list[str]:
    """Write a global stage's delta (rows of every shard) as one part per shard; returns the part fingerprints."""
    d = d.with_columns(shards.alias("__shard"))
    fps = []
    for i in range(n):
        fps.append(write_part(d.filter(pl.col("__shard") == i).drop("__shard"), out_dir / f"part-{i:05d}.parquet"))
    return fps


def write_root(df: pl.DataFrame, out_dir: Path, shard_rows: int) -> Layer:
    """A root layer from new rows (a stage that makes rows): numbered in order, split by problem."""
    df = df.drop([c for c in HIDDEN if c in df.columns]).with_row_index(ROW_ID).with_columns(pl.col(ROW_ID).cast(pl.Int64))
    n = max(1, math.ceil(df.height / max(1, shard_rows)))
    key = df["problem_id"] if "problem_id" in df.columns else df[ROW_ID].cast(pl.Utf8)
    fps = write_split_by_shard(df, shard_of(key, n), n, out_dir)
    live = df.height - (int(df[DROP].is_not_null().sum()) if DROP in df.columns else 0)
    cols = [c for c in df.columns if c != DROP]
    return Layer(out_dir, n, cols, combine(None, fps), live)


# ----------------------------------------------------------------------------- the dataset's order


def iter_ordered(layer: Layer, tmp: Path, bucket_rows: int) -> Iterator[pl.DataFrame]:
    """The live rows in the dataset's order, chunk by chunk, in bounded memory (a bucket sort on disk
    by ``__pos``/``__rid`` when there are several shards). Hidden columns are kept."""
    key = layer.ordered_by
    if layer.n_shards == 1:
        df = read(layer, 0)
        yield df.sort(key) if key in df.columns else df
        return
    top = max((int(read(layer, i, [key])[key].max() or 0) for i in range(layer.n_shards)), default=0) + 1
    buckets = max(1, math.ceil(layer.rows / max(1, bucket_rows)))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for i in range(layer.n_shards):
            df = read(layer, i).with_columns((pl.col(key) * buckets // top).cast(pl.Int64).alias("__bucket"))
            for (b,), part in df.partition_by("__bucket", as_dict=True).items():
                part.drop("__bucket").write_parquet(tmp / f"b{int(b):06d}-{i:05d}.parquet")
            del df
        for b in range(buckets):
            files = sorted(tmp.glob(f"b{b:06d}-*.parquet"))
            if files:
                yield pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").sort(key)
                for f in files:
                    f.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def drop_counts(parts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def counts_of(d: pl.DataFrame) -> dict[str, int]:
    if DROP not in d.columns:
        return {}
    g = d.filter(pl.col(DROP).is_not_null()).group_by(DROP).len()
    return {str(r[DROP]): int(r["len"]) for r in g.to_dicts()}


def part_drops(path: Path) -> dict[str, int]:
    """Rows a part marks dropped, by reason."""
    if DROP not in pl.read_parquet_schema(path):
        return {}
    return counts_of(pl.read_parquet(path, columns=[DROP]))


def stats_json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))
