"""String normalisations applied to an extracted answer before any parsing.

Every rule is a small, general, *named* normalisation taken from a published grader, and each one
can be switched off in the recipe (``verify.rules``). Nothing here evaluates text: these are plain
regular-expression rewrites, so they are safe on untrusted model output.

Sources of the rule names:
  * hendrycks/math ``math_equivalence._strip_string`` (``latex_spacing``, ``fix_fracs``,
    ``units``, ``percent``, ``dollars``, ``lhs``, leading zero in ``number``)
  * MARIO_EVAL / Qwen2.5-Math ``math_equal`` (``mixed_numbers``, ``units``, ``time``)
  * NeMo-Skills ``math_grader`` (``text``, ``trailing_backslash``, ``approx``)
  * lighteval / Math-Verify (``thousands``, ``matrix_env``)
  * simple-evals ``normalize_final_answer`` (``units`` trailing words, ``dollars``)
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

# ----------------------------------------------------------------------------- helpers


def match_brace(s: str, open_idx: int) -> int:
    """Index of the ``}`` matching the ``{`` at ``open_idx`` (or -1)."""
    depth = 0
    i = open_idx
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def unwrap_command(s: str, commands: tuple[str, ...]) -> str:
    """``\\cmd{X}`` -> ``X`` for each command (nested braces respected)."""
    if "\\" not in s:
        return s
    pat = re.compile(r"\\(?:" + "|".join(commands) + r")\s*\{")
    pos = 0
    for _ in range(1000):
        m = pat.search(s, pos)
        if not m:
            break
        end = match_brace(s, m.end() - 1)
        if end < 0:
            break
        s = s[: m.start()] + s[m.end() : end] + s[end + 1 :]
        pos = m.start()
    return s


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets/braces/parentheses."""
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            if s[i + 1] in "{}":
                cur.append(s[i : i + 2])
                i += 2
                continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts]


# ----------------------------------------------------------------------------- the rules

_DOUBLE_ESC = re.compile(r"(?<!\\)\\\\[a-zA-Z]")
_SINGLE_CMD = re.compile(r"(?<!\\)\\[a-zA-Z]")


def unescape_double_backslash(s: str) -> str:
    """Over-escaped LaTeX (``\\\\frac`` as written in JSON or a non-raw string) -> ``\\frac``."""
    if "\\\\" in s and _DOUBLE_ESC.search(s) and not _SINGLE_CMD.search(s.replace("\\\\", "")):
        return s.replace("\\\\", "\\")
    return s


_DELIMS = [
    (re.compile(r"^\$\$(.*)\$\$$", re.S), 1),
    (re.compile(r"^\$(.*)\$$", re.S), 1),
    (re.compile(r"^\\\[(.*)\\\]$", re.S), 1),
    (re.compile(r"^\\\((.*)\\\)$", re.S), 1),
]


def strip_delimiters(s: str) -> str:
    """Outer math delimiters and a whole-answer ``\\boxed{}``/``\\fbox{}`` -> the content."""
    for _ in range(4):
        before = s
        s = s.strip()
        s = re.sub(r"[.。]\s*$", "", s) if not re.search(r"\d\.$", s) or s.endswith("..") else s
        for pat, g in _DELIMS:
            m = pat.match(s)
            if m and "$" not in m.group(g):
                s = m.group(g).strip()
        if s.startswith("{") and match_brace(s, 0) == len(s) - 1 and len(split_top_level(s[1:-1])) == 1:
            s = s[1:-1].strip()  # a LaTeX group around the whole answer (sets are written \\{ \\})
        m = re.match(r"^\\(?:boxed|fbox)\s*\{", s)
        if m:
            end = match_brace(s, m.end() - 1)
            if end == len(s) - 1:
                s = s[m.end() : end].strip()
        if s == before:
            break
    return s


_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\quad|\\qquad|\\displaystyle|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|~")
_FRAC_VARIANTS = re.compile(r"\\[dtc]frac")
_EMPTY_SET = re.compile(r"\\varnothing|∅|^\\\{\s*\\\}$|^\\O$|^\\emptyset$")
_DEGREES = re.compile(r"(?<=\d)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)\s*$")


