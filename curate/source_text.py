"""Text helpers of the sources: the normalised problem text and its stable ``problem_id``, gold-answer
extraction, and how a trace splits into reasoning and answer (``think`` / ``plain`` / ``column``)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from .errors import SourceError

_WS = re.compile(r"\s+")


def normalize_problem(text: str) -> str:
    """NFKC, lower case, collapsed whitespace: the basis of the stable ``problem_id``."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def problem_id(text: str) -> str:
    return hashlib.sha256(normalize_problem(text).encode("utf-8")).hexdigest()[:16]


def last_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with nested braces, or None."""
    if not text:
        return None
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        # "\boxed 5" form
        m = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[idx:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced


def gsm8k_answer(text: str | None) -> str | None:
    if not text or "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def extract_gold(text: Any, extractor: str) -> str | None:
    if text is None:
        return None
    s = str(text)
    if extractor == "gsm8k":
        return gsm8k_answer(s)
    if extractor == "boxed":
        return last_boxed(s)
    return s.strip()


_PARAGRAPH = re.compile(r"\n\s*\n")


def split_plain(text: str) -> tuple[str, str]:
    """(reasoning, answer_text) of a plain chain of thought: the answer is the paragraph holding the
    last ``\\boxed``/``\\fbox`` and what follows it (anything written after the answer stays
    visible to the audit), else the last paragraph; the reasoning is everything before it."""
    t = (text or "").strip()
    at = max(t.rfind("\\boxed"), t.rfind("\\fbox"))
    if at < 0:
        at = len(t)
    cut = 0
    for m in _PARAGRAPH.finditer(t, 0, at):
        cut = m.end()
    if cut == 0 and at == len(t):  # no box: the last paragraph is the answer
        for m in _PARAGRAPH.finditer(t):
            cut = m.end()
    return t[:cut].strip(), t[cut:].strip()


def detect_trace_format(texts: list[str]) -> tuple[str, float]:
    """('think' | 'plain', share of texts with ``</think>``)."""
    texts = [t for t in texts if t]
    if not texts:
        return "plain", 0.0
    share = sum("</think>" in t or "<think>" in t for t in texts) / len(texts)
    return ("think" if share >= 0.5 else "plain"), share


def split_think(text: str) -> tuple[str, str]:
    """Split a completion into (reasoning, answer_text) at ``</think>`` (``curate.traces.split``)."""
    from .traces import split

    s = split(text)
    return s.reasoning, s.answer


def trace_format(cols: list[str], cfg: Any, where: str) -> str:
    """The named fields exist; the trace format asked for (``column`` when reasoning_field is set)."""
    if cfg.trace_field not in cols:
        raise SourceError(
            f"{where}: field '{cfg.trace_field}' (trace_field) not found; columns are: {', '.join(cols[:20])}"
        )
    if cfg.teacher_field and cfg.teacher_field not in cols:
        raise SourceError(f"{where}: field '{cfg.teacher_field}' (teacher_field) not found")
    if cfg.finish_reason_field and cfg.finish_reason_field not in cols:
        raise SourceError(f"{where}: field '{cfg.finish_reason_field}' (finish_reason_field) not found")
    fmt = cfg.trace_format
    if fmt == "column" or cfg.reasoning_field:
        if not cfg.reasoning_field:
            raise SourceError(f"{where}: trace_format: column needs reasoning_field (the column with the reasoning)")
        if cfg.reasoning_field not in cols:
            raise SourceError(
                f"{where}: field '{cfg.reasoning_field}' (reasoning_field) not found; columns are: {', '.join(cols[:20])}"
            )
        if fmt not in ("auto", "column"):
            raise SourceError(f"{where}: reasoning_field is set, so trace_format must be column (got {fmt})")
        fmt = "column"
    return fmt


def format_warnings(fmt: str, found: str, share: float, trace_field: str) -> tuple[str, list[str]]:
    """The trace format to use (``auto``: the one found) and warnings where the one asked for disagrees with the data."""
    warnings: list[str] = []
    if fmt == "auto":
        fmt = found
    elif fmt == "think" and found == "plain":
        warnings.append(
            f"trace_format: think, but {100 * (1 - share):.0f}% of the traces have no <think> tags: their reasoning "
            "is empty and everything lands in answer_text; they look like plain chain of thought (trace_format: plain)"
        )
    elif fmt == "plain" and found == "think":
        warnings.append(
            f"trace_format: plain, but {100 * share:.0f}% of the traces carry <think> tags (trace_format: think)"
        )
    elif fmt == "column" and share >= 0.5:
        warnings.append(f"trace_format: column, but {100 * share:.0f}% of the '{trace_field}' values carry <think> tags")
    return fmt, warnings
