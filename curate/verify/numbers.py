"""Numbers read exactly from text, and the comparison policy for them (no float, no eval).

Policy (docs/verify.md, "Comparison policy"):

* exact on both sides (integers, ``a/b``, ``\\frac{a}{b}``, ``3\\times10^{5}``): compared exactly
  (``fractions.Fraction``), whatever the magnitude (``1/2^{99}`` is not ``1/2^{98}``);
* a decimal gold (``1.6\\times10^{-19}``, ``0.0031``, ``33.3``): the answer must round to the gold at
  the precision the gold shows (half a unit of its last digit), a *relative* tolerance;
* an exact gold and a decimal answer: exact when the gold's decimal expansion ends (``3/8`` needs
  ``0.375``); otherwise (``2/3``) the answer must be the gold rounded at the answer's last digit,
  with at least 2 significant digits shown (``0.667``, never ``0.00``).

Also here: Chinese numerals (``十二`` = 12), the locale and unit-conversion conventions (named
switches, off by default) and the plain-text math reader (``pi/2``, ``-1 + exp(16)``, ``3.2e5``)
that rewrites what models write in programming notation into LaTeX for the ANTLR parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

# ----------------------------------------------------------------------------- exact numbers


@dataclass(frozen=True)
class Num:
    value: Fraction
    decimal: bool = False
    """written with a decimal point: a rounded value"""
    half_ulp: Fraction = Fraction(0)
    """half a unit of the last digit shown (decimals only)"""
    sig: int = 0
    """significant digits shown (decimals only)"""

    def scaled(self, k: Fraction) -> "Num":
        return Num(self.value * k, self.decimal, self.half_ulp * abs(k), self.sig)


_EXP = r"(?:\s*(?:\\times|\\cdot|×|\*)\s*10\s*\^\s*(?:\{\s*([-+−]?\s*\d{1,4})\s*\}|([-+−]?\d{1,4}))|[eE]([-+−]?\d{1,4}))"
_PLAIN = re.compile(r"^([-+−]?)\s*(\d+(?:\.\d*)?|\.\d+)" + f"(?:{_EXP})?" + r"$")
_POW10 = re.compile(r"^([-+−]?)\s*10\s*\^\s*(?:\{\s*([-+−]?\d{1,4})\s*\}|([-+−]?\d{1,4}))$")
_FRAC = re.compile(r"^([-+−]?)\s*(?:(\d{1,60})\s*/\s*(\d{1,60})|\\frac\{\s*(\d{1,60})\s*\}\{\s*(\d{1,60})\s*\})$")


def read_number(s: str) -> Optional[Num]:
    """A plain number written in ``s`` -> Num (exact value), or None. Integers, decimals,
    scientific notation (``3.2e5``, ``1.6\\times10^{-19}``), ``10^{n}``, ``a/b``, ``\\frac{a}{b}``."""
    s = s.strip()
    if not s or len(s) > 120:
        return None
    m = _PLAIN.match(s)
    if m:
        sign = -1 if m.group(1) in ("-", "−") else 1
        mant = m.group(2)
        e = next((g for g in m.group(3, 4, 5) if g is not None), None)
        exp = int(e.replace("−", "-").replace(" ", "")) if e is not None else 0
        if "." in mant:
            whole, frac = mant.split(".")
            digits = (whole + frac).lstrip("0")
            value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
            value *= Fraction(10) ** exp
            unit = Fraction(10) ** (exp - len(frac))
            if not frac:  # "5." is an integer written with a point
                return Num(sign * value)
            return Num(sign * value, True, unit / 2, max(len(digits), 1))
        return Num(sign * int(mant) * Fraction(10) ** exp)
    m = _POW10.match(s)
    if m:
        sign = -1 if m.group(1) in ("-", "−") else 1
        return Num(sign * Fraction(10) ** int((m.group(2) or m.group(3)).replace("−", "-")))
    m = _FRAC.match(s)
    if m:
        sign = -1 if m.group(1) in ("-", "−") else 1
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        return Num(sign * Fraction(int(num), int(den)))
    return None


def _terminates(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(gold: Num, pred: Num) -> bool:
    """The comparison policy for two plain numbers (see the module docstring)."""
    if not gold.decimal and not pred.decimal:
        return gold.value == pred.value
    if gold.decimal:  # at the precision the gold shows
        return abs(pred.value - gold.value) <= gold.half_ulp
    if pred.value == gold.value:
        return True
    if _terminates(gold.value) or pred.sig < 2:
        return False
    return abs(pred.value - gold.value) <= pred.half_ulp


def num_from_sympy(x) -> Optional[Num]:
    """An exact Num from a sympy Rational/Integer (after evaluation), else None."""
    try:
        import sympy

        if isinstance(x, sympy.Basic) and getattr(x, "is_Rational", False):
            return Num(Fraction(int(x.p), int(x.q)))
    except Exception:
        return None
    return None


# ----------------------------------------------------------------------------- Chinese numerals

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10**4, "亿": 10**8}
CN_NUMERAL = "零〇一二两三四五六七八九十百千万亿"


def chinese_numeral(s: str) -> Optional[int]:
    """``十二`` -> 12, ``三百零五`` -> 305, ``两万`` -> 20000, ``一九八四`` -> 1984; None if not one."""
    if not s or any(c not in CN_NUMERAL for c in s):
        return None
    if all(c in _CN_DIGITS for c in s):  # digit by digit (years, codes)
        return int("".join(str(_CN_DIGITS[c]) for c in s)) if len(s) > 1 or s in _CN_DIGITS else None
    total, section, digit = 0, 0, None
    for c in s:
        if c in _CN_DIGITS:
            if digit is not None and _CN_DIGITS[c] != 0 and digit != 0:
                return None  # two digits in a row without a unit
            digit = _CN_DIGITS[c]
        elif c in _CN_UNITS:
            section += (1 if digit is None else digit) * _CN_UNITS[c]
            digit = None
        else:  # 万 / 亿
            section += digit or 0
            if section == 0:
                return None
            total += section * _CN_BIG[c]
            section, digit = 0, None
    return total + section + (digit or 0)


# words that contain a numeral character but are not numbers
_CN_NOT_NUMBERS = re.compile(
    r"一共|一起|一定|一样|一直|一般|一些|一下|一点|一边|唯一|统一|万一|十分|第[一二三四五六七八九十]+|一致|同一|逐一|之一|一旦"
)
_CN_PERCENT = re.compile(r"百分之([" + CN_NUMERAL + r"]+|\d+(?:\.\d+)?)")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CN_NEGATED = re.compile(r"(?:不是|并非|而非|而不是|不等于|不为)\s*(?:-?\d+(?:\.\d+)?|[" + CN_NUMERAL + r"]+|[A-E])")
_CN_FILLER = re.compile(r"^[\s\u3000-\u303f\uff00-\uffef\u3400-\u9fff\uf900-\ufaff:;,.!?()\[\]]*$")


def cjk_number(s: str) -> Optional[str]:
    """A short Chinese answer that states exactly one number (``3 个``, ``共有6种方法。``, ``十二``,
    ``答：他们一共需要24元。``) -> that number as digits; None otherwise (latin letters, formulas,
    two numbers)."""
    if not s or len(s) > 80 or not _CJK.search(s):
        return None
    t = _CN_NEGATED.sub(" ", s)
    t = _CN_PERCENT.sub(lambda m: " " + m.group(1) + "% ", t)
    t = _CN_NOT_NUMBERS.sub(" ", t)
    found: list[str] = []

    def take(m):
        found.append(m.group(0))
        return " "

    t = re.sub(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?%?|[" + CN_NUMERAL + r"]+%?", take, t)
    if len(found) != 1 or not _CN_FILLER.match(t):
        return None
    tok = found[0]
    pct = tok.endswith("%")
    tok = tok.rstrip("%")
    if tok[0] in CN_NUMERAL:
        v = chinese_numeral(tok)
        if v is None:
            return None
        tok = str(v)
    return tok + ("\\%" if pct else "")


# ----------------------------------------------------------------------------- locale numbers (switch)

_LOCALE = [
    (re.compile(r"^([-+]?\d{1,3})((?:\.\d{3}){2,})$"), lambda m: m.group(1) + m.group(2).replace(".", "")),
    (re.compile(r"^([-+]?\d{1,3})((?:\.\d{3})+),(\d+)$"), lambda m: m.group(1) + m.group(2).replace(".", "") + "." + m.group(3)),
    (re.compile(r"^([-+]?\d{1,3})((?:[ \u00a0\u202f]\d{3})+)(?:,(\d+))?$"),
     lambda m: m.group(1) + re.sub(r"\s", "", m.group(2)) + ("." + m.group(3) if m.group(3) else "")),
    (re.compile(r"^([-+]?\d+),(\d+)$"), lambda m: m.group(1) + "." + m.group(2)),
]


def locale_number(s: str) -> str:
    """Switch ``locale_numbers``: ``1.000.000`` -> ``1000000``, ``1.234,5``/``1 234,5`` -> ``1234.5``,
    ``1,5`` -> ``1.5`` (only when the whole answer is that one number)."""
    t = s.strip()
    for pat, fn in _LOCALE:
        m = pat.match(t)
        if m:
            return fn(m)
    return s


# ----------------------------------------------------------------------------- units (conversion switch)

_U = Fraction
UNITS: dict[str, tuple[str, Fraction]] = {
    # length (m)
    "km": ("length", _U(1000)), "m": ("length", _U(1)), "dm": ("length", _U(1, 10)), "cm": ("length", _U(1, 100)),
    "mm": ("length", _U(1, 1000)), "um": ("length", _U(1, 10**6)), "μm": ("length", _U(1, 10**6)),
    "nm": ("length", _U(1, 10**9)), "in": ("length", _U(254, 10000)), "ft": ("length", _U(3048, 10000)),
    "yd": ("length", _U(9144, 10000)), "mi": ("length", _U(1609344, 1000)),
    "meter": ("length", _U(1)), "meters": ("length", _U(1)), "centimeters": ("length", _U(1, 100)),
    "kilometers": ("length", _U(1000)), "millimeters": ("length", _U(1, 1000)),
    "inch": ("length", _U(254, 10000)), "inches": ("length", _U(254, 10000)),
    "foot": ("length", _U(3048, 10000)), "feet": ("length", _U(3048, 10000)),
    "米": ("length", _U(1)), "厘米": ("length", _U(1, 100)), "毫米": ("length", _U(1, 1000)),
    "千米": ("length", _U(1000)), "公里": ("length", _U(1000)), "分米": ("length", _U(1, 10)),
    # mass (kg)
    "t": ("mass", _U(1000)), "kg": ("mass", _U(1)), "g": ("mass", _U(1, 1000)), "mg": ("mass", _U(1, 10**6)),
    "lb": ("mass", _U(45359237, 10**8)), "oz": ("mass", _U(45359237, 16 * 10**8)),
    "kilograms": ("mass", _U(1)), "grams": ("mass", _U(1, 1000)), "pounds": ("mass", _U(45359237, 10**8)),
    "千克": ("mass", _U(1)), "公斤": ("mass", _U(1)), "克": ("mass", _U(1, 1000)), "吨": ("mass", _U(1000)),
    # time (s)
    "s": ("time", _U(1)), "sec": ("time", _U(1)), "seconds": ("time", _U(1)), "ms": ("time", _U(1, 1000)),
    "min": ("time", _U(60)), "minutes": ("time", _U(60)), "h": ("time", _U(3600)), "hr": ("time", _U(3600)),
    "hours": ("time", _U(3600)), "hour": ("time", _U(3600)), "day": ("time", _U(86400)), "days": ("time", _U(86400)),
    "秒": ("time", _U(1)), "分钟": ("time", _U(60)), "小时": ("time", _U(3600)), "天": ("time", _U(86400)),
    # volume (L)
    "L": ("volume", _U(1)), "l": ("volume", _U(1)), "mL": ("volume", _U(1, 1000)), "ml": ("volume", _U(1, 1000)),
    "liters": ("volume", _U(1)), "升": ("volume", _U(1)), "毫升": ("volume", _U(1, 1000)),
    "m^3": ("volume", _U(1000)), "cm^3": ("volume", _U(1, 1000)), "dm^3": ("volume", _U(1)),
    # area (m^2)
    "m^2": ("area", _U(1)), "cm^2": ("area", _U(1, 10**4)), "mm^2": ("area", _U(1, 10**6)),
    "km^2": ("area", _U(10**6)), "平方米": ("area", _U(1)), "平方厘米": ("area", _U(1, 10**4)),
}
_QTY = re.compile(r"^\s*(?P<n>[-+]?\d+(?:\.\d+)?(?:/\d+)?)\s*(?P<u>.+?)\s*$")


def quantity(s: str) -> Optional[tuple[Num, str, Fraction]]:
    """``5\\text{ m}``, ``500 cm``, ``2 kg``, ``90 \\text{ min}`` -> (number, dimension, factor to SI)."""
    t = re.sub(r"\\(?:text|mathrm|mbox|textrm|operatorname)\s*\{([^{}]*)\}", r" \1 ", s)
    t = re.sub(r"\\[,;:! ]|~", " ", t).replace("$", "")
    t = re.sub(r"\^\s*\{\s*(\d)\s*\}", r"^\1", t)
    m = _QTY.match(t)
    if not m:
        return None
    n = read_number(m.group("n"))
    u = re.sub(r"\s+", "", m.group("u")).rstrip(".")
    if n is None or u not in UNITS:
        return None
    dim, k = UNITS[u]
    return n, dim, k


# ----------------------------------------------------------------------------- plain-text math -> LaTeX

_FUNCS = {
    "sqrt": None, "exp": None, "log": "\\ln", "ln": "\\ln", "lg": "\\log", "sin": "\\sin", "cos": "\\cos",
    "tan": "\\tan", "cot": "\\cot", "sec": "\\sec", "csc": "\\csc", "arcsin": "\\arcsin", "arccos": "\\arccos",
    "arctan": "\\arctan", "asin": "\\arcsin", "acos": "\\arccos", "atan": "\\arctan", "sinh": "\\sinh",
    "cosh": "\\cosh", "tanh": "\\tanh", "abs": None,
}
_CONSTS = {"pi": "\\pi", "π": "\\pi", "inf": "\\infty", "infinity": "\\infty", "oo": "\\infty", "∞": "\\infty"}
PLAIN_MATH_WORDS = tuple(_FUNCS) + ("pi", "inf", "infinity")
_PLAIN_HINT = re.compile(
    r"\*\*|\*|π|∞|√|(?<![A-Za-z\\])(?:" + "|".join(sorted(_FUNCS, key=len, reverse=True)) + r")\s*\(|(?<![A-Za-z\\])(?:pi|inf|infinity|oo)(?![A-Za-z])"
    r"|(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])"
)
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|([A-Za-zπ∞√]+)|(\*\*|[-+*/^(),=<>]|\S))")


def _match_paren(toks: list[str], i: int) -> int:
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] == "(":
            depth += 1
        elif toks[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _render(toks: list[str]) -> Optional[str]:
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        low = t.lower() if t.isascii() else t
        if t == "√":
            t, low = "sqrt", "sqrt"
        if low in _FUNCS and i + 1 < len(toks) and toks[i + 1] == "(":
            step = _render_call(toks, i, low)
        elif low not in _CONSTS and t in ("**", "^"):
            step = _render_power(toks, i)
        else:
            out.append(_render_atom(t, low))
            if re.fullmatch(r"[\d.]+(?:[eE][-+]?\d+)?", t) and i + 1 < len(toks) and re.fullmatch(r"[A-Za-z]+", toks[i + 1]):
                out.append(" \\cdot ")  # "1.0i", "2x": an explicit product for the parser
            i += 1
            continue
        if step is None:
            return None
        text, i = step
        out.append(text)
    return "".join(out)


def _render_group(toks: list[str], i: int) -> Optional[tuple[str, int]]:
    """The parenthesised group opening at ``toks[i]``: (its inside rendered, the index of its ``)``), None
    when it is unclosed or does not render."""
    j = _match_paren(toks, i)
    if j < 0:
        return None
    inner = _render(toks[i + 1 : j])
    return None if inner is None else (inner, j)


def _render_call(toks: list[str], i: int, low: str) -> Optional[tuple[str, int]]:
    """A function call ``f(...)`` starting at ``toks[i]``: (its LaTeX, the index after it), None when
    it does not render."""
    group = _render_group(toks, i + 1)
    if group is None:
        return None
    inner, j = group
    if low == "sqrt":
        return "\\sqrt{" + inner + "}", j + 1
    if low == "exp":
        return "e^{" + inner + "}", j + 1
    if low == "abs":
        return "\\left|" + inner + "\\right|", j + 1
    return _FUNCS[low] + "\\left(" + inner + "\\right)", j + 1


def _render_power(toks: list[str], i: int) -> Optional[tuple[str, int]]:
    """An exponent (``**`` or ``^`` at ``toks[i]``): a parenthesised group or one atom (a number, a
    name, or a function call "log(x)", with an optional sign) -> (``^{...}``, the index after it)."""
    if i + 1 < len(toks) and toks[i + 1] == "(":
        group = _render_group(toks, i + 1)
        return None if group is None else ("^{" + group[0] + "}", group[1] + 1)
    if i + 1 >= len(toks):
        return None
    k = i + 1
    sign = ""
    if toks[k] in ("-", "+") and k + 1 < len(toks):
        sign, k = toks[k], k + 1
    end = k + 1  # one atom: a number, a name, or a function call "log(x)"
    if k + 1 < len(toks) and toks[k + 1] == "(" and toks[k].lower() in _FUNCS:
        end = _match_paren(toks, k + 1) + 1
        if end <= 0:
            return None
    elif toks[k] == "(":
        end = _match_paren(toks, k) + 1
        if end <= 0:
            return None
    inner = _render(toks[k:end])
    if inner is None:
        return None
    return "^{" + sign + inner.strip() + "}", end


def _render_atom(t: str, low: str) -> str:
    """One token that is neither a call nor an exponent: constants, ``*``, e-notation, ``14.0``."""
    if low in _CONSTS:
        return _CONSTS[low] + " "
    if t == "*":
        return " \\cdot "
    if re.fullmatch(r"\d+(?:\.\d+)?[eE][-+]?\d+", t):
        mant, exp = re.split(r"[eE]", t)
        return f"{mant}\\times 10^{{{int(exp)}}}"
    if re.fullmatch(r"\d+\.0+", t):
        return t.split(".")[0]
    return t


def plain_math(s: str) -> str:
    """Rule ``plain_math``: expression syntax models write in plain text (``pi/2``, ``-1 + exp(16)``,
    ``2*sqrt(3)``, ``x**2``, ``3.2e5``, ``π^2``, ``14.0 - 1.0i``) -> LaTeX for the ANTLR parser.
    A tokenizer and a rewrite, never an evaluation; text that is already LaTeX is left alone."""
    if "\\" in s or "{" in s or len(s) > 300:
        return s
    if not _PLAIN_HINT.search(s) and not re.search(r"(?<![\w.])\d+\.0+(?![\d.])", s):
        return s
    toks = [next(g for g in m.groups() if g is not None) for m in _TOKEN.finditer(s) if m.group(0).strip()]
    if "".join(toks) != re.sub(r"\s+", "", s):
        return s
    out = _render(toks)
    return s if out is None else re.sub(r"\s+", " ", out).strip()
