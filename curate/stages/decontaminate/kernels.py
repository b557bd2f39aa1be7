"""The ``decontaminate`` stage's kernel: the row-wise work an engine may run anywhere (one text checked
against every benchmark index; see :class:`curate.context.Kernel`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import polars as pl

from ...dedup.contamination import BenchmarkIndex, Match

MATCH_DTYPE = pl.Struct({f.name: {"int": pl.Int64, "str": pl.Utf8, "float": pl.Float64}[str(f.type)]
                         for f in dataclasses.fields(Match) if f.name != "row"})


@dataclass(frozen=True)
class ContamKernel:
    """The ``decontaminate`` stage's kernel (:class:`curate.context.Kernel`): each text of a batch
    checked against every benchmark index (:meth:`BenchmarkIndex.check`); one struct column
    ``match_<k>`` per index (the :class:`Match` fields, null where no match). Each text is checked
    on its own, so any batching gives the same matches; read them back with :func:`matches_of`."""

    indexes: tuple[BenchmarkIndex, ...]
    inputs: tuple[str, ...] = ("text",)

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        texts = batch.get_column("text").to_list()
        cols = []
        for k, index in enumerate(self.indexes):
            vals: list[dict | None] = [None] * len(texts)
            for i, m in (index.check(texts) if texts else {}).items():
                vals[i] = {f: v for f, v in dataclasses.asdict(m).items() if f != "row"}
            cols.append(pl.Series(f"match_{k}", vals, dtype=MATCH_DTYPE))
        return pl.DataFrame(cols)


def matches_of(found: pl.DataFrame, k: int) -> dict[int, Match]:
    """The matches of index ``k`` in a :class:`ContamKernel` result, as :meth:`BenchmarkIndex.check` gives them."""
    col = found.get_column(f"match_{k}")
    return {i: Match(row=i, **v) for i, v in enumerate(col.to_list()) if v is not None}
