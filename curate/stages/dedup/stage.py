"""dedup: exact and MinHash-LSH near-duplicate removal.

    - type: dedup
      field: problem          # problem | reasoning | both (problem + reasoning) | any text column
      scope: problem          # problem: a duplicate problem takes all its samples with it; sample: per row
      method: minhash         # exact (normalised-text hash only) | minhash (exact + near duplicates)
      shingle: word           # word | char n-grams
      ngram: 2                # default 2 for field problem (short texts), else 5
      num_perm: 128
      threshold: 0.6          # Jaccard of the shingle sets; default 0.6 for field problem, else 0.8
      keep: first            # first | most_correct | shortest | longest
      merge_different_answers: false   # near-duplicate problems whose gold answers differ stay apart
      merge_different_numbers: false   # near-duplicate problems whose numbers differ stay apart

Two problems that read alike but ask for different answers ("Find 1/2 (3/4)^3" and
"Find 2/3 (2/3)^2 2/3", similarity 0.68 in word 2-grams) are different problems: with
``field: problem`` a near-duplicate pair is only merged when the gold answers agree (when both are
known; compared as numbers, else as normalised LaTeX) and the texts hold the same numbers (as a
multiset). The pairs kept apart are counted in ``kept_apart``. Exact duplicates (same normalised
text) are always merged.

Adds ``cluster_id`` (id of the kept member of the row's cluster; the row's own id when unique) and
``duplicate_of`` (id of the kept member, on dropped rows). Dropped rows get ``exact_duplicate`` or
``near_duplicate``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import polars as pl

from ...dedup.cluster import choose_kept, cluster_labels, find_duplicates
from ...dedup.minhash import MAX_BUCKET, MinHashParams
from ...errors import RecipeError
from ..base import DROP, ORDER, Context, Planned, Stage, mark_drop
from .config import DedupConfig  # noqa: F401


def _text_cols(fld: str) -> list[str]:
    return ["problem", "reasoning"] if fld == "both" else [fld]


def _text(df: pl.DataFrame, fld: str, where: str) -> pl.Expr:
    cols = _text_cols(fld)
    for c in cols:
        if c not in df.columns:
            raise RecipeError(f"{where}: field '{c}' is not a column of the input (columns: {', '.join(df.columns)})")
    exprs = [pl.col(c).cast(pl.Utf8).fill_null("") for c in cols]
    return pl.concat_str(exprs, separator="\n\n") if len(exprs) > 1 else exprs[0]


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ANSWER_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\$|\s+|\.$")


def numbers_of(text: str | None) -> tuple[str, ...]:
    """The numbers of a text as a sorted tuple (thousands separators dropped): the multiset that
    must agree for two problems to be near duplicates."""
    t = _THOUSANDS.sub("", text or "")
    out = []
    for m in _NUMBER.findall(t):
        out.append(m.rstrip("0").rstrip(".") if "." in m else (m.lstrip("0") or "0"))
    return tuple(sorted(out))


def answer_key(ans: str | None) -> str | None:
    """A comparison key for a gold answer: the number it states (``72``, ``72.0``, ``1,000``), else
    the LaTeX without spacing, ``$``, ``\\left``/``\\right`` and ``\\dfrac``/``\\tfrac`` spelling."""
    if ans is None or not str(ans).strip():
        return None
    s = _ANSWER_NOISE.sub("", str(ans)).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    try:
        x = float(_THOUSANDS.sub("", s))
        if math.isfinite(x):
            return repr(round(x, 9))
    except ValueError:
        pass
    return s.lower()


_LENGTH_COLS = ("reasoning", "answer_text")


def _length(df: pl.DataFrame, keep: str) -> pl.Expr:
    """Row length for keep shortest/longest (completion_tokens, else characters); 0 otherwise (no text read)."""
    if keep not in ("shortest", "longest"):
        return pl.lit(0.0)
    if "completion_tokens" in df.columns:
        return pl.col("completion_tokens").cast(pl.Float64)
    cols = [c for c in _LENGTH_COLS if c in df.columns] or ["problem"]
    return pl.sum_horizontal([pl.col(c).cast(pl.Utf8).fill_null("").str.len_chars() for c in cols]).cast(pl.Float64)


class DedupStage(Planned, Stage):
    name = "dedup"
    Config = DedupConfig
    version = "1"
    requires = ("problem",)
    produces = ("cluster_id", "duplicate_of")

    max_bucket: int | None = MAX_BUCKET
    """LSH bucket fan-out cap (:func:`curate.dedup.minhash.band_pairs`); None: all pairs of every bucket."""

    def reads(self, columns: list[str]) -> list[str] | None:
        """Only what run() needs for this config: the unit id, the text field(s), gold_answer (answers
        kept apart), correct (keep most_correct), completion_tokens or the text lengths (keep
        shortest/longest) and drop_reason."""
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        want: list[str] = []
        if cfg.scope == "problem":
            want.append("problem_id" if "problem_id" in columns else "problem")
        else:
            want += [next((c for c in ("sample_id", "problem_id") if c in columns), "")]
        want += _text_cols(cfg.field)
        if cfg.field == "problem" and cfg.method == "minhash" and not cfg.merge_different_answers:
            want.append("gold_answer")
        if cfg.keep == "most_correct":
            want.append("correct")
        if cfg.keep in ("shortest", "longest"):
            lens = [c for c in _LENGTH_COLS if c in columns] or ["problem"]
            want += ["completion_tokens"] if "completion_tokens" in columns else lens
        want.append(DROP)
        return [c for c in dict.fromkeys(want) if c in columns]

    def planned(self) -> bool:
        """By problem, the runner runs it planned: per shard one row per problem (its text, no row of its
        samples) goes to ``plan``, which finds the duplicates; ``apply`` marks each shard's rows. By sample,
        the units are rows: ``run`` on the narrow rows."""
        return self.config.scope == "problem"  # type: ignore[attr-defined]

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        if self.planned():
            return Planned.run(self, df, ctx)
        rows, where = self._rows(df, ctx)
        units, unit_col = self._units(rows, df, where)
        return _mark_units(df, rows, self._decide(units, unit_col, ctx), unit_col)

    def _rows(self, df: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, str]:
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        where = f"stage {ctx.stage_label or self.name}"
        for c in _text_cols(cfg.field):
            if c not in df.columns:
                raise RecipeError(f"{where}: field '{c}' is not a column of the input (columns: {', '.join(df.columns)})")
        if cfg.keep == "most_correct" and "correct" not in df.columns:
            raise RecipeError(f"{where}: keep 'most_correct' needs the 'correct' column (put verify before dedup)")
        alive = pl.col(DROP).is_null() if DROP in df.columns else pl.lit(True)
        rows = df.with_row_index("_row").with_columns(
            _len=_length(df, cfg.keep),
            _correct=pl.col("correct").cast(pl.Float64).fill_null(0.0) if "correct" in df.columns else pl.lit(0.0),
            _alive=alive,
        )
        return rows, where

    def summarize(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """This shard's problems (live ones): id, text, gold answer, first position, live rows, length, correct."""
        rows, where = self._rows(df.drop(ORDER, strict=False), ctx)
        order = df[ORDER] if ORDER in df.columns else pl.int_range(rows.height, dtype=pl.Int64, eager=True)
        units, _ = self._units(rows.with_columns(order.alias(ORDER)), df, where)
        return units.drop([c for c in ("problem", "_row") if c in units.columns and c != self._unit_col(df)])

    def plan(self, parts: list[pl.DataFrame], ctx: Context) -> dict[str, Any]:
        """The duplicates among every shard's problems (in the dataset's order): per problem its cluster,
        the kept one and the reason it is dropped."""
        units = pl.concat(parts, how="vertical_relaxed").sort(ORDER)
        unit_col = next(c for c in ("problem_id", "problem") if c in units.columns)
        return {"units": self._decide(units, unit_col, ctx), "unit_col": unit_col}

    def apply(self, df: pl.DataFrame, plan: dict[str, Any], ctx: Context) -> pl.DataFrame:
        rows, _ = self._rows(df, ctx)
        unit_col = plan["unit_col"]
        units = plan["units"].with_columns(pl.col(unit_col).cast(df.schema[unit_col]))
        return _mark_units(df, rows, units, unit_col)

    def _unit_col(self, df: pl.DataFrame) -> str | None:
        if self.config.scope != "problem":  # type: ignore[attr-defined]
            return None
        return "problem_id" if "problem_id" in df.columns else "problem"

    def _decide(self, units: pl.DataFrame, unit_col: str | None, ctx: Context) -> pl.DataFrame:
        """Find the duplicates among ``units``: the per-unit frame ``_mark_units`` joins (cluster_id,
        duplicate_of, _reason); the stats (rows_dropped: the dropped units' live rows) go to ``ctx.stats``."""
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        texts = units["_text"]  # a polars Series: workers get it chunk by chunk (no full Python copy)
        numbers = None
        if cfg.field == "problem" and cfg.method == "minhash" and not cfg.merge_different_numbers:
            numbers = [numbers_of(t) for t in texts]
        res = self._find(texts, ctx, None if numbers is None else _groups(numbers))
        n = len(texts)
        kept_apart = {"different_answers": 0, "different_numbers": 0}
        if cfg.field == "problem" and len(res.pairs_i) and not (cfg.merge_different_answers and cfg.merge_different_numbers):
            res = self._keep_apart(res, units, kept_apart, numbers)
        score = {
            "first": np.arange(n, dtype=np.float64),
            "shortest": units["_len"].fill_null(0.0).to_numpy().astype(np.float64),
            "longest": -units["_len"].fill_null(0.0).to_numpy().astype(np.float64),
            "most_correct": -units["_correct"].to_numpy().astype(np.float64),
        }[cfg.keep]
        kept = choose_kept(res.labels, score) if n else np.empty(0, dtype=np.int64)
        dropped = kept != np.arange(n)
        exact = res.keys == res.keys[kept]
        rows_dropped = int(units["_rows"].filter(pl.Series(dropped)).sum()) if n else 0  # the units' live rows
        ctx.stats.update(self._stats(res, texts, (dropped, exact), kept_apart, rows_dropped))
        return _unit_frame(units, unit_col, kept, dropped, exact)

    def _units(self, rows: pl.DataFrame, df: pl.DataFrame, where: str) -> tuple[pl.DataFrame, str | None]:
        """The live units to compare (problems or rows) and, by problem, the column naming them. By
        problem, texts are cast to Utf8 only after reducing to one row per problem (a Categorical
        problem column stays one dictionary entry per problem, not a string per row)."""
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        unit_col = None
        gold = "gold_answer" in df.columns
        if cfg.scope == "problem":
            unit_col = "problem_id" if "problem_id" in df.columns else "problem"
            units = (
                rows.filter(pl.col("_alive"))
                .group_by(unit_col, maintain_order=True)
                .agg(
                    *([pl.col("problem").first()] if unit_col != "problem" else []),
                    pl.col("_len").mean(),
                    pl.col("_correct").sum(),
                    pl.len().alias("_rows"),
                    *([pl.col(ORDER).min()] if ORDER in rows.columns else []),
                    *([pl.col("gold_answer").first().alias("_gold")] if gold else []),
                )
            )
            units = units.with_columns(
                _text=_text(units, cfg.field, where),
                _uid=pl.col(unit_col).cast(pl.Utf8),
                **({"_gold": pl.col("_gold").cast(pl.Utf8)} if gold else {}),
            )
        else:
            uid = (
                pl.col("sample_id").cast(pl.Utf8)
                if "sample_id" in df.columns
                else (pl.col("problem_id").cast(pl.Utf8) if "problem_id" in df.columns else pl.col("_row").cast(pl.Utf8))
            )
            golds = [pl.col("gold_answer").cast(pl.Utf8).alias("_gold")] if gold else []
            units = rows.filter(pl.col("_alive")).select(
                uid.alias("_uid"), _text(rows, cfg.field, where).alias("_text"), "_len", "_correct", "_row", *golds,
                pl.lit(1, pl.UInt32).alias("_rows"),
            )
        return units, unit_col

    def _find(self, texts: pl.Series, ctx: Context, groups: np.ndarray | None = None) -> Any:
        """Exact / near duplicates among the texts (MinHash + LSH), by the engine's finder where it has one."""
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        params = MinHashParams(
            num_perm=cfg.num_perm, seed=cfg.seed, scheme=cfg.scheme, ngram=cfg.ngram, shingle=cfg.shingle
        )
        # an engine may bring its own (distributed) duplicate finder with the same contract (ctx.executor)
        finder = getattr(ctx.executor, "find_duplicates", None) or find_duplicates
        with ctx.progress(len(texts), f"{ctx.stage_label or self.name}: MinHash") as bar:
            return finder(
                texts,
                params,
                cfg.threshold,
                near=cfg.method == "minhash",
                verify=cfg.verify,
                lsh_threshold=cfg.lsh_threshold,
                lsh_weights=cfg.lsh_weights,
                num_proc=cfg.num_proc or ctx.num_proc,
                progress=bar.advance,
                groups=groups,
                max_bucket=self.max_bucket,
            )

    def _stats(self, res: Any, texts: pl.Series, marks: tuple[np.ndarray, np.ndarray],
               kept_apart: dict[str, int], rows_dropped: int) -> dict[str, Any]:
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        dropped, exact = marks
        n = len(texts)
        n_exact = int((dropped & exact).sum())
        n_near = int((dropped & ~exact).sum())
        sizes = np.bincount(res.labels) if n else np.empty(0, dtype=np.int64)
        return {
            "units": n,
            "scope": cfg.scope,
            "exact_duplicates": n_exact,
            "near_duplicates": n_near,
            "clusters_with_duplicates": int((sizes > 1).sum()),
            "largest_cluster": int(sizes.max()) if n else 0,
            "kept_apart": kept_apart,
            "lsh_candidates": res.n_candidates,
            "lsh_bands_rows": list(res.lsh_params) if res.lsh_params else None,
            "rows_dropped": rows_dropped,
            "examples": [
                {"kept": texts[int(a)][:300], "dropped": texts[int(b)][:300], "similarity": round(float(s), 4)}
                for a, b, s in list(zip(res.pairs_i, res.pairs_j, res.similarity))[:5]
            ],
        }

    def _keep_apart(self, res, units: pl.DataFrame, counts: dict, numbers: list | None = None) -> object:
        """Drop the near-duplicate pairs whose gold answers (both known) or numbers differ, and
        re-cluster (exact duplicates stay together)."""
        cfg: DedupConfig = self.config  # type: ignore[assignment]
        pi, pj = res.pairs_i, res.pairs_j
        ok = np.ones(len(pi), dtype=bool)
        involved = np.unique(np.concatenate([pi, pj])).tolist()
        if not cfg.merge_different_answers and "_gold" in units.columns:
            golds = units["_gold"]
            key = {k: answer_key(golds[k]) for k in involved}
            for k, (a, b) in enumerate(zip(pi.tolist(), pj.tolist())):
                ka, kb = key[a], key[b]
                if ka is not None and kb is not None and ka != kb:
                    ok[k] = False
                    counts["different_answers"] += 1
        if not cfg.merge_different_numbers:
            texts = units["_text"]
            nums = {k: numbers[k] if numbers is not None else numbers_of(texts[k]) for k in involved}
            for k, (a, b) in enumerate(zip(pi.tolist(), pj.tolist())):
                if ok[k] and nums[a] != nums[b]:
                    ok[k] = False
                    counts["different_numbers"] += 1
        if ok.all():
            return res
        _, first, inv = np.unique(res.keys, return_index=True, return_inverse=True)
        rep = first[inv.reshape(-1)]
        pi, pj, sim = pi[ok], pj[ok], res.similarity[ok]
        import dataclasses

        return dataclasses.replace(res, labels=cluster_labels(rep, pi, pj), pairs_i=pi, pairs_j=pj, similarity=sim)


