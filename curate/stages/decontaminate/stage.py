"""decontaminate: drop rows whose text overlaps a benchmark set.

    - type: decontaminate
      benchmarks:
        - gsm8k                                   # a preset (curate/presets.py): hub id + fields
        - data/my_test.jsonl                      # a local file (text field: problem)
        - {preset: math500}
        - {name: my_test, path: data/test.jsonl, field: question}           # local jsonl/json/parquet/csv
        - {name: aime, hub: org/aime, config: default, split: test, field: problem, revision: main}
      field: problem            # row text to check (problem | reasoning | both | any text column)
      ngram: 8                  # n-grams of words and numbers (open-r1 / s1 use 8; LaTeX and punctuation ignored)
      min_overlap: 3            # rarity-weighted shared n-grams that make a row contaminated
      minhash: true             # also MinHash similarity (catches light edits)
      minhash_ngram: 1
      minhash_threshold: 0.5
      minhash_min_shingles: 15  # MinHash only between texts of 15+ distinct words

Contaminated rows are dropped with ``contaminated:<benchmark>`` (the first benchmark, in the order
listed, that matched); ``ctx.stats["contamination"]`` holds the per-benchmark table for the card and
the manifest: ``contaminated`` counts the rows dropped for that benchmark (so the table adds up to
the funnel), ``matched`` every row that matched it (also those an earlier benchmark took). Its examples carry the matched n-gram,
the row's own problem (cut to 120 characters) and the benchmark row index, never the benchmark text.
``fingerprint`` hashes the benchmark files (and hub coordinates) into the stage's cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from ...columns import ROW_ID
from ...dedup.contamination import BenchmarkIndex, ContamParams, Match
from ...errors import RecipeError, SourceError
from ...presets import get_preset
from ..base import DROP, Context, Stage, mark_drop
from .config import BenchmarkSpec, DecontaminateConfig  # noqa: F401
from .kernels import ContamKernel, matches_of


def _hub_frame(spec: BenchmarkSpec, path: str, config: str | None, split: str, revision: str | None) -> pl.DataFrame:
    from ...readers import read_hub

    df, _ = read_hub(path, config, split, revision, what=f"decontaminate: benchmark '{spec.label}' (hub)",
                     hint=f"download it and give a local file instead: {{name: {spec.label}, path: FILE, field: ...}}")
    return df


def _hub_coords(spec: BenchmarkSpec) -> tuple[str, str | None, str, str | None, str]:
    """(path, config, split, revision, field) of a preset or hub benchmark."""
    if spec.preset:
        pr = get_preset(spec.preset)
        return (pr.path, spec.config or pr.config, spec.split or pr.split, spec.revision or pr.revision,
                spec.field or pr.problem_field)
    return str(spec.hub), spec.config, spec.split or "test", spec.revision, spec.field or "problem"


def load_benchmark(spec: BenchmarkSpec, ctx: Context) -> tuple[list[str], list[int], str]:
    """(texts, rows, where) of one benchmark set: the non-empty texts and their row indices in the
    benchmark file/split; raises a one-line SourceError naming file and field."""
    if spec.path:
        from ...readers import read_file

        p = ctx.resolve(spec.path)
        if not p.exists():
            raise SourceError(f"decontaminate: benchmark '{spec.label}': file {p} does not exist")
        frame, where, fld = read_file(p, spec.format), str(p), spec.field or "problem"
    else:
        path, config, split, revision, fld = _hub_coords(spec)
        hub_path = str(ctx.resolve(path)) if ctx.resolve(path).exists() else path
        frame, where = _hub_frame(spec, hub_path, config, split, revision), f"hub {path} ({split})"
    if fld not in frame.columns:
        raise SourceError(
            f"decontaminate: benchmark '{spec.label}' ({where}): field '{fld}' not found "
            f"(columns: {', '.join(frame.columns) or 'none'}); set field:"
        )
    pairs = [(t, i) for i, t in enumerate(frame[fld].cast(pl.Utf8).to_list()) if t]
    return [t for t, _ in pairs], [i for _, i in pairs], where


def load_benchmark_texts(spec: BenchmarkSpec, ctx: Context) -> tuple[list[str], str]:
    """(texts, where) of one benchmark set; raises a one-line SourceError naming file and field."""
    texts, _, where = load_benchmark(spec, ctx)
    return texts, where


def _hash_path(h: Any, p: Path) -> None:
    """Feed a file's (or a folder's files') bytes into ``h``; a missing path hashes as such."""
    if p.is_file():
        files = [(p.name, p)]
    elif p.is_dir():
        files = sorted((f.relative_to(p).as_posix(), f) for f in p.rglob("*") if f.is_file())
    else:
        h.update(b"missing\0")
        return
    for name, f in files:
        h.update(name.encode("utf-8") + b"\0" + f.stat().st_size.to_bytes(8, "little"))
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)


