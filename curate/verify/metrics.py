"""The one definition of pass@k and maj@k, used by the funnel (the verify stage) and by `curate eval`.

* **pass@k** (unbiased, Chen et al. 2021): per problem ``1 - C(n-c, k) / C(n, k)``. Defined only where
  n >= k: a problem with fewer samples has no pass@k (NaN per problem; left out of the mean).
* **maj@k**: the samples vote with their extracted answer (``pred_answer``); samples without an answer
  do not vote. Correct answers all equal the gold answer, so they vote as one answer whatever their
  spelling; wrong answers group by the normalised answer key. The problem scores the correctness of
  the winning answer; a tie scores the fraction of the tied answers that are correct (the expected
  value of a uniform random tie break: deterministic, no seed). No vote at all scores 0.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Sequence

import numpy as np
import polars as pl

from .normalize import normalize, string_key


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"):
    1 - C(n-c, k) / C(n, k), computed as a stable product. Needs 0 <= c <= n and k >= 1;
    k > n is answered for k = n (``pass_at_k_array`` and the aggregates leave those problems out instead)."""
    if n < 0 or c < 0 or c > n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (got n={n}, c={c}, k={k})")
    if n == 0:
        return 0.0
    k = min(k, n)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def answer_key(ans: str | None) -> str | None:
    """The key majority voting groups answers by: the normalised answer string."""
    if ans is None:
        return None
    if len(ans) > 1000:  # never normalise huge strings here (no timeout in this process)
        return ans
    return _key(ans)


@lru_cache(maxsize=1 << 16)
def _key(ans: str) -> str:
    # a pure function of the string; a problem's samples repeat answers (and the tally runs twice)
    return string_key(normalize(ans))


def pass_at_k_array(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per problem; NaN where n < k (pass@k is undefined there, not pass@n)."""
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    out = np.full(n.shape, np.nan, dtype=np.float64)
    for i, (ni, ci) in enumerate(zip(n.tolist(), c.tolist())):
        if ni >= k:
            out[i] = pass_at_k(ni, ci, k)
    return out


def _tally(answers: Sequence[str | None], correct: Sequence[bool | None]) -> tuple[Counter, dict]:
    votes: Counter[tuple[bool, str]] = Counter()
    shown: dict[tuple[bool, str], str] = {}
    for a, ok in zip(answers, correct):
        text = "" if a is None else str(a).strip()
        if not text:
            continue
        key = (True, "") if ok else (False, answer_key(text) or text)
        votes[key] += 1
        shown.setdefault(key, text)
    return votes, shown


def majority_score(answers: Sequence[str | None], correct: Sequence[bool | None]) -> tuple[float, str | None, int]:
    """maj score of one problem's votes: (score in [0, 1], a winning answer, number of tied winners).

    ``answers[i]`` is sample i's extracted answer (None/empty: no vote), ``correct[i]`` its verdict.
    See the module doc for the grouping and the tie rule.
    """
    votes, shown = _tally(answers, correct)
    if not votes:
        return 0.0, None, 0
    top = max(votes.values())
    winners = sorted((key for key, v in votes.items() if v == top), key=lambda kk: (not kk[0], kk[1]))
    score = sum(1.0 for ok, _ in winners if ok) / len(winners)
    return score, shown[winners[0]], len(winners)


def majority_count(answers: Sequence[str | None], correct: Sequence[bool | None]) -> int:
    """How many votes the winning answer got (0 when no sample produced an answer)."""
    votes, _ = _tally(answers, correct)
    return max(votes.values(), default=0)


def problem_aggregates(df: pl.DataFrame, ks: Sequence[int] = (1, 4, 8)) -> pl.DataFrame:
    """One row per ``problem_id`` (in first-seen order): n_samples, n_correct, maj_answer, maj_count, maj_score
    (maj over all of the problem's samples, in ``sample_index`` order when present), maj_correct
    (maj_score == 1: the majority is unambiguously correct) and ``pass@k`` for each k (NaN where
    n_samples < k)."""
    need = {"problem_id", "pred_answer", "correct"}
    missing = need - set(df.columns)
    if missing:
        from ..errors import SourceError

        raise SourceError(f"problem_aggregates: frame lacks column(s) {', '.join(sorted(missing))}")
    cols = ["problem_id", "pred_answer", "correct"] + (["sample_index"] if "sample_index" in df.columns else [])
    keyed = df.select(cols).with_columns(pl.int_range(pl.len()).alias("_order"))
    order = ["sample_index", "_order"] if "sample_index" in cols else ["_order"]
    g = keyed.group_by("problem_id", maintain_order=True).agg(
        pl.len().alias("n_samples"),
        pl.col("correct").fill_null(False).sum().cast(pl.Int64).alias("n_correct"),
        pl.col("pred_answer").cast(pl.Utf8).sort_by(order).alias("_answers"),
        pl.col("correct").fill_null(False).sort_by(order).alias("_oks"),
    )
    pairs = list(zip(g["_answers"].to_list(), g["_oks"].to_list()))
    votes = [majority_score(a, o) for a, o in pairs]
    n, c = g["n_samples"].to_numpy(), g["n_correct"].to_numpy()
    out = g.drop("_answers", "_oks").with_columns(
        pl.Series("maj_answer", [v[1] for v in votes], dtype=pl.Utf8),
        pl.Series("maj_score", [v[0] for v in votes], dtype=pl.Float64),
        pl.Series("maj_count", [majority_count(a, o) for a, o in pairs], dtype=pl.Int64),
    ).with_columns((pl.col("maj_score") == 1.0).alias("maj_correct"))
    return out.with_columns([pl.Series(f"pass@{k}", pass_at_k_array(n, c, k), dtype=pl.Float64) for k in ks])
