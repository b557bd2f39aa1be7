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
from itertools import groupby
from typing import Any, Optional

import sympy
from latex2sympy2_extended.latex2sympy2 import convert_to_pct, latex2sympy, normalize_latex
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from math_verify.grader import should_treat_as_complex
from math_verify.grader import verify as _mv_verify
from math_verify.parser import extract_latex, get_extraction_regexes, parse_latex_cached

# Math-Verify logs a warning when its timeouts are off and on every failed comparison: we own both.
logging.getLogger("math_verify").setLevel(logging.CRITICAL)

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
        return parse_latex_cached(norm)
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


def mv_extract(text: str) -> Optional[tuple[str, Any]]:
    """Math-Verify's ``extract_target_from_pred`` (any_match, first_match fallback) with the safe
    expression conversion. Returns (answer string, sympy or None) or None."""
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
    a second reading that would only find the answer already compared."""
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
