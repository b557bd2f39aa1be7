"""The ``<think>`` trace format, in one place: split a completion, join reasoning and answer, prefill.

A reasoning trace is ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. Reading it:

* ``reasoning_content`` from the server wins (DeepSeek-R1 style APIs, ``vllm serve --reasoning-parser``);
  a ``</think>`` in the content as well keeps only what follows it as the answer.
* ``</think>`` present: reasoning is what precedes it (after an optional ``<think>``: chat templates
  may prefill the opening tag in the prompt), the answer what follows. Status ``ok``.
* only ``<think>``: an opened, unclosed block is all reasoning (a truncated trace), the answer empty.
  Status ``unclosed``.
* no tags: no reasoning, all answer. Status ``missing`` (plain chain of thought has no tags).

``split`` works on one string, ``split_exprs`` is the same rule as polars expressions (column-wise, for
millions of rows); a test holds them equal. ``join`` writes the format, ``with_prefill`` restores an
opening tag that the chat template put in the prompt.
"""

from __future__ import annotations

from typing import NamedTuple

OPEN = "<think>"
CLOSE = "</think>"


class Split(NamedTuple):
    reasoning: str
    answer: str
    status: str  # ok | unclosed | missing

    @property
    def closed(self) -> bool:
        return self.status != "unclosed"


def split(content: str | None, reasoning_content: str | None = None) -> Split:
    """(reasoning, answer, status) of one completion (see the module doc)."""
    text = content or ""
    if reasoning_content:
        ans = text.split(CLOSE, 1)[1] if CLOSE in text else text
        return Split(reasoning_content.strip(), ans.strip(), "ok")
    close = text.find(CLOSE)
    if close >= 0:
        head, tail = text[:close], text[close + len(CLOSE):]
        open_at = head.find(OPEN)
        if open_at >= 0:
            head = head[open_at + len(OPEN):]
        return Split(head.strip(), tail.strip(), "ok")
    open_at = text.find(OPEN)
    if open_at >= 0:
        return Split(text[open_at + len(OPEN):].strip(), "", "unclosed")
    return Split("", text.strip(), "missing")


def split_exprs(col):  # -> dict[str, pl.Expr]
    """``split`` as polars expressions over a string column: reasoning, answer_text, think_status."""
    import polars as pl

    text = col.fill_null("")
    has_close = text.str.contains(CLOSE, literal=True)
    has_open = text.str.contains(OPEN, literal=True)
    before = text.str.extract(r"(?s)^(.*?)</think>", 1)
    after_close = text.str.extract(r"(?s)</think>(.*)$", 1)
    after_open = text.str.extract(r"(?s)<think>(.*)$", 1)
    head = pl.when(before.str.contains(OPEN, literal=True)).then(before.str.extract(r"(?s)<think>(.*)$", 1)).otherwise(before)
    return {
        "reasoning": pl.when(has_close).then(head.str.strip_chars())
        .when(has_open).then(after_open.str.strip_chars()).otherwise(pl.lit("")),
        "answer_text": pl.when(has_close).then(after_close.str.strip_chars())
        .when(has_open).then(pl.lit("")).otherwise(text.str.strip_chars()),
        "think_status": pl.when(has_close).then(pl.lit("ok")).when(has_open).then(pl.lit("unclosed"))
        .otherwise(pl.lit("missing")),
    }


def join(reasoning: str | None, answer: str | None) -> str:
    """The assistant content of a trace; without reasoning, the answer alone."""
    r, a = (reasoning or "").strip(), (answer or "").strip()
    return f"{OPEN}\n{r}\n{CLOSE}\n\n{a}" if r else a


def reasoning_of(content: str | None) -> str:
    """The reasoning inside a closed think block of ``content`` ('' when there is none)."""
    s = split(content)
    return s.reasoning if s.status == "ok" else ""


def ends_inside_think(text: str | None) -> bool:
    """The text ends inside an unclosed think block (e.g. a generation prompt that prefills ``<think>\\n``)."""
    t = text or ""
    return t.rfind(OPEN) > t.rfind(CLOSE)


def prompt_prefills_think(prompt_text: str | None) -> bool:
    """Whether a rendered generation prompt already opened the think block (R1-distill / QwQ templates)."""
    return bool(prompt_text) and prompt_text.rstrip().endswith(OPEN)


def with_prefill(prompt_text: str | None, content: str) -> str:
    """Local backends see the rendered prompt: when the chat template prefilled ``<think>`` the output
    starts inside the think block, so restore the opening tag (a truncated trace is then all reasoning)."""
    if prompt_prefills_think(prompt_text) and not content.lstrip().startswith(OPEN):
        return OPEN + content
    return content
