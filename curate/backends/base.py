"""The backend seam: what every teacher backend gets (``Request``) and reports to (``Sink``), the
``Backend`` protocol, and the helpers that turn a server's loosely typed reply into text and counts.

A backend module owns its teacher config (``OpenAITeacher`` in openai_compat.py, ``VLLMTeacher`` in
vllm_offline.py, ``TransformersTeacher`` in transformers_local.py) and imports nothing of
``curate.sampling`` at run time: sampling plans requests, keeps the durable log and assembles rows;
backends only turn requests into payloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of the sampling configs: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Request:
    key: str
    """The request hash (the durable log's key)."""
    pos: int
    """Row position of the problem in the input frame."""
    sample_index: int
    """Index of the first sample this request produces."""
    n: int
    messages: list[dict]
    seed: int | None


class Sink(Protocol):
    stop_reason: str | None

    def done(self, req: Request, payload: dict) -> None: ...
    def failed(self, req: Request, error: str) -> None: ...


class Backend(Protocol):
    teacher: str
    tokenizer: str | None

    def run(self, requests: list[Request], sink: Sink) -> None:
        """Send ``requests``; call ``sink.done(req, payload)`` / ``sink.failed(req, text)`` for each one,
        and stop starting new work once ``sink.stop_reason`` is set.

        ``payload = {"samples": [{content, reasoning_content, finish_reason, completion_tokens,
        token_ids?, topk_ids?, topk_logprobs?, topk_tokens?}, ...] (req.n of them),
        "prompt_tokens": int | None, "completion_tokens": int | None}``.
        """
        ...


def as_text(v: Any, what: str) -> str | None:
    """A message's ``content`` / ``reasoning_content`` as text. Some OpenAI-compatible providers send a
    list of parts (``[{"type": "text", "text": ...}, ...]``): the text parts are joined, other parts
    (images, refusals) are skipped. Anything else is not text: ``ValueError`` (a per-row failure)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, list):
        out = []
        for part in v:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif isinstance(part, dict) and part.get("text") is None:
                continue  # a non-text part
            else:
                raise ValueError(f"{what}: a part of type {type(part).__name__} is not text")
        return "".join(out)
    raise ValueError(f"{what} is a {type(v).__name__}, not text")


def as_count(v: Any) -> int | None:
    """A token count from a server's ``usage`` (``None`` when absent or not a count, e.g. ``"n/a"``)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v >= 0 else None
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None
