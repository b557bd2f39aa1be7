"""Replies, faults and fault schedules of the loopback OpenAI server (``curate.testing.openai_server``),
and the deterministic tokens and log-probs it answers with. Import them from ``openai_server``."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[str]:
    """The server's toy tokenizer: words with their leading whitespace (joins back to ``text``)."""
    return _TOKEN_RE.findall(text or "")


def token_id(tok: str) -> int:
    """A stable id for a toy token (FNV-1a, 17 bits, offset past the 'special' range)."""
    h = 0x811C9DC5
    for b in tok.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return 1000 + (h % 131072)


@dataclass
class Reply:
    """One scripted choice."""

    content: str = ""
    reasoning_content: str | None = None
    finish_reason: str = "stop"
    completion_tokens: int | None = None
    """Override the completion token count for this choice (default: toy token count)."""
    prompt_tokens: int | None = None
    """Override the request's prompt token count (taken from the first choice)."""
    message: dict | None = None
    """Raw fields merged over the choice's ``message`` as is (e.g. ``{"content": [{"type": "text", ...}]}``:
    content as a list of parts, as some providers send it)."""
    usage: dict | None = None
    """Raw fields merged over the response's ``usage`` (taken from the first choice; ``{}`` with
    ``no_usage=True`` drops it): e.g. ``{"completion_tokens": "n/a"}``."""
    no_usage: bool = False
    """Answer without a ``usage`` object (some servers do)."""


@dataclass
class Fault:
    """A failure to inject for one request."""

    kind: str  # rate_limit | error | delay | malformed | disconnect
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = "injected fault"
    payload: Any = None
    """The JSON body of a ``body`` fault."""

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> "Fault":
        return cls("rate_limit", status=429, retry_after=retry_after, message="rate limited")

    @classmethod
    def error(cls, status: int = 500, message: str = "internal server error") -> "Fault":
        return cls("error", status=status, message=message)

    @classmethod
    def delay(cls, seconds: float) -> "Fault":
        return cls("delay", status=200, seconds=seconds)

    @classmethod
    def malformed(cls) -> "Fault":
        return cls("malformed", status=200)

    @classmethod
    def disconnect(cls) -> "Fault":
        return cls("disconnect", status=0)

    @classmethod
    def body(cls, obj: Any) -> "Fault":
        """200 with ``obj`` as the JSON body, as is (no choices, choices without text, ...)."""
        return cls("body", status=200, payload=obj)


MALFORMED_BODIES: list[Any] = [
    {"id": "x", "object": "chat.completion"},                                      # no choices
    {"choices": []},                                                               # empty choices
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": {"a": 1}}, "finish_reason": "stop"}]},
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": [1, 2]}, "finish_reason": "stop"}]},
    ["not", "an", "object"],
    "just a string",
]
"""Bodies a broken proxy or provider has been seen to answer 200 with (``Fault.body``)."""


def fault_mix(
    rate: float,
    *,
    seed: int = 0,
    kinds: Mapping[str, float] | None = None,
    sticky: float = 0.0,
    retry_after: float = 0.05,
    slow_seconds: float = 0.05,
) -> Callable[[int, dict, dict], "Fault | None"]:
    """An adversarial fault schedule: each attempt fails with probability ``rate``, the kind drawn from
    ``kinds`` (weights; default: an even mix of ``rate_limit`` (429 + ``Retry-After: retry_after``),
    ``error`` (500/502/503), ``disconnect`` (connection reset), ``slow`` (answers after
    ``slow_seconds``: a success, late), ``malformed`` (truncated JSON) and ``body`` (a
    :data:`MALFORMED_BODIES` entry)). A fraction ``sticky`` of the distinct requests fails on every
    attempt (500), as a poisoned prompt does. Deterministic for a seed and arrival order; the schedule
    counts what it injected in ``schedule.injected`` (kind -> count) and the sticky request keys in
    ``schedule.sticky_keys``."""
    import random as _random

    weights = dict(kinds or {"rate_limit": 1, "error": 1, "disconnect": 1, "slow": 1, "malformed": 1, "body": 1})
    names, w = list(weights), list(weights.values())
    rng = _random.Random(seed)
    lock = threading.Lock()
    injected: dict[str, int] = {}
    sticky_keys: set[str] = set()
    decided: dict[str, bool] = {}

    def schedule(seq: int, body: dict, headers: dict) -> "Fault | None":
        key = str(headers.get("x-curate-request-hash") or json.dumps(body, sort_keys=True))
        with lock:
            if key not in decided:
                decided[key] = rng.random() < sticky
                if decided[key]:
                    sticky_keys.add(key)
            if decided[key]:
                injected["sticky"] = injected.get("sticky", 0) + 1
                return Fault.error(500, "sticky failure")
            if rng.random() >= rate:
                return None
            kind = rng.choices(names, w)[0]
            injected[kind] = injected.get(kind, 0) + 1
            if kind == "rate_limit":
                return Fault.rate_limit(retry_after)
            if kind == "error":
                return Fault.error(rng.choice([500, 502, 503]))
            if kind == "disconnect":
                return Fault.disconnect()
            if kind == "slow":
                return Fault.delay(slow_seconds)
            if kind == "malformed":
                return Fault.malformed()
            return Fault.body(rng.choice(MALFORMED_BODIES))

    schedule.injected = injected  # type: ignore[attr-defined]
    schedule.sticky_keys = sticky_keys  # type: ignore[attr-defined]
    return schedule


