"""The Math-Verify layer: safe parsing of answers into sympy and Math-Verify's comparison.

What Math-Verify (huggingface/Math-Verify, MIT) does here:
  * its extraction regexes (``get_extraction_regexes``) and priority order, LaTeX normalisation
    (``normalize_latex``), LaTeX -> sympy via latex2sympy2_extended (an ANTLR parse tree), and
    ``verify`` (numeric, symbolic, set/interval/matrix/relation comparison).

What this module changes: Math-Verify's *expression* extractor calls ``sympy.parse_expr`` (which is
``eval``) on text; here numbers are built with ``sympy.Integer``/``Float`` from regex-validated
digits, and plain expressions (digits and + - * / ^ ( ) only) are parsed as LaTeX instead.
Math-Verify's own signal-based timeouts are switched off (``timeout_seconds=None``): the caller
enforces the per-item timeout (``curate.verify.pool``).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from itertools import groupby
from typing import Any, Iterator, Optional

import latex2sympy2_extended.latex2sympy2 as _l2s_module
import math_verify.parser as _mv_parser
import sympy
from latex2sympy2_extended.latex2sympy2 import (
    convert_to_pct,
    latex2sympy,
    normalize_latex,
)
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from math_verify.grader import should_treat_as_complex
from math_verify.grader import verify as _mv_verify
from math_verify.parser import extract_latex, get_extraction_regexes

from .memo import Memo

# Math-Verify logs a warning when its timeouts are off and on every failed comparison: we own both.
logging.getLogger("math_verify").setLevel(logging.CRITICAL)

_MISS = object()


class _Failed:
    """A remembered parse failure (re-raised as a fresh exception: every caller catches ``Exception``)."""

    __slots__ = ("error",)

    def __init__(self, error: str):
        self.error = error


class LatexParseError(ValueError):
    pass


# Math-Verify parses every LaTeX answer with ``parse_latex_cached``, an ``lru_cache`` of 20 entries that
# does not remember failures: the samples of a problem repeat the same few answers (and a wrong answer is
# read again by the second reading), so most parses were repeated. The same function behind a larger
# LRU that also remembers failures (never an interrupt: a timeout, RecursionError or MemoryError is not
# remembered); the result for a string is what Math-Verify's function returns (a pure function of it).
_ORIGINAL_CACHED = getattr(_mv_parser.parse_latex_cached, "_curate_original", _mv_parser.parse_latex_cached)
_PARSE_LATEX = getattr(_ORIGINAL_CACHED, "__wrapped__", _ORIGINAL_CACHED)
_LATEX_MEMO = Memo(8192)


# Plain numbers are most answers; latex2sympy reads them through an ANTLR parse and ``sympy.Number(str)``
# (``parse_expr``), about 2 ms each. For these exact shapes the same objects are built directly (a test
# compares them with latex2sympy's on thousands of strings): an integer -> Integer, a decimal -> Float
# of the same string (precision from its digits, as ``Number`` gives), \frac{a}{b}, \dfrac, \tfrac
# and a/b with b > 0 -> Rational (reduced, an Integer when it divides).
_FAST_INT = re.compile(r"-?[0-9]{1,60}")
_FAST_DEC = re.compile(r"-?[0-9]{1,30}\.[0-9]{1,30}")
_FAST_FRAC = re.compile(r"(-?)(?:\\[dt]?frac\{([0-9]{1,30})\}\{([0-9]{1,30})\}|([0-9]{1,30})/([0-9]{1,30}))")


def fast_number(latex: str) -> Optional[Any]:
    """The sympy number latex2sympy would give for a plain integer, decimal or fraction; None for
    anything else (then the full parse runs)."""
    if _FAST_INT.fullmatch(latex):
        return sympy.Integer(int(latex))
    if _FAST_DEC.fullmatch(latex):
        return sympy.Float(latex)
    m = _FAST_FRAC.fullmatch(latex)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        q = sympy.Rational(int(num), int(den))
        return -q if m.group(1) else q
    return None


# Inside a parse, latex2sympy reads every number with ``sympy.Number(text)``, i.e. ``sympify`` ->
# ``parse_expr`` (~0.8 ms a number). For ASCII digits (after its own comma removal) the same objects are
# built directly; anything else goes to its own method.
_Converter = _l2s_module._Latex2Sympy
_ORIGINAL_NUMBER = getattr(_Converter.parse_number, "_curate_original", _Converter.parse_number)
_ASCII_INT = re.compile(r"[0-9]{1,60}")
_ASCII_DEC = re.compile(r"[0-9]{1,30}\.[0-9]{1,30}")


def _parse_number(self, text):
    t = text.replace(",", "")
    if _ASCII_INT.fullmatch(t):
        return sympy.Integer(int(t))  # int() drops leading zeros as latex2sympy does
    if _ASCII_DEC.fullmatch(t):
        return sympy.Float(t)
    return _ORIGINAL_NUMBER(self, text)


_parse_number._curate_original = _ORIGINAL_NUMBER  # type: ignore[attr-defined]
_Converter.parse_number = _parse_number


def parse_latex_cached(latex: str) -> Any:
    """Math-Verify's ``parse_latex_cached`` with a larger cache that remembers failures too, and
    plain numbers built directly (:func:`fast_number`)."""
    fast = fast_number(latex) if len(latex) <= 80 else None
    if fast is not None:
        return fast
    got = _LATEX_MEMO.get(latex, _MISS)
    if got is _MISS:
        try:
            got = _PARSE_LATEX(latex)
        except (RecursionError, MemoryError):
            raise
        except Exception as e:
            _LATEX_MEMO.put(latex, _Failed(f"{type(e).__name__}: {e}"[:200]))
            raise
        _LATEX_MEMO.put(latex, got)
        return got
    if isinstance(got, _Failed):
        raise LatexParseError(got.error)
    return got


parse_latex_cached.__wrapped__ = _PARSE_LATEX  # type: ignore[attr-defined]
parse_latex_cached._curate_original = _ORIGINAL_CACHED  # type: ignore[attr-defined]
_mv_parser.parse_latex_cached = parse_latex_cached  # extract_latex looks the name up at call time


def clear_memos() -> None:
    """Forget every remembered parse and extraction of this process."""
    for memo in (_LATEX_MEMO, _EXTRACTED, _FIRST):
        memo.clear()
    _ORIGINAL_CACHED.cache_clear()


@contextmanager
def library_parsing() -> Iterator[None]:
    """Math-Verify and latex2sympy exactly as shipped while inside (their own ``parse_latex_cached`` and
    ``parse_number``, no memo of extractions): the reference that tests and ``benchmarks/verify.py``
    compare the fast paths with. Not thread-safe (it swaps module attributes)."""
    global _MEMO_CHARS
    saved = (_mv_parser.parse_latex_cached, _Converter.parse_number, _MEMO_CHARS)
    _mv_parser.parse_latex_cached, _Converter.parse_number, _MEMO_CHARS = _ORIGINAL_CACHED, _ORIGINAL_NUMBER, -1
    try:
        yield
    finally:
        _mv_parser.parse_latex_cached, _Converter.parse_number, _MEMO_CHARS = saved


_LATEX_CFG = LatexExtractionConfig()
_EXPR_CFG = ExprExtractionConfig()
_TARGET_RES = None


def _targets():
    global _TARGET_RES
    if _TARGET_RES is None:
        _TARGET_RES = get_extraction_regexes([_LATEX_CFG, _EXPR_CFG])
    return _TARGET_RES


def parse_latex(s: str) -> Optional[Any]:
    """A bare LaTeX/plain answer -> sympy (None when it does not parse). ANTLR parse, no eval."""
    s = s.strip()
    if not s:
        return None
    try:
        norm = normalize_latex(s, _LATEX_CFG.normalization_config)
        if not norm:
            return None
        if "\\circ" in norm:  # degrees inside an expression (sin(90^\circ - x)): convert to radians
            return latex2sympy(norm, is_real=not should_treat_as_complex(norm), convert_degrees=True,
                               normalization_config=None)
        return _mv_parser.parse_latex_cached(norm)  # (the name library_parsing() swaps)
    except Exception:
        return None


def _safe_expr(match) -> tuple[Optional[Any], str]:
    """Math-Verify's ``extract_expr`` without ``parse_expr``."""
    groups = match.groupdict()
    expr = groups.get("expr", "") or ""
    integer = next((v for k, v in groups.items() if k.startswith("integer") and v), "")
    decimal = next((v for k, v in groups.items() if k.startswith("decimal") and v), "")
    is_pct = bool(groups.get("percent"))
    if integer or decimal:
        neg = integer.startswith("-")
        digits = integer.lstrip("-").translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
        dec = decimal.replace(",", ".")
        s = ("-" if neg else "") + digits + dec
        try:
            num = sympy.Float(s) if dec else sympy.Integer(int(s))
        except (ValueError, TypeError):
            return None, s
        if is_pct:
            num = convert_to_pct(num)
        return num, s
    if expr:
        latex = expr.strip().rstrip(".").replace("\n", " ").replace("**", "^").replace("×", "\\times ").replace("÷", "\\div ")
        parsed = parse_latex(latex)
        if parsed is not None:
            return parsed, expr
    return None, expr