EXAMPLE_CHARS = 120


def _clip(text: str, n: int = EXAMPLE_CHARS) -> str:
    """The row's own text for a report example, cut to ``n`` characters (benchmark text never goes out)."""
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


class DecontaminateStage(Stage):
    name = "decontaminate"
    Config = DecontaminateConfig
    version = "3"  # 3: words-and-numbers tokens, rarity-weighted overlap, contaminated = rows it dropped
    requires = ("problem",)
    produces = ()
    scope = "problem"  # a row's outcome depends on its own text only (the benchmark index is read-only)

    def merge_stats(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Counts add; each benchmark's examples are the whole frame's first ``max_examples`` matched texts (in
        source order, ``__rid``, else the parts' order), from the keys each part carries in ``_merge``."""
        from ..verify import merge_counts

        clean = [{k: v for k, v in p.items() if k != "_merge"} for p in parts]
        out = merge_counts(clean)
        if len(parts) == 1 or "contamination" not in out:
            return out
        cached = [p.get("index_cached", {}) for p in parts]  # the stage found an index only if every shard did
        out["index_cached"] = {k: all(c.get(k, True) for c in cached) for k in out.get("index_cached", {})}
        offset, keyed = 0, {}
        for p in parts:
            for label, rows in p.get("_merge", {}).get("examples", {}).items():
                table = p["contamination"][label]
                for ex, (key, digest) in zip(table["examples"], rows):
                    at = key if p["_merge"]["keys"] == "rid" else key + offset
                    if digest not in keyed.setdefault(label, {}) or at < keyed[label][digest][0]:
                        keyed[label][digest] = (at, ex)
            offset += int(p.get("_merge", {}).get("rows", 0))
        for label, table in out["contamination"].items():
            first = next(p["contamination"][label] for p in parts if label in p.get("contamination", {}))
            table["benchmark_rows"], table["source"] = first["benchmark_rows"], first["source"]
            found = sorted(keyed.get(label, {}).values(), key=lambda x: x[0])
            table["examples"] = [ex for _, ex in found[: self.config.max_examples]]  # type: ignore[attr-defined]
        return out

    def check(self, ctx: Context) -> None:
        for b in self.config.benchmarks:  # type: ignore[attr-defined]
            if b.path and not ctx.resolve(b.path).exists():
                raise RecipeError(f"decontaminate: benchmark '{b.label}': file {ctx.resolve(b.path)} does not exist")

    def fingerprint(self, ctx: Context) -> str | None:
        """sha256 over the bytes of every local benchmark file (and of a local folder given as hub),
        plus (path, config, split, revision) of hub/preset sets: an edited benchmark file recomputes
        the stage instead of serving a cached result. Files are hashed, not parsed."""
        h = hashlib.sha256()
        for spec in self.config.benchmarks:  # type: ignore[attr-defined]
            h.update(json.dumps(["benchmark", spec.label]).encode("utf-8"))
            if spec.path:
                h.update(b"file\0")
                _hash_path(h, ctx.resolve(spec.path))
            else:
                path, config, split, revision, fld = _hub_coords(spec)
                h.update(json.dumps(["hub", path, config, split, revision, fld]).encode("utf-8"))
                local = ctx.resolve(path)
                if local.exists():  # a local dataset folder given as hub: its content counts
                    _hash_path(h, local)
        return h.hexdigest()

    def _params(self) -> ContamParams:
        """The index parameters: the config's fields of the same name (the seed stays ContamParams')."""
        names = {f.name for f in dataclasses.fields(ContamParams)} - {"seed"}
        return ContamParams(**self.config.model_dump(include=names))

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        cfg: DecontaminateConfig = self.config  # type: ignore[assignment]
        cols = ["problem", "reasoning"] if cfg.field == "both" else [cfg.field]
        for c in cols:
            if c not in df.columns:
                raise RecipeError(
                    f"stage {ctx.stage_label or self.name}: field '{c}' is not a column of the input "
                    f"(columns: {', '.join(df.columns)})"
                )
        text = pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in cols], separator="\n\n")
        alive = pl.col(DROP).is_null() if DROP in df.columns else pl.lit(True)
        work = df.with_columns(_text=text, _alive=alive)
        uniq = work.filter(pl.col("_alive")).select("_text").unique(maintain_order=True)["_text"].to_list()
        # every benchmark loaded (and its index built or loaded) first: a bad benchmark fails before any work
        sets, indexes, cached = [], [], {}
        for spec in cfg.benchmarks:
            texts, rows, where = load_benchmark(spec, ctx)
            index, cached[spec.label] = BenchmarkIndex.load_or_build(texts, self._params(), ctx.work_dir / "decontam_index")
            sets.append((spec, len(texts), rows, where))
            indexes.append(index)
        # the per-text check is the kernel (an engine may run it anywhere); the report and drops: here
        found = ctx.map(ContamKernel(tuple(indexes)), pl.DataFrame({"text": uniq}, schema={"text": pl.Utf8}))
        row_count = work.filter(pl.col("_alive")).group_by("_text").len()
        count_of = dict(zip(row_count["_text"].to_list(), row_count["len"].to_list()))
        # each text's place in the frame (its first row: __rid when the runner gave one, else its position):
        # the report's examples come in that order, and merge_stats orders the shards' examples by it
        alive_rows = work.filter(pl.col("_alive"))
        if ROW_ID in work.columns:
            firsts = alive_rows.group_by("_text").agg(pl.col(ROW_ID).min())
            first_of = dict(zip(firsts["_text"].to_list(), firsts[ROW_ID].to_list()))
        else:
            pos = alive_rows.with_row_index("_pos").group_by("_text").agg(pl.col("_pos").min())
            first_of = dict(zip(pos["_text"].to_list(), pos["_pos"].to_list()))
        keys = [int(first_of[t]) for t in uniq]
        reason_of: dict[str, str] = {}
        merge: dict[str, Any] = {"keys": "rid" if ROW_ID in work.columns else "position", "rows": work.height,
                                 "examples": {}}
        table = {}
        for k, (spec, n, rows, where) in enumerate(sets):
            table[spec.label], merge["examples"][spec.label] = self._report(
                matches_of(found, k), uniq, keys, count_of, reason_of, spec, n, rows, where)
        reasons = pl.DataFrame(
            {"_text": list(reason_of), "_reason": list(reason_of.values())}, schema={"_text": pl.Utf8, "_reason": pl.Utf8}
        )
        out = work.join(reasons, on="_text", how="left", maintain_order="left")
        out = mark_drop(out, pl.col("_alive") & pl.col("_reason").is_not_null(), pl.col("_reason"))
        out = out.drop("_text", "_alive", "_reason")
        ctx.stats["contamination"] = table
        ctx.stats["index_cached"] = cached
        ctx.stats["rows_contaminated"] = int(sum(count_of.get(t, 0) for t in reason_of))
        ctx.stats["_merge"] = merge
        return out

    def _report(self, found: dict[int, Match], uniq: list[str], keys: list[int], count_of: dict[str, int],
                reason_of: dict[str, str], spec: BenchmarkSpec, n_texts: int, rows: list[int], where: str
                ) -> tuple[dict[str, Any], list[list[Any]]]:
        """One benchmark's row of the contamination table and its examples' (place, text digest) pairs;
        sets the drop reason of the texts it takes first (``reason_of``: text -> reason, in benchmark order)."""
        methods = {"ngram": 0, "minhash": 0}
        examples: list[dict[str, Any]] = []
        example_keys: list[list[Any]] = []
        taken = 0
        for i, m in sorted(found.items(), key=lambda im: (keys[im[0]], im[0])):
            t = uniq[i]
            methods[m.method] += count_of.get(t, 0)
            if t not in reason_of:
                reason_of[t] = f"contaminated:{spec.label}"
                taken += count_of.get(t, 0)
            if len(examples) < self.config.max_examples:  # type: ignore[attr-defined]
                example_keys.append([keys[i], hashlib.sha256(t.encode("utf-8")).hexdigest()[:16]])
                examples.append(
                    {
                        "problem": _clip(t),
                        "benchmark_index": rows[m.bench_row],
                        "matched": m.matched,
                        "method": m.method,
                        "similarity": round(m.similarity, 4) if not math.isnan(m.similarity) else None,
                        "score": m.score if m.method == "ngram" else None,
                    }
                )
        return {
            "checked": int(sum(count_of.values())),
            "contaminated": int(taken),
            "matched": int(sum(count_of.get(uniq[i], 0) for i in found)),
            "method_counts": methods,
            "examples": examples,
            "benchmark_rows": n_texts,
            "source": where,
        }, example_keys
