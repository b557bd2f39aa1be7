"""Extraction of the predicted answer from a model's answer text (or the end of its reasoning).

Extractors, tried in the configured order, each returning the answer *string* (or None):

  choice        multiple-choice letter (only when the problem/gold is multiple-choice)
  boxed         last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces)
  answer_tag    last ``<answer>...</answer>``
  final_answer  "final answer is X", "Answer: X" and its translations (lighteval's literals)
  hash          GSM8K style ``#### X``
  math_verify   Math-Verify's own regexes (LaTeX environments and plain expressions, its priorities),
                with the expression conversion replaced by a safe one (no ``parse_expr``)
  whole         a short formula-like answer given bare (``\\frac{3}{4}i``, ``10 square units``)
  last_number   the last number in the text (lm-eval-harness' "flexible extract")

None of them evaluates text; they are regular expressions and brace matching.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from .normalize import match_brace

# ----------------------------------------------------------------------------- boxed


def _boxed_at(text: str, i: int) -> Optional[tuple[str, int]]:
    """(content, end index) of the ``\\boxed``/``\\fbox`` starting at ``i``."""
    j = i + (6 if text.startswith("\\boxed", i) else 5)
    k = j
    while k < len(text) and text[k] == " ":
        k += 1
    if k < len(text) and text[k] == "{":
        end = match_brace(text, k)
        if end > 0:
            return text[k + 1 : end].strip(), end + 1
    elif k > j:  # "\boxed 5"
        m = re.match(r"[^\s$]+", text[k:])
        if m:
            return m.group(0).strip(), k + m.end()
    return None


def last_boxed(text: str) -> Optional[str]:
    """Content of the last ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed X``); None when absent/unbalanced."""
    pos = len(text)
    for _ in range(50):
        i = max(text.rfind("\\boxed", 0, pos), text.rfind("\\fbox", 0, pos))
        if i < 0:
            return None
        got = _boxed_at(text, i)
        if got is not None:
            return got[0]
        pos = i
    return None


# What may stand between several boxed answers that together form one answer ("\boxed{1} and \boxed{2}").
_CONNECTOR = re.compile(
    r"^(?:\s|,|;|\$|\\[()\[\]]|\\quad|\\qquad|\\[,;: ]|and|or|&|[a-zA-Z](?:_\{?\w{1,3}\}?)?\s*=|\\(?:text|mbox)\{[^{}]{0,30}?\b(?:and|or)\b[^{}]{0,5}\}|\\(?:text|mbox)\{[\s,;]*\})*$"
)


def extract_boxed(text: str) -> Optional[str]:
    """The last boxed answer; several boxed answers joined only by connectors (``,``, "and",
    ``\\quad``, a short ``\\text{}``) form one comma list, as Math-Verify reads them."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    got = _boxed_at(text, i)
    if got is None:
        return last_boxed(text[:i])
    parts = [got[0]]
    start = i
    for _ in range(20):
        k = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
        if k < 0:
            break
        prev = _boxed_at(text, k)
        if prev is None or prev[1] > start or not _CONNECTOR.match(text[prev[1] : start]):
            break
        parts.append(prev[0])
        start = k
    return ", ".join(reversed(parts))


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


def extract_answer_tag(text: str) -> Optional[str]:
    last = None
    for m in _ANSWER_TAG.finditer(text):
        last = m
    if last is None:
        return None
    inner = last.group(1).strip()
    return (last_boxed(inner) or inner) or None


# Answer words in several languages (lighteval's TRANSLATION_LITERALS "answer").
ANSWER_WORDS = (
    r"final answer|answer|réponse|respuesta|antwort|risposta|resposta|ответ|答案|回答|解答|答|结论|综上所述|"
    r"الإجابة|الجواب|उत्तर|jawaban|cevap|odpowiedź|antwoord"
)
_FINAL = re.compile(
    r"(?:\*\*)?(?i:" + ANSWER_WORDS + r")(?:\*\*)?\s*(?:(?i:is|est|es|ist|è|é|是|为|为：)\s*)?[:：]?\s*(?:\*\*)?"
    r"(?P<ans>[^\n]{1,300})"
)
_HOPE = re.compile(r"\.?\s*I hope it is correct.*$", re.S | re.I)


# A mention the text rejects: "not C", "isn't 40", "不是 12", "rather than 5". Never an answer.
_NEGATED = re.compile(
    r"(?i:\b(?:is\s+not|isn't|not|never|rather\s+than|instead\s+of|not\s+equal\s+to)\s+(?:equal\s+to\s+|the\s+)?)"
    r"(?:\$[^$]{1,40}\$|\\boxed\{[^{}]{1,40}\}|\(?[A-E]\)?(?![A-Za-z])|[-−]?\d+(?:[.,/]\d+)*(?:\s*%)?)"
    r"|(?:不是|并非|而非|而不是|不等于|不为|不选)\s*(?:\$[^$]{1,40}\$|\(?[A-E]\)?(?![A-Za-z])|[-−]?\d+(?:[.,/]\d+)*|[零〇一二两三四五六七八九十百千万亿]+)"
)