# mv_extract / mv_first_string are pure functions of the text: short texts (an answer's sentence, the
# text after </think>) repeat across a problem's samples and across problems ("The answer is $\\boxed{5}$.")
_MEMO_CHARS = 2000
_EXTRACTED = Memo(4096)
_FIRST = Memo(4096)


def _remembered(memo: Memo, fn: Any, text: str) -> Any:
    """``fn(text)``, remembered in ``memo`` for short texts (long ones are rarely repeated)."""
    if len(text) > _MEMO_CHARS:
        return fn(text)
    got = memo.get(text, _MISS)
    if got is _MISS:
        got = memo.put(text, fn(text))
    return got


def mv_extract(text: str) -> Optional[tuple[str, Any]]:
    """Math-Verify's ``extract_target_from_pred`` (any_match, first_match fallback) with the safe
    expression conversion. Returns (answer string, sympy or None) or None (remembered for short texts)."""
    return _remembered(_EXTRACTED, _mv_extract, text)


def _mv_extract(text: str) -> Optional[tuple[str, Any]]:
    all_patterns = [
        (pattern, target, prio) for patterns, target in _targets() for pattern, prio in patterns
    ]
    all_patterns.sort(key=lambda x: x[2])
    fallback: Optional[str] = None
    for _, group in groupby(all_patterns, key=lambda x: x[2]):
        matches = [
            (m, m.start(), m.end(), target) for pattern, target, _ in group for m in pattern.finditer(text)
        ]
        matches.sort(key=lambda x: (x[2], -x[1]), reverse=True)
        for m, _, _, target in matches:
            if isinstance(target, LatexExtractionConfig):
                try:
                    parsed, s = extract_latex(m, target)
                except Exception:
                    parsed, s = None, ""
            else:
                parsed, s = _safe_expr(m)
            if s and fallback is None:
                fallback = s
            if parsed is not None:
                return s, parsed
    if fallback:
        return fallback, None
    return None


