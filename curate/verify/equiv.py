"""Judging one sample: extract the predicted answer, then decide equivalence with the gold.

Order of the checks (cheapest first):
  1. normalised strings equal                      -> correct, no parsing at all
  2. multiple-choice gold                          -> compare option letters
  3. clock times (rule ``time``)
  4. exact rationals on both sides                 -> fractions.Fraction, no parsing
  5. Math-Verify ``verify`` on the sympy parses (gold parsed lazily, once per problem; a numeric
     probe first rules out clearly different expressions)
  6. shown-precision decimals (rule ``numeric_tolerance``)
  7. bare comma lists: item by item (unordered when the problem allows it, ordered when it asks)
  8. prose: a second reading with Math-Verify's own extraction near the end of the text
Otherwise ``incorrect`` (or ``unparseable`` when the prediction does not parse while the gold does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

from .compare import (  # noqa: F401  (re-exported: imported from here)
    _as_float,
    _clearly_differ,
    _clock,
    _closed_number,
    _exact_decision,
    _exact_num,
    _probe_equal,
    _shown_precision,
    _sympy_equal,
    exact_rational,
)
from .extract import EXTRACTORS, extract_choice, gold_choice, last_boxed, parse_options
from .memo import Memo
from .normalize import normalize, split_top_level, string_key
from .numbers import Num, numbers_equal, quantity, read_number
from .options import Options

WEAK_EXTRACTORS = frozenset({"whole", "math_verify", "last_number"})
# what a cut-off text may still be judged on: an answer the model marked as final
STRONG_EXTRACTORS = frozenset({"boxed", "final_answer", "answer_tag", "hash"})
_PERCENT = re.compile(r"(?:\\%|%|\\percent|\bpercent(?:age)?\b)\s*\}?\s*\.?\s*$", re.I)
from ..columns import VERDICTS  # noqa: E402,F401  (the data contract, re-exported)

# ----------------------------------------------------------------------------- gold

_UNORDERED_HINT = re.compile(
    r"(?i)separated by commas|comma[- ]separated|in any order|all (?:the |possible |real |integer |positive |"
    r"distinct |complex )*(?:solutions|values|roots|zeros|answers|numbers|integers|pairs|x\b|real numbers)"
)


_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")


_ORDERED_HINT = re.compile(
    r"(?i)\bin (?:that |this |the same )?order\b|\bordered\b|in (?:increasing|decreasing|ascending|descending)"
    r"|\brespectively\b|from (?:least|smallest|largest|greatest) to"
)


@dataclass
class Gold:
    raw: str
    ans: str
    key: str
    src: str = ""
    opts: Optional[Options] = None
    choice: Optional[str] = None
    items: Optional[list[str]] = None
    unordered_ok: bool = False
    ordered: bool = False
    """a bare comma list compared item by item, in order (Math-Verify reads it as a set)"""
    time: Optional[int] = None
    pct: bool = False
    """the gold is written as a percentage (``50\\%``): 50 and 0.5 both match"""
    num: Optional[Num] = None
    """the gold as a plain number (exact value, shown precision)"""
    options: Optional[dict] = None
    """the problem's multiple-choice options (letter -> text), when it lists them"""
    _parsed: Any = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)

    @property
    def parsed(self) -> Any:
        """The gold's sympy parses, computed on first use (never when every sample matches the
        gold string). Marked done before parsing: a gold that times out is not retried."""
        if not self._done:
            self._done = True
            self._parsed = _parse_gold(self, self.opts) if self.opts is not None else None
        return self._parsed


_PARSES = Memo(4096)
_JUDGED = Memo(16384)
_MISS = object()


def _parse(s: str, opts: Options) -> Any:
    from .mv import parse_latex

    if len(s) > opts.max_answer_chars:
        return None
    got = _PARSES.get(s, _MISS)
    if got is _MISS:
        got = _PARSES.put(s, parse_latex(s))
    return got


def _parse_variants(raw: str, norm: str, opts: Options) -> list:
    """Parses of the normalised answer, plus the answer without the ``lhs`` rule when it is an
    equation (``y = -x/2 + 3/4`` must still compare as an equation)."""
    out = []
    p = _parse(norm, opts)
    if p is not None:
        out.append(p)
    if "=" in norm or ("lhs" in opts.rules and "=" in raw):
        alt = normalize(raw, opts.rules - {"lhs"})
        if alt != norm:
            q = _parse(alt, opts)
            if q is not None:
                out.append(q)
    return out


