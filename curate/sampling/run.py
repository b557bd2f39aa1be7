"""Running requests through a backend: the sink that logs replies durably, counts failures and keeps
the budget (reserving ``max_tokens x n`` per request in flight)."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend, Request, as_count, as_text
from ..backends.openai_compat import OpenAITeacher
from ..backends.vllm_offline import VLLMTeacher
from ..errors import BackendError
from .config import Budget, SampleConfig
from .log import RequestLog


# --------------------------------------------------------------------------- backends
def make_backend(cfg: SampleConfig) -> Backend:
    t = cfg.teacher
    if isinstance(t, OpenAITeacher):
        from ..backends.openai_compat import OpenAIBackend

        return OpenAIBackend(t, cfg)
    if isinstance(t, VLLMTeacher):
        from ..backends.vllm_offline import VLLMBackend

        return VLLMBackend(t, cfg)
    from ..backends.transformers_local import TransformersBackend

    return TransformersBackend(t, cfg)

def normalize_payload(payload: Any, n: int) -> dict | None:
    """A payload from the log, checked and normalised (text fields as text, counts as ints or None);
    ``None`` when it cannot be used (an older version logged it, or it was damaged): the request is
    then sent again instead of failing the run on every re-run."""
    if not isinstance(payload, dict) or not isinstance(payload.get("samples"), list):
        return None
    samples = []
    try:
        for s in payload["samples"]:
            if not isinstance(s, dict):
                return None
            fr = s.get("finish_reason")
            samples.append({
                **s,
                "content": as_text(s.get("content"), "content") or "",
                "reasoning_content": as_text(s.get("reasoning_content"), "reasoning_content"),
                "finish_reason": fr if isinstance(fr, str) and fr else "stop",
                "completion_tokens": as_count(s.get("completion_tokens")),
            })
    except ValueError:
        return None
    if len(samples) < n:
        return None
    return {**payload, "samples": samples, "prompt_tokens": as_count(payload.get("prompt_tokens")),
            "completion_tokens": as_count(payload.get("completion_tokens"))}

def split_usage(total: int | None, samples: list[dict]) -> list[int | None]:
    """Per-sample completion tokens: exact when known per sample, else ``total`` split by text length."""
    if all(s.get("completion_tokens") is not None for s in samples):
        return [int(s["completion_tokens"]) for s in samples]
    if total is None:
        return [None] * len(samples)
    if len(samples) == 1:
        return [int(total)]
    lens = [len((s.get("content") or "") + (s.get("reasoning_content") or "")) or 1 for s in samples]
    out = [int(total * x / sum(lens)) for x in lens]
    out[-1] += int(total) - sum(out)
    return out

# --------------------------------------------------------------------------- the run
@dataclass
class _Run:
    log: RequestLog
    total_requests: int
    """Requests of the whole stage (logged ones included): ``max_failures`` as a fraction is of these."""
    max_failures: float
    budget: Budget | None
    progress: Any
    max_tokens: int | None = None
    """``cfg.max_tokens``: what one sample may cost at most (the budget reserves it per request)."""
    count_tokens: Any = None
    """``text -> tokens`` for responses without a usable ``usage`` (a tokenizer, or chars/4)."""
    token_method: str = "chars/4"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    new_prompt_tokens: int = 0
    new_completion_tokens: int = 0
    usage_missing: int = 0
    """Responses whose usage was absent or not a number: their tokens are estimated."""
    sent_ok: int = 0
    from_log: int = 0
    """Requests answered from the durable log (not sent)."""
    failures: dict[str, str] = field(default_factory=dict)
    payloads: dict[str, dict] = field(default_factory=dict)
    stop_reason: str | None = None
    last_error: str = ""
    reserved_prompt: int = 0
    reserved_completion: int = 0
    _largest: int = 0
    """The largest completion of one sample so far (reserved per sample when max_tokens is unset)."""
    _reservations: dict[str, tuple[int, int]] = field(default_factory=dict)
    _lock: Any = field(default_factory=threading.Lock)

    def usd(self, prompt: int | None = None, completion: int | None = None) -> float:
        b = self.budget
        if b is None:
            return 0.0
        p = self.prompt_tokens if prompt is None else prompt
        c = self.completion_tokens if completion is None else completion
        return (p * b.usd_per_million_prompt + c * b.usd_per_million_completion) / 1e6

    def _count(self, text: str) -> int:
        if self.count_tokens is not None:
            with contextlib.suppress(Exception):
                return int(self.count_tokens(text))
        return -(-len(text) // 4) if text else 0

    def add_usage(self, payload: dict, new: bool, req: Request | None = None) -> int:
        """Count a response's tokens: the server's ``usage``, else per-sample counts (logprobs), else an
        estimate (``count_tokens``) of the text, which ``usage_missing`` records."""
        samples = payload.get("samples") or []
        c = as_count(payload.get("completion_tokens"))
        p = as_count(payload.get("prompt_tokens"))
        estimated = False
        if c is None:
            per = [as_count(x.get("completion_tokens")) if isinstance(x, dict) else None for x in samples]
            if per and all(x is not None for x in per):
                c = sum(per)  # type: ignore[arg-type]
            else:
                estimated = True
                c = sum(self._count(str(x.get("reasoning_content") or "") + str(x.get("content") or ""))
                        for x in samples if isinstance(x, dict))
        if p is None:
            estimated = True
            p = self._count("".join(str(m.get("content") or "") for m in req.messages)) if req is not None else 0
        if estimated:
            self.usage_missing += 1
        self.prompt_tokens += p
        self.completion_tokens += c
        if new:
            self.new_prompt_tokens += p
            self.new_completion_tokens += c
        return c

    def _reached(self, prompt: int, completion: int) -> bool:
        b = self.budget
        if b is None:
            return False
        if b.max_completion_tokens is not None and completion >= b.max_completion_tokens:
            return True
        return b.max_usd is not None and self.usd(prompt, completion) >= b.max_usd

    def check_budget(self) -> None:
        if self.budget is not None and self.stop_reason is None and self._reached(self.prompt_tokens, self.completion_tokens):
            self.stop_reason = "budget"

    def budget_message(self) -> str:
        """The spend once everything in flight has finished (the final spend, not the spend at the stop)."""
        b = self.budget
        est = (f" ({self.usage_missing} responses without usage counted by estimate: {self.token_method})"
               if self.usage_missing else "")
        if b is not None and b.max_completion_tokens is not None and self.completion_tokens >= b.max_completion_tokens:
            return (f"budget: {self.completion_tokens} completion tokens spent{est} >= "
                    f"budget.max_completion_tokens={b.max_completion_tokens}")
        max_usd = b.max_usd if b is not None else None
        return f"budget: ${self.usd():.4f} spent{est} >= budget.max_usd={max_usd}"

    def _reservation(self, req: Request) -> tuple[int, int]:
        prompt = -(-sum(len(str(m.get("content") or "")) for m in req.messages) // 4) + 1
        per_sample = self.max_tokens
        if per_sample is None:  # no max_tokens: the largest sample seen so far (bounded only with max_tokens)
            per_sample = max(self._largest, 1024)
        return prompt, per_sample * req.n

    def admit(self, req: Request) -> bool | None:
        """Called by a backend before it sends ``req``: True = send, False = do not (stopped), None = not
        yet (ask again shortly). With a budget, a request is sent only while spent + reserved
        (``max_tokens x n`` of every request in flight) is below the budget, and then reserves its own
        maximum: the final spend exceeds the budget by at most one request's reservation, whatever the
        concurrency. While reservations alone reach the budget the answer is None: requests in flight
        usually spend less than they reserved, and their release may make room."""
        with self._lock:
            if self.stop_reason:
                return False
            if self.budget is None:
                return True
            if self._reached(self.prompt_tokens + self.reserved_prompt, self.completion_tokens + self.reserved_completion):
                if self._reservations:
                    return None  # wait for the requests in flight
                self.stop_reason = "budget"  # spent alone reaches the budget
                return False
            r = self._reservation(req)
            self._reservations[req.key] = r
            self.reserved_prompt += r[0]
            self.reserved_completion += r[1]
            return True

    def _release(self, req: Request) -> None:
        r = self._reservations.pop(req.key, None)
        if r is not None:
            self.reserved_prompt -= r[0]
            self.reserved_completion -= r[1]

    def failure_limit(self) -> int:
        m = self.max_failures
        return int(m) if m >= 1 else int(math.floor(m * self.total_requests))

    # Sink: called by backends from any thread -----------------------------
    def done(self, req: Request, payload: dict) -> None:
        norm = normalize_payload(payload, req.n)
        if norm is None:  # a reply the backend could not make sense of: a per-row failure, never a crash
            self.failed(req, "malformed response: samples without text content")
            return
        payload = norm
        with self._lock:  # usage counts at once (it is spent), so budgets stop without lag
            self._release(req)
            self.sent_ok += 1
            c = self.add_usage(payload, new=True, req=req)
            self._largest = max(self._largest, -(-c // max(1, req.n)))
            self.check_budget()
        self._queue.put(("ok", req, payload))

    def failed(self, req: Request, error: str) -> None:
        from ..yamlio import (
            mask_secrets,  # error texts become row data: nothing key-shaped rides along
        )

        error = mask_secrets(" ".join(str(error).split()))[:500]
        with self._lock:
            self._release(req)
            self.failures[req.key] = error
            self.last_error = error
            nf = len(self.failures)
            if self.stop_reason is None and (nf > self.failure_limit() or (nf >= 20 and self.sent_ok == 0)):
                self.stop_reason = "failures"
        self._queue.put(("fail", req, error))

    # the writer thread: group commit, then the response counts as done ------
    def start(self) -> "_Run":
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="curate-sample-log", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Let queued writes finish (also on Ctrl-C), then stop the writer; re-raise a write error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise BackendError(f"{self.log.path}: cannot write the sampling log ({self._error})") from None

    def _write_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < 1024:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            end = batch[-1] is None
            items = [b for b in batch if b is not None]
            try:
                ok = [(req.key, payload) for kind, req, payload in items if kind == "ok"]
                if ok:
                    self.log.put_many(ok)  # durable before it counts as done
                for kind, req, x in items:
                    if kind == "ok":
                        self.payloads[req.key] = x
                    else:
                        with contextlib.suppress(Exception):
                            self.log.put_failure(req.key, x)
                    self.progress.advance(req.n)
            except BaseException as e:  # pragma: no cover - disk full, permissions
                self._error = e
                self.stop_reason = self.stop_reason or "log"
            if end:
                return

def _token_counter(cfg: SampleConfig) -> tuple[Any, str]:
    """How tokens are counted for a response without a usable ``usage``: the teacher's tokenizer when
    ``teacher.tokenizer`` is set (loaded on first use), else the declared estimate of 4 characters per
    token. Which one was used is written to the stats (``token_count``)."""
    name = getattr(cfg.teacher, "tokenizer", None)
    if not name:
        return None, "chars/4"
    state: dict[str, Any] = {}

    def count(text: str) -> int:
        if "tok" not in state:
            try:
                from transformers import AutoTokenizer

                state["tok"] = AutoTokenizer.from_pretrained(name)
            except Exception:  # no transformers / cannot load: the declared estimate
                state["tok"] = None
        tok = state["tok"]
        if tok is None:
            return -(-len(text) // 4) if text else 0
        return len(tok.encode(text, add_special_tokens=False))

    return count, f"tokenizer {name} (chars/4 if it cannot load)"