def latex_spacing(s: str) -> str:
    """hendrycks ``_strip_string``: drop ``\\!``, ``\\,``, ``\\left``/``\\right``, ``\\quad``;
    ``\\dfrac``/``\\tfrac``/``\\cfrac`` -> ``\\frac``; degree signs; the empty set's spellings
    (``\\varnothing``, ``∅``, ``\\{\\}``) -> ``\\emptyset``."""
    s = s.replace("\\!", "")  # a negative thin space, as in 11,\\!111 (hendrycks drops it)
    s = _SPACING.sub(" ", s)
    s = _FRAC_VARIANTS.sub(r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = _EMPTY_SET.sub(r"\\emptyset", s)
    return s


_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\}|[a-zA-Z])")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d|[a-zA-Z](?![a-zA-Z]))")


def fix_fracs(s: str) -> str:
    """hendrycks ``_fix_fracs``/``_fix_sqrt``: ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}``."""
    if "\\frac" in s:

        def br(x: str) -> str:
            return x if x.startswith("{") else "{" + x + "}"

        s = _FRAC_SHORT.sub(lambda m: "\\frac" + br(m.group(1)) + br(m.group(2)), s)
    if "\\sqrt" in s:
        s = _SQRT_SHORT.sub(lambda m: "\\sqrt{" + m.group(1) + "}", s)
    return s


_TEXT_CMDS = ("text", "textbf", "textit", "textrm", "mathrm", "mathbf", "mathit", "mbox", "operatorname", "emph")


def text(s: str) -> str:
    """NeMo-Skills/hendrycks: unwrap ``\\text{}``, ``\\textbf{}``, ``\\mathrm{}``, ``\\mbox{}``..."""
    return unwrap_command(s, _TEXT_CMDS)


def trailing_backslash(s: str) -> str:
    """NeMo-Skills: a stray trailing ``\\`` (``185\\``) is dropped."""
    return re.sub(r"(?<!\\)\\+\s*$", "", s) if not s.endswith("\\\\") or len(s) < 3 else s


def dollars(s: str) -> str:
    """hendrycks/simple-evals: currency signs (``\\$10`` -> ``10``)."""
    return re.sub(r"\\\$|\$|€|£|¥", "", s)


def percent(s: str) -> str:
    """hendrycks: a percent sign or word at the end is dropped (``10\\%`` == ``10``)."""
    return re.sub(r"\s*(?:\\%|%|\\percent|percent(?:age)?|pct)\s*$", "", s, flags=re.I)


_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?"
# unit words: LaTeX text blocks, words of 3+ letters, or common 2-letter unit abbreviations;
# never a single letter ("3R^2" and "5x" are algebra, not units)
_UNIT_WORDS = (
    r"(?:\\(?:text|mbox|mathrm)\s*\{[^{}]*\}"
    r"|(?:[^\W\d_]{3,}|cm|mm|km|kg|mg|ml|ft|yd|mi|lb|oz|hr|sq)(?:[\s\-]+[^\W\d_]{2,})*\.?)"
)
_UNIT_TAIL = re.compile(r"^(?P<v>.*?\d\}?)\s*" + _UNIT_WORDS + r"(?:\s*\^\s*\{?\s*\d\s*\}?)?\s*$")
_NUMERIC = re.compile(r"^\s*(?:" + _NUM + r"|[-+]?\\frac\{\d+\}\{\d+\}|[-+]?\d[\d,]*(?:\.\d+)?)\s*$")


_TEXT_UNIT = re.compile(
    r"^(?P<v>.*?\d\}?)\s*(?:\\[,;: !]|~|\s)*\\(?:text|mathrm|mbox|textrm|rm|operatorname)\s*\{\s*"
    r"(?P<u>[^\W\d_][^{}\d]*(?:\^\s*\{?\s*-?\d\s*\}?[^{}\d]*)*)\}\s*(?:\^\s*\{?\s*-?\d\s*\}?)?\s*$"
)
# compound SI units after a number: "4 m/s", "9.8 m/s^2", "5 km/h", "3 N\cdot m"
_SI = r"(?:km|cm|mm|nm|µm|μm|m|kg|mg|g|s|ms|min|h|hr|N|J|kJ|W|kW|Pa|kPa|Hz|mol|K|V|A|C|L|mL|rad|Ω|°C|kWh|ft|lb|mi|mph|yd|in)"
_COMPOUND_UNIT = re.compile(
    r"^(?P<v>.*?\d)\s*" + _SI + r"(?:\^\{?-?\d\}?)?(?:\s*(?:/|\\cdot|·|\*)\s*" + _SI + r"(?:\^\{?-?\d\}?)?)+\s*$"
)
# one-letter SI symbols, only after a space (never "5x": that is algebra)
_SI_LETTER = re.compile(r"^(?P<v>.*?\d)\s+(?:m|s|g|N|J|W|V|K|L|A|Pa|Hz|h|C|T|F|Ω)(?:\^\{?-?\d\}?)?\s*$")
# Chinese measure words after a number ("3 个", "5本")
_CN_MEASURE = re.compile(
    r"^(?P<v>.*?\d)\s*(?:个|种|人|元|角|分|只|条|本|张|块|件|名|位|道|倍|次|天|岁|辆|棵|朵|支|把|瓶|杯|头|匹|页|组|套|台|层|级|米|厘米|毫米|千米|公里|克|千克|公斤|吨|秒|分钟|小时|升|毫升|平方米|立方米|度|户|颗|箱|袋|盒|座|间|节|周|年|月|日|号|题|步|场|局|份|双|对|排|行|列|片|枚|根|粒|斤|两)+[。.]?\s*$"
)