def mv_first_string(text: str) -> Optional[str]:
    """The text of the match Math-Verify's extraction would try first (no parsing): used to skip
    a second reading that would only find the answer already compared (remembered for short texts)."""
    return _remembered(_FIRST, _mv_first_string, text)


def _mv_first_string(text: str) -> Optional[str]:
    all_patterns = [
        (pattern, target, prio) for patterns, target in _targets() for pattern, prio in patterns
    ]
    all_patterns.sort(key=lambda x: x[2])
    for _, group in groupby(all_patterns, key=lambda x: x[2]):
        matches = [(m, m.start(), m.end()) for pattern, _t, _p in group for m in pattern.finditer(text)]
        if matches:
            m = max(matches, key=lambda x: (x[2], -x[1]))[0]
            vals = [v for k, v in m.groupdict().items() if v and ("latex" in k or k == "expr" or k.startswith("integer"))]
            return vals[0] if vals else m.group(0)
    return None


def mv_verify(gold: Any, pred: Any, *, float_rounding: int = 6, numeric_precision: int = 15,
              strict: bool = True, allow_set_relation_comp: bool = False) -> bool:
    """Math-Verify's ``verify`` with its signal timeouts off (the caller enforces the timeout)."""
    return _mv_verify(
        gold,
        pred,
        float_rounding=float_rounding,
        numeric_precision=numeric_precision,
        strict=strict,
        allow_set_relation_comp=allow_set_relation_comp,
        timeout_seconds=None,
    )
