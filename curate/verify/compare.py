"""Comparison of parsed answers: exact rationals and clock times read from strings, closed numbers
decided exactly, random-point probes, and Math-Verify ``verify`` on the sympy parses (with the
shown-precision and relative-tolerance readings). Used by the judging flow in ``equiv``."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Optional

from .numbers import Num, num_from_sympy
from .options import Options

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\\text\{)?\s*([ap])?\.?\s*(?:m\.?)?\s*\}?$", re.I)


_RATIONAL = re.compile(r"^\s*([-+]?)\s*(?:(\d{1,40})(?:\s*/\s*(\d{1,40}))?|\\frac\{(\d{1,40})\}\{(\d{1,40})\})\s*$")


def exact_rational(s: str) -> Optional[Fraction]:
    """``-12``, ``3/4``, ``\\frac{3}{4}`` -> Fraction; anything else (decimals too) -> None."""
    m = _RATIONAL.match(s)
    if not m:
        return None
    sign = -1 if m.group(1) == "-" else 1
    num, den = (m.group(2), m.group(3) or "1") if m.group(2) is not None else (m.group(4), m.group(5))
    if int(den) == 0:
        return None
    return sign * Fraction(int(num), int(den))


def _clock(s: str) -> Optional[int]:
    m = _CLOCK.match(s.strip())
    if not m:
        return None
    h, mnt, sec = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 24 or mnt > 59 or sec > 59:
        return None
    ap = (m.group(4) or "").lower()
    if ap == "p" and h < 12:
        h += 12
    if ap == "a" and h == 12:
        h = 0
    return (h * 60 + mnt) * 60 + sec


def _as_float(x: Any) -> Optional[complex]:
    import sympy

    try:
        if isinstance(x, (list, tuple)):
            return None
        if not isinstance(x, sympy.Basic) or x.free_symbols:
            return None
        if isinstance(x, (sympy.Set, sympy.Tuple)) or getattr(x, "is_Relational", False):
            return None
        v = complex(x.evalf(30))
        if math.isnan(v.real) or math.isinf(v.real):
            return None
        return v
    except Exception:
        return None


_PROBES = (0.3711, 1.2913, 2.7183)


def _clearly_differ(a: Any, b: Any, strict: bool = True) -> bool:
    """Random-point testing (as SymPy's ``Expr.equals`` does before simplifying): two plain
    expressions over the same symbols whose values differ by more than 1e-4 (relative) at a probe
    point cannot be equal, so Math-Verify's ``simplify`` is skipped (strict mode: variables matter). Anything else (relations,
    sets, tuples, matrices, percentages, functions) is left to Math-Verify."""
    import sympy

    try:
        intervals = (sympy.Interval, sympy.Union)
        if (isinstance(a, intervals) and isinstance(b, sympy.Expr) and b.is_number) or (
            isinstance(b, intervals) and isinstance(a, sympy.Expr) and a.is_number
        ):
            return True  # an interval is never a number
        for x in (a, b):
            if not isinstance(x, sympy.Expr) or isinstance(x, (sympy.Tuple, sympy.Set)) or x.is_Relational:
                return False
            if x.has(sympy.UnevaluatedExpr) or x.atoms(sympy.core.function.AppliedUndef) or x.is_Matrix:
                return False
        syms = a.free_symbols | b.free_symbols
        if (not strict and a.free_symbols != b.free_symbols) or len(syms) > 4:
            return False  # non-strict Math-Verify matches variables by position
        order = sorted(syms, key=str)  # distinct values per symbol: x - a must not vanish at every point
        # (offsets > 1 apart, so a power of a difference, (x-a)^6000, is not tiny at every point)
        points = [{x: v + 1.618 * k for k, x in enumerate(order)} for v in _PROBES] if syms else [{}]
        for pt in points:
            # sympy Floats, not Python floats: 1.99^6000 has an exponent no double holds
            va, vb = a.evalf(15, subs=pt), b.evalf(15, subs=pt)
            if not (va.is_number and vb.is_number) or any(
                v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) for v in (va, vb)
            ):
                return False
            ia, ib = sympy.im(va), sympy.im(vb)
            if syms and (abs(ia) > 1e-12 * max(1, abs(va)) or abs(ib) > 1e-12 * max(1, abs(vb))):
                continue  # outside the real domain (log of a negative): branches decide nothing here
            if bool(abs(va - vb) > sympy.Float(1e-4) * sympy.Max(1, abs(va), abs(vb))):
                return True
        return False
    except Exception:
        return False


_POS, _NEG = (0.3711, 1.2913, 2.7183), (-0.6180, -1.4142)


def _probe_equal(a: Any, b: Any) -> bool:
    """Random-point identity testing for expressions in the same variables: equal (relative 1e-9)
    at every positive probe point, and at the negative ones wherever both sides are real (so
    ``|x|`` is not ``x``). Catches identities ``simplify`` misses (fractional exponents)."""
    import sympy

    try:
        for x in (a, b):
            if not isinstance(x, sympy.Expr) or isinstance(x, (sympy.Tuple, sympy.Set)) or x.is_Relational:
                return False
            if x.has(sympy.UnevaluatedExpr) or x.atoms(sympy.core.function.AppliedUndef) or x.is_Matrix:
                return False
        syms = a.free_symbols | b.free_symbols  # symbols that cancel ("sqrt(k/m)*sqrt(m/k)" = 1) may differ
        if not syms or len(syms) > 4:
            return False
        compared = 0
        for i, v in enumerate(_POS + _NEG):
            pt = {s: v * (1 + 0.1 * k) for k, s in enumerate(sorted(syms, key=str))}
            va, vb = complex(a.evalf(20, subs=pt)), complex(b.evalf(20, subs=pt))
            finite = all(math.isfinite(t) for t in (va.real, va.imag, vb.real, vb.imag))
            real = finite and abs(va.imag) < 1e-12 and abs(vb.imag) < 1e-12
            if i < len(_POS) and not finite:
                return False
            if real or (i < len(_POS) and abs(va.imag) < 1e-12 < abs(vb.imag)) or (
                    i < len(_POS) and abs(vb.imag) < 1e-12 < abs(va.imag)):
                # real values must agree (a point outside both real domains, log of a negative, is skipped)
                if abs(va - vb) > 1e-9 * max(1.0, abs(va), abs(vb)):
                    return False
                compared += 1
        return compared >= 2
    except Exception:
        return False


def _closed_number(x: Any) -> bool:
    import sympy

    return (
        isinstance(x, sympy.Expr)
        and not isinstance(x, (sympy.Tuple, sympy.Set))
        and not x.is_Relational
        and not getattr(x, "is_Matrix", False)
        and not x.free_symbols
        and not x.atoms(sympy.core.function.AppliedUndef)
        and bool(x.is_number)
    )


def _exact_decision(a: Any, b: Any) -> Optional[bool]:
    """Two closed numbers with no decimal in either (``1/2004!``, ``2^{-120}``, ``\\sqrt2/2``):
    equal iff they agree to 40 significant digits *relative* to their size, so a tiny or huge
    magnitude never looks equal (Math-Verify chops values below 1e-15 to 0). None: not decided here."""
    import sympy

    try:
        if not (_closed_number(a) and _closed_number(b)) or a.has(sympy.Float) or b.has(sympy.Float):
            return None
        if a == b:
            return True
        va, vb = sympy.N(a, 60), sympy.N(b, 60)
        if not (va.is_finite and vb.is_finite):
            return None
        scale = max(abs(va), abs(vb))
        if scale == 0:
            return True
        d = abs(sympy.N(a - b, 60))
        if not d.is_finite:
            return None
        return bool(d <= scale * sympy.Float("1e-40", 60))
    except Exception:
        return None


def _sympy_equal(gold: Any, pp: Any, opts: Options) -> bool:
    """Exact numbers decided exactly (``_exact_decision``), the rest by Math-Verify ``verify``
    (gold: one parse or a list of candidate parses)."""
    from .mv import mv_verify

    if gold is None or pp is None:
        return False
    golds = gold if isinstance(gold, list) else [gold]
    decided = [_exact_decision(g, pp) for g in golds]
    if any(d is True for d in decided):
        return True
    golds = [g for g, d in zip(golds, decided) if d is None]
    if not golds:
        return False
    # "1+2i" and "i(2-i)": the letter i on both sides is the imaginary unit
    import sympy

    def _i(x):
        return next((v for v in getattr(x, "free_symbols", ()) if v.name == "i"), None)

    def _unit(x):  # the letter i read as the imaginary unit
        return x.subs(_i(x), sympy.I) if isinstance(x, sympy.Expr) and _i(x) is not None else x

    def _complexish(x):
        return isinstance(x, sympy.Expr) and (_i(x) is not None or x.has(sympy.I))

    if isinstance(pp, sympy.Expr) and (_i(pp) is not None or any(_i(g) is not None for g in golds)):
        if _complexish(pp) and all(_complexish(g) for g in golds) or all(
            isinstance(x, sympy.Expr) and not (_unit(x).free_symbols) for x in [pp, *golds]
        ):
            try:
                golds, pp = [_unit(g) for g in golds], _unit(pp)
            except Exception:
                pass
    if all(_clearly_differ(g, pp, opts.strict) for g in golds):
        return False
    if mv_verify(golds, pp, float_rounding=opts.float_rounding, numeric_precision=opts.numeric_precision,
                 strict=opts.strict, allow_set_relation_comp=True):
        return True
    if "numeric_probe" in opts.rules and opts.strict and any(_probe_equal(g, pp) for g in golds):
        return True

    if "numeric_tolerance" in opts.rules and opts.rel_tol > 0:
        b = _as_float(pp)
        if b is not None:
            for g in golds:
                a = _as_float(g)
                if a is not None and abs(a - b) <= opts.rel_tol * max(abs(a), abs(b)):
                    return True
    return False


_DECIMAL = re.compile(r"-?\d*\.(\d{2,})")


def _shown_precision(gold: Any, p: str) -> bool:
    """A decimal answer equal to the gold rounded to the answer's shown decimals (>= 2), as graders
    that round to the reference precision do (``1.732`` for ``\\sqrt3``)."""
    m = _DECIMAL.fullmatch(p.strip())
    if not m or gold is None:
        return False
    if len(p.strip().lstrip("-").replace(".", "").lstrip("0")) < 2:
        return False  # fewer than 2 significant digits ("0.00") shows nothing about the value
    d = len(m.group(1))
    for g in gold if isinstance(gold, list) else [gold]:
        a = _as_float(g)
        if a is not None and abs(a.imag) < 1e-12 and abs(round(a.real, d) - float(p)) < 10 ** -(d + 3):
            return True
    return False


def _exact_num(x: Any) -> Optional[Num]:
    """An exact rational value of a parse (``1/2^{99}``, ``\\frac{6}{4}``), evaluated; None otherwise."""
    import sympy

    try:
        if x is None or not _closed_number(x) or x.has(sympy.Float) or x.count_ops() > 20:
            return None
        return num_from_sympy(x.doit())
    except Exception:
        return None