def units(s: str) -> str:
    """hendrycks ``_remove_right_units`` / MARIO_EVAL / simple-evals: a number followed by unit
    words (``10\\text{ cm}^2``, ``10 square units``, ``72 degrees``, ``10weeks``), a unit in a text
    block (``4\\text{ m/s}``, ``9.8\\,\\mathrm{m/s^2}``, ``3\\,\\mathrm{N}``), a compound SI unit
    (``5 km/h``), a one-letter SI symbol after a space (``3 N``) or a Chinese measure word
    (``3 个``) -> the number."""
    for pat in (_TEXT_UNIT, _UNIT_TAIL, _COMPOUND_UNIT, _SI_LETTER, _CN_MEASURE):
        m = pat.match(s)
        if m and _NUMERIC.match(m.group("v")):
            return m.group("v").strip()
    return s


def chinese(s: str) -> str:
    """A short Chinese answer stating one number (``共有6种方法。``, ``十二``, ``答：需要24元``)
    -> the number in digits (Chinese numerals read as numbers; negated mentions dropped)."""
    from .numbers import cjk_number

    got = cjk_number(s)
    return got if got is not None else s


def plain_math(s: str) -> str:
    from .numbers import plain_math as _pm

    return _pm(s)


def locale_numbers(s: str) -> str:
    from .numbers import locale_number

    return locale_number(s)


_APPROX = re.compile(r"\s*(?:\\approx|≈|\\simeq)\s*")


def approx(s: str) -> str:
    """NeMo-Skills: ``\\frac{\\sqrt3}{3} \\approx 0.577`` -> the exact part before ``\\approx``;
    ``x \\approx 11`` (a bare variable on the left) -> the value."""
    parts = _APPROX.split(s)
    if len(parts) < 2:
        return s
    if re.fullmatch(r"\s*(?:[a-zA-Z](?:_\{?\w+\}?)?)?\s*", parts[0]):
        return parts[-1]
    return parts[0]


_THOUSANDS = re.compile(r"^[-+]?[1-9]\d{0,2}(?:(?:,|\{,\}|\s)\d{3})+(?:\.\d+)?$")


def thousands(s: str) -> str:
    """lighteval/Math-Verify/hendrycks: ``7,425,000``, ``11,\\!111``, ``1 000``, ``1{,}000`` -> digits
    (only when the whole answer is one grouped number, so ``6, -2`` stays a list)."""
    t = re.sub(r",\\!\s*", ",", s).replace("\\!", "").replace("{,}", ",").strip()
    if _THOUSANDS.match(t):
        return re.sub(r"[,\s]|\{,\}", "", t)
    # decimal comma (lighteval/Math-Verify): "1000,99", "0,111", "2,74" -- not a 3-digit group
    m = re.fullmatch(r"([-+]?\d+),(\d+)", t)
    if m and (len(m.group(2)) >= 2 and (len(m.group(2)) != 3 or m.group(1).lstrip("+-") == "0")):
        return m.group(1) + "." + m.group(2)
    return s


_NUMBER = re.compile(r"^([-+]?)(\d*)(?:\.(\d*))?$")


def number(s: str) -> str:
    """NeMo-Skills/verl canonical numbers: ``033`` -> ``33``, ``+033`` -> ``33``, ``-0`` -> ``0``,
    ``5.0`` -> ``5``, ``.185`` -> ``0.185`` (hendrycks' leading zero)."""
    m = _NUMBER.match(s.strip())
    if not m or not (m.group(2) or m.group(3)):
        return s
    try:
        d = Decimal(s.strip())
    except InvalidOperation:
        return s
    if d == 0:
        return "0"
    out = format(d.normalize(Context(prec=len(s) + 5)), "f")  # the default 28 digits would round
    return out