def strip_negated(text: str) -> str:
    """Blank out mentions the text rejects ("not C", "isn't 40", "不是 12")."""
    if not text:
        return text
    return _NEGATED.sub(lambda m: " " * len(m.group(0)), text)


def _clean_tail(ans: str) -> str:
    ans = _HOPE.sub("", ans)
    ans = strip_negated(ans)
    ans = re.sub(r"^[\s,;:，；、]*(?:(?i:but|rather|instead|it\s+is|it's|so)\b|而是|是|而)?[\s,;:，；、]*", "", ans)
    ans = re.sub(r"[，；、]\s*$", "", ans.rstrip())
    ans = ans.strip().strip("*").strip()
    # stop at the end of the sentence (a period followed by a space/end, not a decimal point), or at
    # a Chinese comma before more text
    m = re.search(r"(?<!\d)\.(?:\s|$)|(?<=\d)\.(?:\s|$)|。|[，；](?=\s*[^\s\d])|\?\s|(?<=[A-Za-z])!\s", ans)
    if m:
        ans = ans[: m.start()]
    return ans.strip()


_ANCHOR_ANY = re.compile(r"(?i:" + ANSWER_WORDS + r")")
_NON_LATIN = re.compile(r"[^\x00-\x7f]+")
_FIRST_NUM = re.compile(r"(?<![A-Za-z\d_.])-?\d+(?:[.,]\d+)*(?:\s*/\s*\d+)?")


_DISPLAY_AFTER = re.compile(r"\s*(?:\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$(.+?)(?<!\\)\$)", re.S)
_IS_X = re.compile(
    r"(?:\bis|=|:|\best|是|为)\s*:?\s*(?:\$([^$]+)\$|\\\((.+?)\\\)|(-?\d+(?:[.,]\d+)*(?:\s*/\s*\d+)?))"
)


def _after_anchor(text: str, start: int) -> Optional[str]:
    m = _FINAL.match(text, start)
    if m is None:
        return None
    # a display block right after the anchor ("Answer \\[ 9 \\]", "Answer: $$ 9 $$")
    head = text[m.start("ans") - 1 : m.start("ans") + 3] if m.start("ans") > 0 else ""
    d = _DISPLAY_AFTER.match(text, m.start("ans"))
    if d and ("$" in head or "\\" in head):
        inner = next(g for g in d.groups() if g is not None).strip()
        if inner:
            return inner
    ans = _clean_tail(m.group("ans"))
    if not ans:
        return None
    b = last_boxed(ans)
    if b is not None:
        return b
    if extract_whole(ans):
        return ans
    later = extract_boxed(text[m.start("ans") :])  # "the final answer, after checking, ... \\boxed{5}"
    if later is not None:
        return later
    hits = list(_IS_X.finditer(ans))
    if hits:
        g = hits[-1]
        return next(x for x in g.groups() if x is not None).strip()
    if _NON_LATIN.search(ans):
        stripped = _NON_LATIN.sub(" ", ans).strip(" :()")
        if stripped and extract_whole(stripped):
            return stripped
    n = _FIRST_NUM.search(ans[:60])
    return n.group(0) if n else None


_STRONG = re.compile(r"(?i)final answer")


def extract_final_answer(text: str) -> Optional[str]:
    """After the last "final answer": a boxed/``$..$`` answer, a short bare answer, "... is X",
    or the first number within 60 characters (Math-Verify's ``answer:`` rule)."""
    last = None
    for last in _STRONG.finditer(text):
        pass
    return _after_anchor(text, last.start()) if last else None


def extract_answer_word(text: str) -> Optional[str]:
    """The same after the last answer word in any of several languages ("Answer:", "Réponse :",
    "答案："), lighteval's translation literals."""
    last = None
    for last in _ANCHOR_ANY.finditer(text):
        pass
    return _after_anchor(text, last.start()) if last else None


_HASH = re.compile(r"####\s*([^\n]+)")


def extract_hash(text: str) -> Optional[str]:
    last = None
    for m in _HASH.finditer(text):
        last = m
    return last.group(1).strip().rstrip(".") if last else None


# ----------------------------------------------------------------------------- multiple choice

LETTERS = "ABCDE"
_OPTIONS_IN_PROBLEM = re.compile(r"(?:^|\s|\n)\(?([A-E])[).:]\s*\S", re.M)


def problem_is_multiple_choice(problem: str | None) -> bool:
    if not problem:
        return False
    found = set(m.group(1) for m in _OPTIONS_IN_PROBLEM.finditer(problem))
    return {"A", "B"} <= found and ("C" in found or "D" in found)


