"""Per-row trace-quality measures and flags, vectorised with polars string expressions.

``measure(df, cfg)`` adds per-row numbers (columns prefixed ``audit_``, independent of other rows);
``audit_frame(df, cfg)`` adds ``reasoning_tokens``, ``reflections_per_1k`` and ``flags`` (a list of
strings, see ``config.ALL_FLAGS``). Nothing is dropped.

Columns read (all optional except ``reasoning``): ``reasoning``, ``answer_text``, ``problem``,
``finish_reason``, ``verdict``, ``correct``, ``pred_answer`` and ``think_status`` (written by the
``messages`` splitter of :mod:`curate.audit.load`: ok | missing | unclosed | orphan_close).
"""

from __future__ import annotations

import functools
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from .config import AuditConfig

#: Scripts compared between problem and reasoning (Greek is left out: it is math notation).
SCRIPTS: dict[str, str] = {
    "latin": r"\p{Latin}",
    "han": r"\p{Han}",
    "kana": r"[\p{Hiragana}\p{Katakana}]",
    "hangul": r"\p{Hangul}",
    "cyrillic": r"\p{Cyrillic}",
    "arabic": r"\p{Arabic}",
    "hebrew": r"\p{Hebrew}",
    "devanagari": r"\p{Devanagari}",
    "thai": r"\p{Thai}",
}
_NON_LATIN_LETTER = r"[\p{L}--\p{Latin}--\p{Greek}]"
#: The token approximation: one per CJK/kana/hangul character, per digit, per letter run (split
#: at 12 letters), per other symbol. Close to BPE counts on math text (digits are split by the
#: Qwen/Llama-3 tokenizers too); documented in docs/audit.md.
APPROX_TOKEN_RE = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]|\d|[^\W\d_\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]{1,12}|[^\w\s]"
_BOXED = r"\\(?:boxed|fbox)\s*\{"
_LAST_BOXED = r"(?s).*\\(?:boxed|fbox)\s*\{((?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*)\}"
_AFTER_BOXED = r"(?s).*\\(?:boxed|fbox)\s*\{(?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*\}(.*)$"
_ANSWER_WORDS = r"(?i)final answer|answer is|answer:|####"
_SENTENCE = r"[^.!?\n]{%d,}"
_TRUNC_REASONS = ["length", "max_tokens", "max_length"]


def _col(df: pl.DataFrame, name: str, dtype: Any = pl.Utf8) -> pl.Expr:
    if name in df.columns:
        return pl.col(name).cast(dtype, strict=False)
    return pl.lit(None, dtype=dtype)


def _blank(e: pl.Expr) -> pl.Expr:
    return e.is_null() | ~e.str.contains(r"\S")


def reflection_regex(markers: list[str]) -> str:
    """One case-insensitive alternation; ASCII word boundaries (fast) unless a marker is not ASCII
    (CJK markers such as 等等 then match anywhere)."""
    words = [m.strip() for m in markers if m.strip()]
    if not words:
        return r"[^\s\S]"  # matches nothing
    alts = "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in words)
    if all(m.isascii() for m in words):
        return r"(?i-u)\b(?:" + alts + r")\b"
    return r"(?i)(?:" + alts + r")"


def _repeat_counts(tails: pl.Series, min_chars: int) -> np.ndarray:
    """Occurrences of the most frequent sentence/line (>= min_chars) in each tail."""
    n = len(tails)
    s = (
        pl.DataFrame({"t": tails})
        .with_row_index("i")
        .select("i", pl.col("t").str.extract_all(_SENTENCE % min_chars).alias("s"))
        .explode("s")
        .drop_nulls("s")
        .with_columns(pl.col("s").str.strip_chars())
        .filter(pl.col("s").str.len_chars() >= min_chars)
        .group_by("i", "s")
        .len()
        .group_by("i")
        .agg(pl.col("len").max())
    )
    out = np.zeros(n, dtype=np.int64)
    out[s["i"].to_numpy()] = s["len"].to_numpy()
    return out