_MIXED = [
    re.compile(r"^\s*(-?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}\s*$"),
    re.compile(r"^\s*(-?)(\d+)\s+(\d+)\s*/\s*(\d+)\s*$"),
]


def mixed_numbers(s: str) -> str:
    """MARIO_EVAL: mixed numbers ``1\\frac12``, ``1 1/2``, ``918\\frac{1}{2}`` -> ``\\frac{3}{2}``
    (only an integer directly followed by a proper fraction of integers)."""
    for pat in _MIXED:
        m = pat.match(s)
        if m:
            sign, a, b, c = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
            if 0 < b < c and len(m.group(2)) < 12 and len(m.group(4)) < 12:
                return f"{sign}\\frac{{{a * c + b}}}{{{c}}}"
    return s


_MATRIX_ENV = re.compile(r"\\(begin|end)\{(?:bmatrix|Bmatrix|smallmatrix|matrix|array)\}(\{[lcr|\s]*\})?")


def matrix_env(s: str) -> str:
    """Math-Verify/NeMo-Skills: ``bmatrix``/``Bmatrix``/``matrix``/``array`` -> ``pmatrix``."""
    if "\\begin" not in s:
        return s
    return _MATRIX_ENV.sub(lambda m: "\\" + m.group(1) + "{pmatrix}", s)


_LHS = re.compile(r"^\s*(?:[a-zA-Z](?:_\{?\w+\}?)?|[a-zA-Z]\s*\([a-zA-Z]\))\s*=(?![=<>])\s*(?P<rhs>[^=<>]+)$")


def lhs(s: str) -> str:
    """hendrycks ``x = 5`` -> ``5``; MARIO ``f(x) = 2x+3`` -> ``2x+3``: a short left-hand side
    (one letter, optionally subscripted, or ``f(x)``) is dropped, per comma-separated item."""
    if "=" not in s:
        return s
    items = split_top_level(s)
    out = []
    for it in items:
        m = _LHS.match(it)
        out.append(m.group("rhs").strip() if m else it)
    return ", ".join(out) if len(items) > 1 else out[0]


def whitespace(s: str) -> str:
    """hendrycks: all whitespace removed for the string comparison."""
    return re.sub(r"\s+", "", s)


# Rule order matters: the pipeline applied before the string comparison and before parsing.
RULES: dict[str, callable] = {
    "unescape": unescape_double_backslash,
    "delimiters": strip_delimiters,
    "chinese": chinese,
    "locale_numbers": locale_numbers,
    "thousands": thousands,
    "latex_spacing": latex_spacing,
    "text": text,
    "trailing_backslash": trailing_backslash,
    "approx": approx,
    "plain_math": plain_math,
    "dollars": dollars,
    "percent": percent,
    "units": units,
    "mixed_numbers": mixed_numbers,
    "fix_fracs": fix_fracs,
    "matrix_env": matrix_env,
    "lhs": lhs,
    "number": number,
}

# conventions that risk false positives: named switches, off unless the recipe turns them on
OFF_BY_DEFAULT = frozenset({"locale_numbers"})

# rules that run before the string comparison only (they would lose information for parsing)
STRING_ONLY = {"whitespace"}


def normalize(s: str, enabled: frozenset[str] | set[str] | None = None) -> str:
    """Apply the enabled rules in order (all when ``enabled`` is None)."""
    s = s.strip()
    if enabled is None:
        enabled = frozenset(RULES) - OFF_BY_DEFAULT
    for name, fn in RULES.items():
        if name in enabled:
            if name == "text" and "units" in enabled:
                s = units(s).strip()  # a unit in a text block, before the block is unwrapped
            s = fn(s).strip()
    # a second pass of the cheap wrappers: units may reveal a number, text may reveal delimiters
    for name in ("delimiters", "text", "units", "thousands", "number"):
        if name in enabled:
            s = RULES[name](s).strip()
    return s


def string_key(s: str, casefold: bool = True) -> str:
    """The key for the strict string comparison (whitespace dropped; words case-folded)."""
    k = whitespace(s)
    if casefold and re.fullmatch(r"[^\W\d_]{2,}(?:[^\W\d_]|[-'])*", k):
        k = k.casefold()
    return k