_GOLD_LETTER = re.compile(r"^\s*\(?([A-E])\)?(?:[.):](?=\s|$)|\s+(?=\S)|\s*$)")
_GOLD_WRAPPED = re.compile(r"^\s*\\(?:text|textbf|mathrm|mathbf|boxed)\{\s*\(?([A-E])\)?\s*\}\s*$")


def gold_choice(gold: str, problem: str | None = None) -> Optional[str]:
    """The option letter of a multiple-choice gold: ``D``, ``(D) Alina``, ``C Cecile``, or a gold
    whose text ends with "answer is (C) ..."; None when the gold is not a choice."""
    g = gold.strip().strip("$").strip()
    m = _GOLD_WRAPPED.match(g)
    if m:
        return m.group(1)
    if re.fullmatch(r"\(?[A-E]\)?\.?", g):
        return g.strip("().")
    m = _GOLD_LETTER.match(g)
    if m and (re.match(r"^\s*\([A-E]\)", g) or re.match(r"^\s*[A-E](?:[.):](?:\s|$)|\s+[A-Z])", g)):
        return m.group(1)
    a = _anchored_letter(g)
    if a:
        return a
    if problem_is_multiple_choice(problem) and m:
        return m.group(1)
    return None


_LETTER = r"(?<![A-Za-z\\])\(?([A-E])\)?(?![A-Za-z])"
_ANCHOR = re.compile(r"(?i:answer|réponse|respuesta|antwort|risposta|resposta|ответ|choice|option)|答案|回答|答")


# a letter the prose rejects: "(D) is incorrect", "B is wrong", "rule out A", "not C"
_REJECTED_AFTER = re.compile(
    r"^\)?\s*(?:is|are|seems|looks|would\s+be)?\s*(?:also\s+)?(?:not\b|n't|incorrect|wrong|false|invalid|impossible|"
    r"eliminated|ruled\s+out|out\b|cannot|can't|could\s*n[o']t|fails|does\s*n[o']t|is\s+not)(?!\s*\(?[A-E0-9](?![A-Za-z]))|^\)?\s*(?:不对|错|不正确|不是(?!\s*\(?[A-E0-9])|排除)",
    re.I,
)
_REJECTED_BEFORE = re.compile(
    r"(?:\bnot|n't|rule\s+out|rules\s+out|ruled\s+out|eliminate[sd]?|exclude[sd]?|except|discard|reject|cross\s+out|排除|不是|不选)\s*"
    r"(?:option\s+|choice\s+|answer\s+)?\(?$",
    re.I,
)


def _rejected(text: str, m: re.Match) -> bool:
    return bool(_REJECTED_AFTER.match(text[m.end(1):m.end(1) + 40]) or _REJECTED_BEFORE.search(text[max(0, m.start() - 30):m.start() + (1 if text[m.start()] == "(" else 0)]))


def _letters(text: str) -> list[str]:
    """Standalone option letters in ``text`` that the prose does not reject."""
    return [m.group(1) for m in re.finditer(_LETTER, text) if not _rejected(text, m)]


def _anchored_letter(text: str) -> Optional[str]:
    hits = list(_ANCHOR.finditer(text))
    for h in reversed(hits):
        window = strip_negated(text[h.end() : h.end() + 60])
        got = _letters(window)
        if got:
            return got[0]
    return None


_OPTION = re.compile(r"(?:^|(?<=\s))\(?([A-E])(?:\)|[.:：．])\s*(.+?)(?=\s+\(?[A-E](?:\)|[.:：．])\s|\n|$)", re.S)


def parse_options(problem: Optional[str]) -> dict:
    """The options a problem lists, letter -> text (``(A) 5 (B) 6 ...`` or ``A. 4`` per line): at
    least A, B and C in order; {} otherwise."""
    if not problem:
        return {}
    found: dict = {}
    for m in _OPTION.finditer(problem):
        letter, text = m.group(1), m.group(2).strip().rstrip(";,")
        if letter == "A":
            found = {}
        if letter in found or (found and ord(letter) != ord(max(found)) + 1):
            continue
        if text:
            found[letter] = text
    return found if {"A", "B", "C"} <= set(found) else {}


def _option_text_letter(text: str, options: Optional[dict]) -> Optional[str]:
    """The letter of the option whose text ends the answer ("... None of the above")."""
    if not options:
        return None
    from .normalize import string_key

    tail = re.split(r"(?<=[.!?。])\s+|\n", text.strip())
    last = tail[-1].strip().rstrip(".。!") if tail else ""
    key = string_key(last)
    hits = [k for k, v in options.items() if len(v) > 3 and string_key(v.rstrip(".")) == key]
    return hits[0] if len(hits) == 1 else None