def _loop_repeats(t: str, min_loop_chars: int, probe: int = 32, step: int = 128, max_unit: int = 600) -> int:
    """The most back-to-back copies of one unit anywhere in ``t`` (a degenerate loop, with or
    without punctuation, maybe cut mid-unit by truncation). Probes every ``step`` characters from
    the end: the unit is the stretch back to the previous occurrence of the ``probe`` characters
    there (at most ``max_unit`` long); copies are counted both ways. 0 when the loop covers fewer
    than ``min_loop_chars`` characters."""
    n = len(t)
    best = 0
    pos = n - probe
    while pos >= probe:
        j = t.rfind(t[pos : pos + probe], max(0, pos - max_unit), pos + probe - 1)
        if j >= 0:
            p = pos - j
            unit = t[j:pos]
            c, k = 1, pos
            while t[k : k + p] == unit:
                c, k = c + 1, k + p
            k = j - p
            while k >= 0 and t[k : k + p] == unit:
                c, k = c + 1, k - p
            if c > best and c * p >= min_loop_chars:
                best = c
        pos -= step
    return best


def _tail_scan(tails: pl.Series, min_loop_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(zlib compression ratio, loop repeats) per tail; ratio 0 for tails under 1000 chars."""
    ratio = np.zeros(len(tails), dtype=np.float64)
    loops = np.zeros(len(tails), dtype=np.int64)
    for i, t in enumerate(tails.to_list()):
        if not t:
            continue
        loops[i] = _loop_repeats(t, min_loop_chars)
        if len(t) >= 1000:
            b = t.encode("utf-8", "replace")
            ratio[i] = len(b) / max(1, len(zlib.compress(b, 1)))
    return ratio, loops


def _script_counts(texts: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"t": texts}).select(
        [pl.col("t").str.count_matches(p).fill_null(0).alias(k) for k, p in SCRIPTS.items()]
    )


def _foreign_letters(reasoning: pl.Series, problem: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(letters of the reasoning in a script foreign to the problem, letters of the reasoning)."""
    n = len(reasoning)
    foreign = np.zeros(n, dtype=np.int64)
    letters = np.zeros(n, dtype=np.int64)
    need = (
        pl.DataFrame({"r": reasoning, "p": problem})
        .select(
            (pl.col("r").str.contains(_NON_LATIN_LETTER).fill_null(False)
             | pl.col("p").str.contains(_NON_LATIN_LETTER).fill_null(False)).alias("need")
        )["need"]
        .to_numpy()
    )
    idx = np.flatnonzero(need)
    if len(idx) == 0:
        return foreign, letters
    rc = _script_counts(reasoning.gather(idx)).to_numpy()
    pc = _script_counts(problem.gather(idx)).to_numpy()
    names = list(SCRIPTS)
    latin, han, kana = names.index("latin"), names.index("han"), names.index("kana")
    ptot = pc.sum(axis=1, keepdims=True)
    # the problem's scripts: each with >= 10% of its letters; no letters at all -> Latin
    allowed = pc >= np.maximum(1, 0.1 * ptot)
    allowed[ptot[:, 0] == 0, latin] = True
    allowed[allowed[:, kana], han] = True  # Japanese mixes kana and kanji
    non_latin_problem = ~allowed[:, latin]
    allowed[non_latin_problem, latin] = True  # Latin letters are math notation there
    foreign[idx] = np.where(allowed, 0, rc).sum(axis=1)
    letters[idx] = rc.sum(axis=1)
    return foreign, letters


@functools.lru_cache(maxsize=2)
def _tokenizer(name: str) -> Any:
    """Loaded once per process (the measures run batch by batch)."""
    from ..errors import RecipeError, require

    tr = require("transformers", "train", "a tokenizer for the audit")
    try:
        return tr.AutoTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - any load failure is a config fault
        raise RecipeError(f"audit.tokenizer: cannot load tokenizer '{name}' ({type(e).__name__}: {e})") from None


def count_tokens(texts: pl.Series, tokenizer: str | None) -> np.ndarray:
    if tokenizer is None:
        return pl.DataFrame({"t": texts}).select(
            pl.col("t").str.count_matches(APPROX_TOKEN_RE).fill_null(0)
        )["t"].to_numpy().astype(np.int64)
    tok = _tokenizer(tokenizer)
    out = np.zeros(len(texts), dtype=np.int64)
    vals = texts.fill_null("").to_list()
    for start in range(0, len(vals), 1024):
        enc = tok(vals[start : start + 1024], add_special_tokens=False)["input_ids"]
        out[start : start + len(enc)] = [len(x) for x in enc]
    return out


def measure(df: pl.DataFrame, cfg: AuditConfig | None = None) -> pl.DataFrame:
    """Add per-row measures (``audit_*`` columns and ``reasoning_tokens``/``reflections_per_1k``)."""
    cfg = cfg or AuditConfig()
    src = df
    missing = [c for c in ("reasoning", "answer_text", "problem") if c not in df.columns]
    df = df.with_columns([pl.lit(None, dtype=pl.Utf8).alias(c) for c in missing])
    r = _col(df, "reasoning").fill_null("")
    a = _col(df, "answer_text").fill_null("")
    tail = r.str.slice(-cfg.tail_chars)
    m = df.select(
        r.str.len_chars().alias("audit_chars"),
        _blank(_col(df, "answer_text")).alias("_answer_blank"),
        _blank(_col(df, "reasoning")).alias("_reasoning_blank"),
        r.str.slice(0, 4 * cfg.min_reasoning_chars + 4096)
        .str.contains(r"(?:\S\s*){%d}" % cfg.min_reasoning_chars).alias("_enough_reasoning"),
        (r.str.count_matches("<think>", literal=True) + a.str.count_matches("<think>", literal=True)).alias("_open"),
        (r.str.count_matches("</think>", literal=True) + a.str.count_matches("</think>", literal=True)).alias("_close"),
        tail.str.contains(_BOXED).alias("_boxed_tail"),
        a.str.contains(_BOXED).alias("_boxed_ans"),
        tail.str.extract(_LAST_BOXED, 1).str.replace_all(r"\s+", "").alias("_last_tail"),
        a.str.extract(_LAST_BOXED, 1).str.replace_all(r"\s+", "").alias("_last_ans"),
        tail.str.contains(_ANSWER_WORDS).alias("_answer_words"),
        r.str.count_matches(reflection_regex(cfg.reflection_markers)).alias("_reflections"),
        tail.alias("_tail"),
        # what follows the closing brace of the last \boxed{} of the whole trace
        pl.concat_str([r, a], separator="\n").str.extract(_AFTER_BOXED, 1).alias("_after"),
    )
    tails = m["_tail"]
    reasoning = df.select(r.alias("r"))["r"]
    # the language check reads the whole trace: a plain chain of thought, or token soup written after
    # the answer, sits in answer_text
    whole = df.select(pl.concat_str([r, a], separator="\n").alias("w"))["w"]
    after = m["_after"].fill_null("")
    problem = df.select(_col(df, "problem").fill_null("").alias("p"))["p"]
    # the tail scan is a Python loop (holds the GIL); polars releases it, so they overlap
    with ThreadPoolExecutor(max_workers=1) as pool:
        scan = pool.submit(_tail_scan, tails, cfg.loop_min_chars)
        tokens = count_tokens(reasoning, cfg.tokenizer)
        foreign, letters = _foreign_letters(whole, problem)
        after_foreign, _ = _foreign_letters(after, problem)
        repeats = _repeat_counts(tails, cfg.repeat_min_chars)
        ratio, loops = scan.result()
    refl = m["_reflections"].to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_1k = np.where(tokens > 0, refl * 1000.0 / np.maximum(tokens, 1), 0.0)
    m = m.drop("_tail", "_reflections").with_columns(
        # what the flags read of the text, as per-row booleans (the kernel's columns carry no text)
        (pl.col("_last_tail").is_not_null() & pl.col("_last_ans").is_not_null()
         & (pl.col("_last_tail") != pl.col("_last_ans"))).fill_null(False).alias("_boxed_differs"),
        after.str.len_chars().alias("audit_after_chars"),
        pl.Series("audit_after_foreign", after_foreign, dtype=pl.Int64),
        pl.Series("reasoning_tokens", tokens, dtype=pl.Int64),
        pl.Series("reflections_per_1k", np.round(per_1k, 3), dtype=pl.Float64),
        pl.Series("audit_repeat", np.maximum(repeats, loops), dtype=pl.Int64),
        pl.Series("audit_compress", np.round(ratio, 3), dtype=pl.Float64),
        pl.Series("audit_foreign", foreign, dtype=pl.Int64),
        pl.Series("audit_letters", letters, dtype=pl.Int64),
    )
    return pl.concat([src, m], how="horizontal")


@dataclass(frozen=True)
class MeasureKernel:
    """:func:`measure` as the audit stage's kernel (:class:`curate.context.Kernel`): the per-row
    measures of a batch (only the new columns); the flags, which need the whole frame's length
    reference, are :func:`audit_frame` (``measured=``) on the driver."""

    cfg: AuditConfig
    inputs: tuple[str, ...] = ("reasoning", "answer_text", "problem")
    batch_rows: int = 50_000  # locally: in chunks, for a progress bar with rows/s

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        m = measure(batch, self.cfg)
        return m.select([c for c in m.columns[batch.width:] if c not in TEXT_MEASURES])


TEXT_MEASURES = ("_last_tail", "_last_ans", "_after")
"""Text columns of :func:`measure` (shown on the trace page) that the flags do not read: the kernel leaves
them out, so its columns are a few numbers and booleans per row whatever the trace's length."""
FLAG_INPUTS = ("finish_reason", "verdict", "correct", "pred_answer", "think_status")
"""The columns besides the kernel's that :func:`flag_exprs` reads (all optional; never the traces)."""


def length_stats(tokens: np.ndarray) -> tuple[float, float] | None:
    """(median, MAD) of log1p(tokens) over non-empty rows; None when too few or degenerate."""
    x = np.log1p(tokens[tokens > 0].astype(np.float64))
    if len(x) < 3:
        return None
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    return (med, mad) if mad > 0 else None


def length_z(tokens: np.ndarray, stats: tuple[float, float] | None) -> np.ndarray:
    if stats is None:
        return np.zeros(len(tokens))
    med, mad = stats
    return 0.6745 * (np.log1p(tokens.astype(np.float64)) - med) / mad


def flag_exprs(df: pl.DataFrame, cfg: AuditConfig) -> dict[str, pl.Expr]:
    """One boolean expression per flag over a measured frame (the :class:`MeasureKernel` columns and
    the ``FLAG_INPUTS`` present; the traces themselves are not read)."""
    finish = _col(df, "finish_reason").str.to_lowercase()
    verdict = _col(df, "verdict").str.to_lowercase()
    correct = _col(df, "correct", pl.Boolean)
    pred = _col(df, "pred_answer")
    think = _col(df, "think_status")
    unclosed = (pl.col("_open") > pl.col("_close")) | (think == "unclosed")
    if cfg.expect_think:  # R1-style: the final answer must follow the think block
        has_answer = ~pl.col("_answer_blank")
    else:
        has_answer = ~pl.col("_answer_blank") | ~_blank(pred) | pl.col("_boxed_tail") | pl.col("_answer_words")
    missing_think = (think == "missing") if "think_status" in df.columns else (pl.col("_reasoning_blank") & ~pl.col("_answer_blank"))
    return {
        "truncated": finish.is_in(_TRUNC_REASONS).fill_null(False) | (verdict == "truncated").fill_null(False) | unclosed,
        "unclosed_think": unclosed,
        "missing_think": pl.lit(cfg.expect_think) & missing_think.fill_null(False),
        "empty_reasoning": ~pl.col("_enough_reasoning").fill_null(False),
        "no_answer": ~has_answer.fill_null(False),
        "no_boxed": pl.lit(cfg.require_boxed) & ~(pl.col("_boxed_tail") | pl.col("_boxed_ans")).fill_null(False),
        "repetition_loop": (pl.col("audit_repeat") >= cfg.repeat_min_count)
        | (pl.col("audit_compress") >= cfg.compress_ratio_max),
        "language_mix": (pl.col("audit_foreign") >= cfg.lang_mix_min_chars)
        & (pl.col("audit_foreign") >= cfg.lang_mix_min_ratio * pl.col("audit_letters")),
        "length_outlier": pl.col("audit_length_z").abs() > cfg.length_z_max,
        "after_answer": (pl.col("audit_after_chars") > cfg.after_answer_max_chars)
        | (pl.col("audit_after_foreign") >= cfg.lang_mix_min_chars),
        "answer_mismatch": (
            pl.col("_boxed_differs")
            | (correct.is_not_null() & verdict.is_not_null() & (correct != (verdict == "correct")))
            | ((verdict == "correct") & _blank(pred) & pl.lit("pred_answer" in df.columns))
        ).fill_null(False),
    }


def _flag_lists(m: pl.DataFrame, exprs: list[pl.Expr], names: tuple[str, ...] | list[str]) -> pl.Series:
    """The ``flags`` lists (names in ``names`` order) from one boolean expression per flag: an integer
    code per row (one bit a flag), then one list per distinct code (a few dozen), so memory per row is
    the result's own, not a string column per flag."""
    if not names:
        return pl.Series("flags", [[]] * m.height, dtype=pl.List(pl.Utf8))
    code = pl.sum_horizontal([e.fill_null(False).cast(pl.Int64) * (1 << i) for i, e in enumerate(exprs)])
    codes = m.select(code.alias("code"))["code"]
    uniq = codes.unique().sort()
    lists = pl.Series("flags", [[f for i, f in enumerate(names) if c >> i & 1] for c in uniq.to_list()],
                      dtype=pl.List(pl.Utf8))
    return codes.to_frame().join(pl.DataFrame([uniq, lists]), on="code", how="left", maintain_order="left")["flags"]


def audit_frame(
    df: pl.DataFrame,
    cfg: AuditConfig | None = None,
    *,
    keep_measures: bool = False,
    length_ref: tuple[float, float] | None | str = "self",
    measured: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add ``flags``, ``reasoning_tokens`` and ``reflections_per_1k`` (and the ``audit_*`` measures
    when ``keep_measures``). ``length_ref``: (median, MAD) of log tokens for ``length_outlier``;
    by default taken from this frame (none below ``cfg.length_min_rows`` rows). ``measured``: the
    :class:`MeasureKernel` columns of ``df`` when already computed (by an engine)."""
    cfg = cfg or AuditConfig()
    base_cols = [c for c in df.columns if c not in ("flags", "reasoning_tokens", "reflections_per_1k")]
    df = df.select(base_cols)
    if df.height == 0:
        return df.with_columns(
            pl.Series("reasoning_tokens", [], dtype=pl.Int64),
            pl.Series("reflections_per_1k", [], dtype=pl.Float64),
            pl.Series("flags", [], dtype=pl.List(pl.Utf8)),
        )
    m = measure(df, cfg) if measured is None else pl.concat([df, measured], how="horizontal")
    tokens = m["reasoning_tokens"].to_numpy()
    if isinstance(length_ref, str):
        length_ref = length_stats(tokens) if df.height >= cfg.length_min_rows else None
    z = length_z(tokens, length_ref)
    z[tokens == 0] = 0.0  # empty reasoning has its own flag
    m = m.with_columns(pl.Series("audit_length_z", np.round(z, 3), dtype=pl.Float64))
    exprs = flag_exprs(m, cfg)
    enabled = cfg.enabled()
    flags = _flag_lists(m, [exprs[f] for f in enabled], enabled)
    measures = ["audit_chars", "audit_repeat", "audit_compress", "audit_foreign", "audit_letters", "audit_length_z",
                "audit_after_chars"]
    keep = ["reasoning_tokens", "reflections_per_1k"] + (measures if keep_measures else [])
    return pl.concat([df, m.select(keep)], how="horizontal").with_columns(flags.cast(pl.List(pl.Utf8)))


def severity(df: pl.DataFrame, flag: str) -> pl.Expr:
    """How bad a flagged row is, for picking the worst examples per flag (higher = worse)."""
    if flag == "repetition_loop":
        return pl.col("audit_repeat").cast(pl.Float64) + pl.col("audit_compress")
    if flag == "language_mix":
        return pl.col("audit_foreign").cast(pl.Float64)
    if flag == "after_answer":
        return pl.col("audit_after_chars").cast(pl.Float64)
    if flag == "length_outlier":
        return pl.col("audit_length_z").abs()
    if flag in ("empty_reasoning", "missing_think"):
        return -pl.col("audit_chars").cast(pl.Float64)
    return pl.col("reasoning_tokens").cast(pl.Float64)


__all__ = ["audit_frame", "measure", "length_stats", "length_z", "severity", "count_tokens"]