def prepare_gold(gold: Optional[str], problem: Optional[str], opts: Options) -> Optional[Gold]:
    """Normalise a gold answer once per problem (None when there is no usable gold). Its sympy
    parse is lazy (``Gold.parsed``)."""
    if gold is None:
        return None
    raw = str(gold).strip()
    if not raw:
        return None
    choice = gold_choice(raw, problem) if "choice" in opts.rules else None
    ans_src = raw
    b = last_boxed(raw)
    if b is not None:
        ans_src = b
    ans = normalize(ans_src, opts.rules) if len(ans_src) <= opts.max_answer_chars else ans_src
    if not ans and not choice:
        return None
    g = Gold(raw=raw, ans=ans, key=_key(ans, opts), src=ans_src, opts=opts, choice=choice)
    if "choice" in opts.rules and problem:
        g.options = parse_options(problem) or None
    if choice:
        return g
    g.pct = bool(_PERCENT.search(ans_src)) and "percent" in opts.rules
    g.num = read_number(ans) if len(ans) <= 200 else None
    if "time" in opts.rules:
        g.time = _clock(ans)
    items = split_top_level(ans)
    if len(items) > 1:
        g.items = items
    if opts.unordered == "always":
        g.unordered_ok = True
    elif opts.unordered == "auto":
        g.ordered = bool(g.items and problem and _ORDERED_HINT.search(problem))
        g.unordered_ok = bool(problem and _UNORDERED_HINT.search(problem)) and not g.ordered
    else:
        g.ordered = bool(g.items)
    return g


def _parse_gold(g: Gold, opts: Options) -> Optional[list]:
    cands = _parse_variants(g.src, g.ans, opts)
    if _DELIMITED.search(g.raw) and len(g.raw) <= 20 * opts.max_answer_chars:
        from .mv import mv_extract

        got = mv_extract(g.raw)  # a gold written like a model output ("$...$", several boxes)
        if got is not None and got[1] is not None:
            cands.append(got[1])
    return cands or None


# ----------------------------------------------------------------------------- extraction


def extract_answer(text: Optional[str], opts: Options, *, is_mc: bool, options: Optional[dict] = None
                   ) -> tuple[Optional[str], Any, str]:
    """First answer found by the configured extractors: (answer string, pre-parsed sympy or None,
    the extractor's name)."""
    if not text:
        return None, None, ""
    tail = text if len(text) <= opts.tail_chars else text[-opts.tail_chars :]
    for name in opts.extract:
        if name == "choice" and not is_mc:
            continue
        src = text if name in ("boxed", "answer_tag") else tail
        got = EXTRACTORS[name](src, options) if name == "choice" else EXTRACTORS[name](src)
        if got is None:
            continue
        if isinstance(got, tuple):
            s, parsed = got
        else:
            s, parsed = got, None
        if s is not None and str(s).strip():
            return str(s).strip(), parsed, name
    return None, None, ""


# ----------------------------------------------------------------------------- equivalence

def _key(s: str, opts: Options) -> str:
    """String-comparison key; rule ``string_fallback`` makes word answers case-insensitive."""
    return string_key(s, casefold="string_fallback" in opts.rules)


def _equal_strings(g: str, p: str, opts: Options) -> bool:
    """Equivalence of two normalised answer strings (used for list items)."""
    if _key(g, opts) == _key(p, opts):
        return True
    gn, pn = read_number(g), read_number(p)
    if gn is not None and pn is not None:
        return numbers_equal(gn, pn)
    return _sympy_equal(_parse(g, opts), _parse(p, opts), opts) or _shown_precision(_parse(g, opts), p)