_LEADING = re.compile(r"^\s*(?:\*\*)?\(?([A-E])\)?(?:\*\*)?(?:[.):：。,，]|\s*$|(?=[^\x00-\x7f]))")
_LAST_LETTER = re.compile(_LETTER)


def extract_choice(text: str, options: Optional[dict] = None) -> Optional[str]:
    """Option letter: boxed/wrapped letter, "answer is X" (several languages), a leading
    ``D.``/``(D)``/``B。``, the option whose text ends the answer, else the last standalone capital
    A-E. A letter the prose rejects ("(D) is incorrect", "not C", "rule out A") never counts."""
    b = last_boxed(text)
    if b is not None:
        m = re.fullmatch(r"\s*(?:\\text\{|\\textbf\{|\\mathrm\{)?\s*\(?([A-E])\)?\s*\}?\s*(?:[.:)].*)?", b, re.S)
        if m:
            return m.group(1)
    m = _GOLD_WRAPPED.match(text)
    if m:
        return m.group(1)
    a = _anchored_letter(text)
    if a:
        return a
    m = _LEADING.match(text)
    if m and not _REJECTED_AFTER.match(text[m.end(1):m.end(1) + 40]):
        return m.group(1)
    o = _option_text_letter(text, options)
    if o:
        return o
    if len(_WORD.findall(text)) < 3:  # not prose: a formula like "E*2" names no option
        return None
    got = _letters(strip_negated(text))
    return got[-1] if got else None


# ----------------------------------------------------------------------------- whole / last number

_WORD = re.compile(r"(?<![\\a-zA-Z])[^\W\d_]{3,}")
_TEXT_BLOCK = re.compile(r"\\(?:text|mbox|mathrm|textbf)\{[^{}]*\}")


_ENV = re.compile(r"\\(?:begin|end)\{[a-zA-Z*]+\}")
_INNER_DELIM = re.compile(r"(?<!\\)\$|\\\(|\\\[")


def extract_whole(text: str) -> Optional[str]:
    """The whole text when it is a short single-line answer given bare: a formula, a number with
    trailing unit words (``10 square units``), or a short text answer (``odd``)."""
    t = text.strip()
    if not t or len(t) > 160 or "\n" in t:
        return None
    from .normalize import strip_delimiters

    inner = strip_delimiters(t)
    if _INNER_DELIM.search(inner):  # prose with inline math: Math-Verify's regexes handle it
        return None
    from .numbers import PLAIN_MATH_WORDS, cjk_number

    if cjk_number(t) is not None:  # a short Chinese answer stating one number
        return t
    bare = _ENV.sub(" ", _TEXT_BLOCK.sub(" ", inner))
    bare = re.sub(r"(?<![A-Za-z\\])(?:" + "|".join(PLAIN_MATH_WORDS) + r")(?=\s*\(|[^A-Za-z]|$)", " 0 ", bare)
    words = _WORD.findall(bare)
    if not words:
        return t
    digits = [m.end() for m in re.finditer(r"\d", bare)]
    if digits:
        first_word = _WORD.search(bare)
        if first_word.start() < digits[-1] or len(words) > 3:  # words before the number: prose
            return None
        return t
    if len(bare.split()) <= 2 and not re.search(r"[.!?]\s*$", bare) and not _NON_LATIN.search(bare):
        return t  # a short text answer ("odd", "North America"), not a sentence
    return None


_LAST_NUM = re.compile(r"(?<![A-Za-z\d.])-?\d+(?:[.,]\d+)*(?:\s*/\s*\d+)?(?![A-Za-z\d])")


def extract_last_number(text: str) -> Optional[str]:
    last = None
    for last in _LAST_NUM.finditer(text):
        pass
    if last is None:
        return None
    s = last.group(0)
    if re.fullmatch(r"-?\d+,\d{1,2}", s):  # decimal comma
        s = s.replace(",", ".")
    return s.replace(" ", "")


# ----------------------------------------------------------------------------- math-verify's regexes


def extract_math_verify(text: str):
    """Math-Verify's extraction regexes (LaTeX + expression, its priority order, rightmost first).

    Returns (answer string, parsed sympy object or None). LaTeX goes through latex2sympy (an ANTLR
    parse tree); plain numbers are built with ``sympy.Integer``/``Float``/``Rational`` on
    regex-validated digits; plain expressions are parsed as LaTeX. ``parse_expr`` is never called.
    """
    from .mv import mv_extract

    return mv_extract(text)


EXTRACTORS: dict[str, Callable[[str], Optional[str]]] = {
    "choice": extract_choice,
    "boxed": extract_boxed,
    "answer_tag": extract_answer_tag,
    "final_answer": extract_final_answer,
    "answer": extract_answer_word,
    "hash": extract_hash,
    "math_verify": extract_math_verify,
    "whole": extract_whole,
    "last_number": extract_last_number,
}
