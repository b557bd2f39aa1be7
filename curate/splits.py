"""The published splits, written from the work shards in bounded memory: ``train`` in the dataset's order
(a bucket sort on disk across shards), ``rejected`` source first then stage by stage, both as
``<split>-<i>-of-<n>.parquet`` files of ``output.shard_rows`` rows with one schema per split; and the
training columns (``messages``, ``prompt``/``completion``) added chunk by chunk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from .columns import ROW_ID
from .shards import Layer, iter_ordered, public, read_rejected
from .traces import join as assistant_content

FORMAT_ROWS = 10_000


def add_formats(df: pl.DataFrame, formats: list[str]) -> pl.DataFrame:
    """Add ``messages`` and/or ``completion`` (with the existing chat ``prompt``) training columns."""
    if df.height == 0 or "reasoning" not in df.columns or "answer_text" not in df.columns:
        return df
    msg_t = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
    contents = [assistant_content(r, a) for r, a in zip(df["reasoning"].to_list(), df["answer_text"].to_list())]
    if "prompt" in df.columns:
        prompts = df["prompt"].to_list()
    else:
        prompts = [[{"role": "user", "content": p or ""}] for p in df["problem"].to_list()]
    cols = {}
    if "messages" in formats:
        cols["messages"] = pl.Series(
            [list(p) + [{"role": "assistant", "content": c}] for p, c in zip(prompts, contents)], dtype=msg_t
        )
    if "prompt_completion" in formats:
        if "prompt" not in df.columns:
            cols["prompt"] = pl.Series(prompts, dtype=msg_t)
        cols["completion"] = pl.Series([[{"role": "assistant", "content": c}] for c in contents], dtype=msg_t)
    return df.with_columns(**cols)


class SplitWriter:
    """Writes one split as ``<split>-<i>-of-<n>.parquet`` files of ``shard_rows`` rows from chunks as they
    come, each chunk appended as row groups (memory: one chunk, whatever the file size)."""

    def __init__(self, data_dir: Path, split: str, total: int, shard_rows: int, schema: dict | None = None):
        self.dir, self.split, self.rows = data_dir, split, shard_rows
        self.n = max(1, -(-total // shard_rows))
        self.names: list[str] = []
        self.schema = schema
        self.arrow: Any = None
        self.writer: Any = None
        self.in_file = 0

    def add(self, df: pl.DataFrame) -> None:
        if self.schema is not None:
            df = pl.concat([pl.DataFrame(schema=self.schema), df], how="diagonal_relaxed").select(list(self.schema))
        while True:
            if self.writer is None:
                self._open(df)
            last = len(self.names) == self.n
            room = df.height if last else self.rows - self.in_file
            part, df = df.slice(0, room), df.slice(room)
            if part.height or self.in_file == 0:
                table = part.to_arrow()
                self.writer.write_table(table if table.schema == self.arrow else table.cast(self.arrow))
                self.in_file += part.height
            if not last and self.in_file >= self.rows:
                self._close()
            if df.height == 0:
                return

    def _open(self, df: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        if self.arrow is None:
            self.arrow = df.clear().to_arrow().schema
        name = f"{self.split}-{len(self.names):05d}-of-{self.n:05d}.parquet"
        self.writer = pq.ParquetWriter(self.dir / name, self.arrow, compression="zstd")
        self.names.append(f"data/{name}")
        self.in_file = 0

    def _close(self) -> None:
        self.writer.close()
        self.writer = None

    def close(self) -> list[str]:
        while len(self.names) < self.n or self.writer is not None:
            if self.writer is None:
                self._open(pl.DataFrame(schema=self.schema or {}))
                self.writer.write_table(self.arrow.empty_table())
            self._close()
        return self.names


def write_train(result: Any, tmp: Path, recipe: Any) -> list[str]:
    """The train split in the dataset's order (a bucket sort on disk across work shards)."""
    w = SplitWriter(tmp / "data", "train", result.final.rows, recipe.output.shard_rows)
    for chunk in iter_ordered(result.final, tmp / ".sort", bucket_rows=recipe.shard_rows):
        for part in public(chunk).iter_slices(FORMAT_ROWS):  # the training columns are built in Python
            w.add(add_formats(part, recipe.output.formats))
    return w.close()


def write_rejected(result: Any, tmp: Path, recipe: Any) -> tuple[list[str], int]:
    """The rejected split (source, then stage by stage), with one schema over all its files."""
    spill = tmp / ".rejected"
    spill.mkdir()
    files, schema, total = [], pl.DataFrame(), 0
    for k, chunk in enumerate(iter_rejected(result.bad, result.layers)):
        f = spill / f"{k:06d}.parquet"
        chunk.write_parquet(f)
        files.append(f)
        schema = pl.concat([schema, chunk.clear()], how="diagonal_relaxed")
        total += chunk.height
    names: list[str] = []
    if total:
        w = SplitWriter(tmp / "data", "rejected", total, recipe.output.shard_rows, dict(schema.schema))
        for f in files:
            w.add(pl.read_parquet(f))
        names = w.close()
    shutil.rmtree(spill, ignore_errors=True)
    return names, total


def iter_rejected(bad: pl.DataFrame, layers: list[tuple[str, Layer]]) -> Iterator[pl.DataFrame]:
    """The rejected rows, source first, then stage by stage and shard by shard, with ``dropped_by``."""
    if bad.height:
        yield bad.with_columns(pl.lit("source").alias("dropped_by"))
    for label, layer in layers:
        for i in range(layer.n_shards):
            rej = read_rejected(layer, i)
            if rej is not None:
                rej = public(rej.sort(ROW_ID))
                yield rej.with_columns(pl.lit(label).alias("dropped_by"))