def judge(gold: Gold, pred: str, pred_parsed: Any, opts: Options, pred_text: str = "", anchored: bool = True) -> str:
    """Verdict for an extracted prediction against a prepared gold. An anchored answer (boxed,
    tagged, "final answer", "answer:", ``####``, an option letter) is final: a second reading with
    Math-Verify's extraction only reads that answer's own sentence (never the text before it);
    answers the weak fallbacks found get it over the last 600 characters. Negated mentions are
    blanked first."""
    if gold.choice:  # letters may come from the text itself: not memoised
        return _judge_answer(gold, pred, pred_parsed, opts, pred_text)[0]
    key = (gold.raw, gold.unordered_ok, gold.ordered, pred, opts)
    got = _JUDGED.get(key)
    if got is None:
        got = _JUDGED.put(key, _judge_answer(gold, pred, pred_parsed, opts, pred_text))
    verdict, p = got
    if verdict == "correct" or not pred_text or gold.parsed is None or gold.choice:
        return verdict
    # a second reading of prose: Math-Verify's own extraction near the end of the text
    from .extract import extract_whole, strip_negated

    if anchored:  # the anchored answer's own span only (a display split by stray "$": "12 $ and $13")
        pos = pred_text.rfind(pred)
        if pos < 0:
            return verdict
        start = max(pred_text.rfind(b, 0, pos) for b in (". ", "\n", ": ", "。", "：", "<answer>"))
        window = pred_text[start + 1 : pos + 600]
    else:
        window = pred_text[-600:]
    window = strip_negated(window)
    if anchored or extract_whole(pred_text) is None:
        from .mv import mv_extract, mv_first_string

        if gold.ordered:
            return verdict
        if anchored:  # one sentence: read it whole, skip it when it only repeats the answer
            got2 = mv_extract(window)
            if got2 is not None and got2[1] is not None and _key(normalize(got2[0], opts.rules), opts) != _key(p, opts):
                if _sympy_equal(gold.parsed, got2[1], opts):
                    return "correct"
            return verdict
        first = mv_first_string(window)
        if first is not None and _key(normalize(first, opts.rules), opts) != _key(p, opts):
            got2 = mv_extract(window)
            if got2 is not None and got2[1] is not None and _sympy_equal(gold.parsed, got2[1], opts):
                return "correct"
    return verdict


def _judge_answer(gold: Gold, pred: str, pred_parsed: Any, opts: Options, pred_text: str) -> tuple[str, str]:
    """Checks 1-6 on the extracted answer: (verdict, normalised answer)."""
    p = normalize(pred, opts.rules) if len(pred) <= opts.max_answer_chars else pred
    pkey = _key(p, opts)
    # 1. identical normalised strings: no parsing
    if pkey == gold.key:
        return "correct", p
    v = _choice_verdict(gold, p, opts, pred_text)
    if v is not None:
        return v, p
    if len(pred) > opts.max_answer_chars:
        return ("unparseable" if gold.parsed is not None else "incorrect"), p
    v = _plain_verdict(gold, pred, p, opts)
    if v is not None:
        return v, p
    # 4./5. sympy
    cands = _parse_variants(pred, p, opts)
    if pred_parsed is not None:
        cands.append(pred_parsed)
    for c in cands:
        if _sympy_equal(gold.parsed, c, opts):
            return "correct", p
    if "numeric_tolerance" in opts.rules and _shown_precision(gold.parsed, p):
        return "correct", p
    # 6. unordered lists
    if gold.items and gold.unordered_ok and _unordered_items_match(gold.items, p, opts):
        return "correct", p
    if not cands and gold.parsed is not None:
        return "unparseable", p
    return "incorrect", p


def _choice_verdict(gold: Gold, p: str, opts: Options, pred_text: str) -> Optional[str]:
    """Check 2, multiple choice: compare letters (an answer that is an option's text names its
    letter); a gold that is an option's text against a letter compares the option's text. None:
    not decided here."""
    if gold.choice:
        letter = extract_choice(p, gold.options) or (extract_choice(pred_text, gold.options) if pred_text else None)
        if letter is None and gold.options:
            letter = _option_of(p, gold.options, opts)
        return "correct" if letter == gold.choice else "incorrect"
    if gold.options:  # the gold is an option's text and the answer a letter: compare the option's text
        m = _BARE_LETTER.fullmatch(p)
        if m and m.group(1) in gold.options:
            text = normalize(gold.options[m.group(1)], opts.rules)
            return "correct" if _equal_strings(gold.ans, text, opts) else "incorrect"
    return None


def _plain_verdict(gold: Gold, pred: str, p: str, opts: Options) -> Optional[str]:
    """Checks that need no sympy parse of the answer: clock times, one-letter answers, unit
    conversion, plain numbers, ordered bare lists. None: not decided here."""
    # 3. clock times
    if gold.time is not None:
        t = _clock(p)
        if t is not None:
            return "correct" if t % 86400 == gold.time % 86400 else "incorrect"
    # one-letter answers: the case is the variable ("X" is not "x"; the LaTeX parser lowercases)
    if len(p) == 1 and len(gold.ans) == 1 and p.isalpha() and gold.ans.isalpha():
        return "correct" if p == gold.ans else "incorrect"
    # unit conversion (a convention, off by default): 5 m = 500 cm
    if "unit_conversion" in opts.rules:
        qg, qp = quantity(gold.src), quantity(pred)
        if qg is not None and qp is not None and qg[1] == qp[1]:
            same = numbers_equal(qg[0].scaled(qg[2]), qp[0].scaled(qp[2]))
            return "correct" if same else "incorrect"
    # plain numbers on both sides (integers, a/b, decimals, 3.2e5): the comparison policy of
    # curate.verify.numbers, exact Fractions, no parsing
    v = _numbers_verdict(gold, pred, p, opts)
    if v is not None:
        return v
    # an ordered bare list (unordered: never, or the problem asks for an order): item by item
    if gold.ordered and gold.items:
        pitems = split_top_level(p)
        same = len(pitems) == len(gold.items) and all(
            _equal_strings(gi, pi, opts) for gi, pi in zip(gold.items, pitems)
        )
        return "correct" if same else "incorrect"
    return None