def _groups(numbers: list[tuple[str, ...]]) -> np.ndarray:
    """A uint64 per unit: equal for units with the same numbers (LSH never needs to pair other numbers)."""
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest("\x1f".join(t).encode()) for t in numbers), dtype=np.uint64, count=len(numbers))


def _unit_frame(units: pl.DataFrame, unit_col: str | None, kept: np.ndarray, dropped: np.ndarray,
                exact: np.ndarray) -> pl.DataFrame:
    """Per unit: cluster_id, duplicate_of and the drop reason, keyed by the unit's id (by problem) or row."""
    n = len(units)
    uids = np.asarray(units["_uid"].to_list(), dtype=object)
    reason = np.where(dropped, np.where(exact, "exact_duplicate", "near_duplicate"), None)
    unit_frame = pl.DataFrame(
        {
            "_uid": uids.tolist(),
            "cluster_id": uids[kept].tolist() if n else [],
            "duplicate_of": np.where(dropped, uids[kept], None).tolist() if n else [],
            "_reason": reason.tolist() if n else [],
        },
        schema={"_uid": pl.Utf8, "cluster_id": pl.Utf8, "duplicate_of": pl.Utf8, "_reason": pl.Utf8},
    )
    if unit_col is not None:  # by problem: units are unique problem ids: every sample of a problem joins its unit
        return unit_frame.drop("_uid").with_columns(units[unit_col])  # the id in its own dtype (Categorical too)
    return unit_frame.drop("_uid").with_columns(units["_row"])  # units are rows: by row position


def _mark_units(df: pl.DataFrame, rows: pl.DataFrame, unit_frame: pl.DataFrame, unit_col: str | None) -> pl.DataFrame:
    """cluster_id / duplicate_of on every row, and the duplicates marked dropped (live rows only)."""
    out = rows.join(unit_frame, on=unit_col or "_row", how="left", maintain_order="left")
    out = out.with_columns(pl.when(pl.col("_alive")).then(pl.col("_reason")).alias("_reason"))
    out = mark_drop(out, pl.col("_reason").is_not_null(), pl.col("_reason"))
    out = out.drop("_row", "_len", "_correct", "_alive", "_reason", *[c for c in ("_uid", "_text") if c in out.columns])
    cols = [c for c in df.columns if c not in ("cluster_id", "duplicate_of")]
    out = out.select(*cols, "cluster_id", "duplicate_of", *([DROP] if DROP not in cols else []))
    return out