@dataclass
class RequestRecord:
    seq: int
    t: float
    path: str
    body: dict
    headers: dict
    status: int | None = None
    fault: str | None = None
    completed: bool = False
    """True once a full 200 response with choices was written to the socket."""

    @property
    def request_hash(self) -> str | None:
        return self.headers.get("x-curate-request-hash")

    @property
    def sample_index(self) -> int:
        return int(self.headers.get("x-curate-sample-index") or 0)


ScriptResult = Union[Reply, str, Mapping[str, Any], Fault]
Script = Callable[[list, dict, int], ScriptResult]
FaultSchedule = Union[Mapping[int, Fault], Callable[[int, dict, dict], Union[Fault, None]], None]

_LOGGED_HEADERS = ("x-curate-request-hash", "x-curate-sample-index", "user-agent", "idempotency-key")


def default_script(messages: list, params: dict, index: int) -> Reply:
    """A deterministic trace: inline ``<think>`` reasoning, then ``\\boxed{index}``."""
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "") or ""
    words = " ".join(str(last).split()[:8])
    return Reply(content=f"<think>\nLet me work on: {words}. Sample {index}.\n</think>\n\nThe answer is \\boxed{{{index}}}.")


def first_attempts(fault: Fault, times: int = 1) -> Callable[[int, dict, dict], Fault | None]:
    """A fault schedule failing the first ``times`` attempts of every distinct request body."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def schedule(seq: int, body: dict, headers: dict) -> Fault | None:
        key = json.dumps(body, sort_keys=True) + "|" + str(headers.get("x-curate-sample-index", ""))
        with lock:
            k = seen.get(key, 0)
            seen[key] = k + 1
        return fault if k < times else None

    return schedule


def _as_reply(r: Any) -> Reply | Fault:
    if isinstance(r, (Reply, Fault)):
        return r
    if isinstance(r, str):
        return Reply(content=r)
    if isinstance(r, Mapping):
        return Reply(**dict(r))
    raise TypeError(f"script must return Reply | str | dict | Fault, got {type(r).__name__}")


def _fake_logprob(tok: str, rank: int) -> float:
    base = -((token_id(tok) % 997) / 997.0) * 0.5
    return round(base - 1.5 * rank, 6)


def _logprobs_for(tokens: list[str], k: int, as_ids: bool) -> dict:
    def name(t: str, tid: int) -> str:
        return f"token_id:{tid}" if as_ids else t

    content = []
    for tok in tokens:
        tid = token_id(tok)
        top = [{"token": name(tok, tid), "logprob": _fake_logprob(tok, 0), "bytes": list(tok.encode())}]
        for r in range(1, k):
            alt = f"{tok}#{r}"
            aid = token_id(alt)
            top.append({"token": name(alt, aid), "logprob": _fake_logprob(tok, r), "bytes": list(alt.encode())})
        content.append({**top[0], "top_logprobs": top[:k] if k > 0 else []})
    return {"content": content, "refusal": None}