def _unordered_items_match(gold_items: list[str], p: str, opts: Options) -> bool:
    """Every gold item matched by a distinct answer item, in any order (same count)."""
    pitems = split_top_level(p)
    if len(pitems) != len(gold_items):
        return False
    left = list(pitems)
    for gi in gold_items:
        hit = next((k for k, pi in enumerate(left) if _equal_strings(gi, pi, opts)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


_BARE_LETTER = re.compile(r"\(?([A-E])\)?\.?")


def _option_of(p: str, options: dict, opts: Options) -> Optional[str]:
    """The letter of the option whose text the answer states (``7`` for "(C) 7")."""
    hits = [k for k, v in options.items() if _equal_strings(normalize(v, opts.rules), p, opts)]
    return hits[0] if len(hits) == 1 else None


def _numbers_verdict(gold: Gold, pred: str, p: str, opts: Options) -> Optional[str]:
    """Both sides plain numbers (or exact rationals after parsing): the numbers policy, with the
    percent reading (``50\\%`` = 50 = 0.5; ``0.25`` = ``25\\%``). None: not plain numbers."""
    pn = read_number(p) if len(p) <= 200 else None
    gn = gold.num
    if pn is None and gn is None:
        return None
    if gn is None:
        parsed = gold.parsed
        gn = next((n for n in map(_exact_num, parsed or []) if n is not None), None)
    elif pn is None:
        pn = _exact_num(_parse(p, opts))
    if gn is None or pn is None:
        return None
    ppct = bool(_PERCENT.search(pred)) and "percent" in opts.rules
    golds, preds = [gn], [pn]
    if gold.pct and not ppct:
        golds.append(gn.scaled(Fraction(1, 100)))
    if ppct and not gold.pct:
        preds.append(pn.scaled(Fraction(1, 100)))
    same = any(numbers_equal(g, q) for g in golds for q in preds)
    return "correct" if same else "incorrect"


def _after_think(text: Optional[str], truncated: bool) -> Optional[str]:
    """The part of an output after its think block: after the last ``</think>``; an unclosed
    ``<think>`` in a cut-off output has no answer part (None)."""
    if not text:
        return text
    close = text.rfind("</think>")
    if close >= 0:
        return text[close + len("</think>"):]
    if truncated and "<think>" in text:
        return None
    return text


def check_row(
    gold: Optional[Gold],
    answer_text: Optional[str],
    reasoning: Optional[str],
    finish_reason: Optional[str],
    problem: Optional[str],
    opts: Options,
    seen: Optional[list] = None,
) -> tuple[Optional[str], str]:
    """(pred_answer, verdict) for one sample row (no timeout here: see ``pool``). The extracted
    answer is appended to ``seen`` before judging, so a timeout can still report it."""
    # letters are read only when the gold is a letter: a numeric gold never gets a letter prediction,
    # even when the problem text happens to look like a list of options
    is_mc = bool(gold is not None and gold.choice)
    pred, parsed, src, name = None, None, "", ""
    truncated = (finish_reason or "").lower() == "length"
    texts: tuple = (_after_think(answer_text, truncated), reasoning)
    if truncated:
        # a cut-off text: only an answer the model marked as final (boxed, "final answer", an answer
        # tag, ####) counts, never "the answer should be 588" mid-reasoning; the reasoning column
        # (the think block) is interim by definition and is not read
        import dataclasses

        opts = dataclasses.replace(opts, extract=tuple(e for e in opts.extract if e in STRONG_EXTRACTORS))
        texts = texts[:1]
    options = gold.options if gold is not None else None
    for text in texts:
        if text:
            pred, parsed, name = extract_answer(text, opts, is_mc=is_mc, options=options)
            if pred is not None:
                src = text
                break
    if pred is None:
        if truncated:
            return None, "truncated"
        if gold is None:
            return None, "no_gold"
        return None, "no_answer"
    if seen is not None:
        seen.append(pred)
    if gold is None:
        return pred, "no_gold"
    tail = src[-opts.tail_chars :] if src else ""
    return pred, judge(gold, pred, parsed, opts, pred_text=tail, anchored=name not in WEAK_EXTRACTORS)
