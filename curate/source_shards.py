"""The sources written to parquet shards on disk in bounded memory (the shard contract of issue 18).

``write_source_shards`` streams the rows of :class:`curate.sources.SourceRows` (the one implementation
behind ``load_sources``) chunk by chunk into ``out_dir/part-00000.parquet`` ... ``part-{n-1:05d}.parquet``:

* every row carries ``__rid`` (``curate.columns.ROW_ID``, Int64): its index in ``load_sources``' order;
* every row of one problem is in exactly one shard, ``shard_of(problem_id, n)`` (xxh3-64 of the id,
  modulo n: the same in every process and run);
* each shard holds its rows in ``__rid`` order (chunks arrive in source order and each is appended to
  its shards as a row group), so concatenating the shards and sorting by ``__rid`` gives exactly
  ``load_sources(...)[0]`` with the row index;
* ``n`` is 1 when the estimated row count is at most ``shard_rows`` (the one shard is then today's
  frame in today's order), else ``ceil(estimate / shard_rows)``. The estimate is cheap (parquet
  metadata, bytes / mean line size, x traces per row): a wrong one makes shards bigger or smaller,
  never wrong.

Memory: one chunk of raw rows and its normalised rows at a time (local jsonl/parquet/csv files are
read chunk by chunk), plus the set of problem ids seen (duplicate problems) and the trace counter per
problem. Hub datasets, presets, json files and ``shuffle: true`` sources are read whole first (their
raw frame is in memory while they are written), then written chunk by chunk the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .columns import ROW_ID
from .shards import shard_of  # noqa: F401  (re-exported: the one partition function)
from .sources import SourceRows

SAMPLE_ROWS = 10_000


@dataclass
class SourceShards:
    n_shards: int
    rows: int
    """Good rows written."""
    bad: pl.DataFrame
    """Rejected rows (empty_problem, duplicate_problem): ``load_sources``' second result."""
    infos: list[dict]
    """``load_sources``' third result."""
    columns: list[str]
    """Columns of the shards (``__rid`` first)."""
    sample: pl.DataFrame
    """The first ``min(rows, 10_000)`` good rows in source order (with ``__rid``)."""

    def paths(self, out_dir: Path) -> list[Path]:
        return [shard_path(out_dir, i) for i in range(self.n_shards)]


def shard_path(out_dir: Path, i: int) -> Path:
    return Path(out_dir) / f"part-{i:05d}.parquet"


class _Writers:
    """One parquet writer per shard; each write appends a row group (written to ``.tmp``, renamed on close)."""

    def __init__(self, out_dir: Path, n: int, schema: pa.Schema):
        self.out_dir, self.n, self.schema = out_dir, n, schema
        self.open: dict[int, pq.ParquetWriter] = {}

    def _tmp(self, i: int) -> Path:
        return shard_path(self.out_dir, i).with_suffix(".parquet.tmp")

    def write(self, i: int, df: pl.DataFrame) -> None:
        if i not in self.open:
            self.open[i] = pq.ParquetWriter(self._tmp(i), self.schema, compression="zstd")
        self.open[i].write_table(df.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(self.schema))

    def abort(self) -> None:
        for i, w in list(self.open.items()):
            w.close()
            self._tmp(i).unlink(missing_ok=True)
        self.open.clear()

    def close(self) -> None:
        for i in range(self.n):
            if i not in self.open:  # a shard no problem hashed to: an empty file with the columns
                self.open[i] = pq.ParquetWriter(self._tmp(i), self.schema, compression="zstd")
            self.open.pop(i).close()
            os.replace(self._tmp(i), shard_path(self.out_dir, i))


def write_source_shards(configs: list[Any], base_dir: Path, limit: int | None, out_dir: Path, shard_rows: int,
                        *, chunk_rows: int = 50_000) -> SourceShards:
    """Write the sources' good rows to ``out_dir/part-*.parquet`` (see the module doc)."""
    stream = SourceRows(configs, base_dir, limit, chunk_rows)
    estimate = stream.estimate()
    n = 1 if estimate <= shard_rows else math.ceil(estimate / shard_rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*.parquet"):
        old.unlink()
    empty = pl.DataFrame(schema={ROW_ID: pl.Int64, **stream.schema})
    writers = _Writers(out_dir, n, empty.to_arrow(compat_level=pl.CompatLevel.oldest()).schema)
    rid, sample = 0, [empty]
    try:
        for chunk in stream:
            chunk = chunk.select(pl.int_range(rid, rid + chunk.height, dtype=pl.Int64).alias(ROW_ID), pl.all())
            if rid < SAMPLE_ROWS:
                sample.append(chunk.head(SAMPLE_ROWS - rid))
            rid += chunk.height
            if n == 1:
                writers.write(0, chunk)
                continue
            parts = chunk.with_columns(shard_of(chunk["problem_id"], n).alias("__shard")).partition_by(
                "__shard", as_dict=True, include_key=False, maintain_order=True
            )
            for (i,), part in parts.items():
                writers.write(int(i), part)
    except BaseException:
        writers.abort()  # no part file of a failed run is left behind
        raise
    writers.close()
    return SourceShards(n, rid, stream.bad(), stream.infos, empty.columns, pl.concat(sample))
