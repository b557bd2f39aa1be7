"""``decontaminate`` on Ray: the benchmark index is built (or loaded from its cache) on the driver, as
locally, and the per-text check (:meth:`curate.dedup.BenchmarkIndex.check`: n-gram overlap, then
MinHash) runs over Ray Data ``map_batches`` with a copy of the index in every task. Each text is
checked on its own, so the matches are the local ones; the stage's own code builds the table,
the stats and the drop reasons on the driver."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import polars as pl
import pyarrow as pa

from ..dedup.contamination import BenchmarkIndex, Match
from ..stages.base import Context, Stage

if TYPE_CHECKING:
    from .ray_engine import RayEngine
from .ray_common import ROW, distributed, rebind

_ARRAYS = ("ng_hash", "ng_row", "ng_df", "sigs", "set_offsets", "set_values")


def _plain(index: BenchmarkIndex) -> BenchmarkIndex:
    """The index as a plain BenchmarkIndex (what the workers get), without a built LSH."""
    return BenchmarkIndex(index.texts, index.params, {k: getattr(index, k) for k in _ARRAYS})


def _check_batch(batch: pa.Table, index: BenchmarkIndex) -> pa.Table:
    rows = batch.column(ROW).to_pylist()
    found = index.check(batch.column("text").to_pylist())
    items = [dataclasses.asdict(dataclasses.replace(m, row=rows[i])) for i, m in sorted(found.items())]
    return pa.Table.from_pylist([{ROW: it["row"], **it} for it in items], schema=_SCHEMA)


_PA = {"int": pa.int64(), "str": pa.string(), "float": pa.float64()}
_SCHEMA = pa.schema(
    [(ROW, pa.int64())]
    + [(f.name, _PA[f.type if isinstance(f.type, str) else f.type.__name__]) for f in dataclasses.fields(Match)]
)


def ray_index_class(engine: RayEngine) -> type[BenchmarkIndex]:
    class RayBenchmarkIndex(BenchmarkIndex):
        def check(self, texts: Sequence[str | None]) -> dict[int, Match]:
            table = pa.table({"text": pa.array(list(texts), type=pa.large_string())})
            out = engine.map_arrow(table, _check_batch, _plain(self))
            fields = [f.name for f in dataclasses.fields(Match)]
            return {int(r["row"]): Match(**{k: r[k] for k in fields}) for r in out.select(fields).to_pylist()}

    return RayBenchmarkIndex


@distributed("decontaminate")
def run_decontaminate(engine: RayEngine, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    run = rebind(type(stage).run, BenchmarkIndex=ray_index_class(engine))
    return run(stage, df, ctx)
