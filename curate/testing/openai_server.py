"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks (aiohttp, asyncio).

Not a mock of the client: it listens on a real loopback port, speaks HTTP/1.1 with keep-alive, and
answers ``POST /v1/chat/completions`` and ``GET /v1/models`` the way OpenAI / ``vllm serve`` do, so the
official ``openai`` client, curator, or plain ``curl`` can talk to it. Needs ``aiohttp`` (the ``dev``
extra: ``pip install 'curate[dev]'``).

Quick use (pytest)::

    from curate.testing.openai_server import OpenAIServer, Reply, Fault, first_attempts

    def script(messages, params, index):          # -> Reply | str | dict | Fault
        q = messages[-1]["content"]
        return Reply(content="\\\\boxed{4}", reasoning_content="2+2=4") if "2+2" in q else "no idea"

    with OpenAIServer(script=script, latency=0.0) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")
        ...
        assert srv.count() == 3                   # requests received (all statuses)
        log = srv.requests()                      # list[RequestRecord], thread-safe snapshot

``start()`` / ``stop()`` do the same as the context manager (the server runs its own event loop on a
daemon thread, so it works from sync and async tests alike).

Arguments of ``OpenAIServer``
  ``script(messages, params, index)``
      Called once per choice. ``messages`` is the request's list of ``{role, content}``, ``params``
      the whole JSON body (model, n, seed, temperature, max_tokens, ...), ``index`` the *sample
      index*: the request header ``X-Curate-Sample-Index`` (sent by ``curate.sampling``; default 0)
      plus the choice index inside the request, so native ``n`` and fan-out see the same indices.
      Returns a ``Reply`` (content, reasoning_content, finish_reason, token counts), a plain ``str``
      (the content), a ``dict`` of ``Reply`` fields, or a ``Fault`` to fail the whole request.
      Default: a deterministic ``<think>`` trace ending in ``\\boxed{<index>}``.
  ``latency``  fixed seconds every request waits before it is answered (benchmarks use 0.2).
  ``faults``   fault schedule: ``{seq: Fault}`` (seq = 0-based arrival number over all requests), or
      a callable ``(seq, body, headers) -> Fault | None``. ``first_attempts(fault, times=1)`` builds
      one that fails the first ``times`` attempts of every distinct request body (a retry then works).
  ``model``    the id listed by ``/v1/models`` (any model name is accepted by chat/completions).
  ``port``     0 (default) picks a free port; ``srv.port`` / ``srv.base_url`` tell which.

``Fault`` kinds: ``Fault.rate_limit(retry_after=1.0)`` (429 + ``Retry-After``), ``Fault.error(500)``,
``Fault.delay(seconds)`` (answers normally but only after ``seconds``: past a client timeout),
``Fault.malformed()`` (200 with truncated JSON), ``Fault.disconnect()`` (drops the connection),
``Fault.body(obj)`` (200 with any JSON body). ``fault_mix(rate, sticky=...)`` builds an adversarial
schedule mixing all of them at random (seeded), with a fraction of requests failing on every attempt.

Behaviour
  * ``n`` choices per request; ``usage`` = whitespace-token counts (prompt: all message contents;
    completion: reasoning + content over all choices) unless the ``Reply`` sets them.
  * ``max_tokens`` / ``max_completion_tokens``: a longer reply is cut and gets ``finish_reason: length``
    (a ``Reply`` may also set ``finish_reason="length"`` itself).
  * ``reasoning_content`` is returned on the message when the reply has one (DeepSeek / vLLM
    ``--reasoning-parser`` style), else the content is returned as is (``<think>`` inline).
  * ``logprobs: true`` + ``top_logprobs: k``: ``choices[i].logprobs.content`` lists every completion
    token with ``token``, ``logprob``, ``bytes`` and ``top_logprobs`` (the chosen token first).
    With ``return_tokens_as_token_ids: true`` (vLLM extension) tokens read ``"token_id:<id>"``.
    Tokens are whitespace-attached words (``re.findall(r"\\s*\\S+|\\s+")``), ids a stable hash.
  * ``stream: true`` is refused with 400 (not implemented).
  * Every request is logged (``RequestRecord``: seq, arrival time, body, selected headers incl.
    ``X-Curate-Request-Hash`` and ``X-Curate-Sample-Index``, status, fault kind, whether the full
    response was written). ``srv.max_in_flight`` is the peak number of concurrent requests.

Subprocess mode (benchmarks, where the client must not share the GIL with the server)::

    python -m curate.testing.openai_server --latency 0.2 [--port 0]
    # prints "READY http://127.0.0.1:PORT/v1" and serves until stdin closes or SIGTERM;
    # GET /_stats -> {"requests": ..., "ok": ..., "max_in_flight": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
import uuid
from typing import Any

# re-exported: tests and benchmarks import these from here
from .openai_script import (  # noqa: F401
    _LOGGED_HEADERS,
    _TOKEN_RE,
    Fault,
    FaultSchedule,
    Reply,
    RequestRecord,
    Script,
    ScriptResult,
    _as_reply,
    _fake_logprob,
    _logprobs_for,
    default_script,
    fault_mix,
    first_attempts,
    token_id,
    tokenize,
)

try:
    from aiohttp import web
except ImportError:  # pragma: no cover - depends on the environment
    web = None  # type: ignore[assignment]

__all__ = [
    "Fault",
    "OpenAIServer",
    "Reply",
    "RequestRecord",
    "default_script",
    "first_attempts",
    "tokenize",
    "token_id",
]

class OpenAIServer:
    """See the module docstring."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency: float = 0.0,
        faults: FaultSchedule = None,
        model: str = "test-model",
        port: int = 0,
        host: str = "127.0.0.1",
    ):
        if web is None:  # pragma: no cover
            raise RuntimeError("curate.testing.openai_server needs aiohttp: pip install 'curate[dev]'")
        self.script: Script = script or default_script
        self.latency = float(latency)
        self.faults = faults
        self.model = model
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "OpenAIServer":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve_thread, name="openai-test-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
        try:
            fut.result(10)
        except Exception:  # pragma: no cover - best effort on shutdown
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def _serve_thread(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as e:  # pragma: no cover - reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_site(self) -> None:
        app = self.make_app()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._want_port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, backlog=2048)
        await site.start()

    def make_app(self) -> "web.Application":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_stats", self._stats)
        return app

    # ----------------------------------------------------------------- log
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log (arrival order)."""
        with self._lock:
            return list(self._log)

    def count(self, *, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._log if status is None or r.status == status)

    def completed(self) -> list[RequestRecord]:
        """Requests that got a full 200 response with choices."""
        with self._lock:
            return [r for r in self._log if r.completed]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self.max_in_flight = 0

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": len(self._log),
                "ok": sum(1 for r in self._log if r.completed),
                "max_in_flight": self.max_in_flight,
            }

    # ----------------------------------------------------------------- handlers
    async def _models(self, request: "web.Request") -> "web.Response":
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "curate-test"}]}
        )

    async def _stats(self, request: "web.Request") -> "web.Response":
        return web.json_response(self.stats())

    def _pick_fault(self, seq: int, body: dict, headers: dict) -> Fault | None:
        f = self.faults
        if f is None:
            return None
        if callable(f):
            return f(seq, body, headers)
        return f.get(seq)

    async def _chat(self, request: "web.Request") -> "web.StreamResponse":
        raw = await request.read()
        headers = {k: request.headers[k] for k in _LOGGED_HEADERS if k in request.headers}
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as e:
            return web.json_response({"error": {"message": f"invalid JSON body: {e}", "type": "invalid_request_error"}}, status=400)
        with self._lock:
            rec = RequestRecord(seq=len(self._log), t=time.time(), path=request.path, body=body, headers=headers)
            self._log.append(rec)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request, rec)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(self, request: "web.Request", rec: RequestRecord) -> "web.StreamResponse":
        body, headers = rec.body, rec.headers
        fault = self._pick_fault(rec.seq, body, headers)
        if body.get("stream"):
            rec.status = 400
            return web.json_response({"error": {"message": "stream=true is not supported by the test server"}}, status=400)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            rec.status = 400
            return web.json_response({"error": {"message": "messages must be a non-empty list", "type": "invalid_request_error"}}, status=400)
        n = int(body.get("n") or 1)
        base_index = rec.sample_index
        replies = []
        if fault is None:
            for i in range(n):
                r = _as_reply(self.script(messages, body, base_index + i))
                if isinstance(r, Fault):
                    fault = r
                    break
                replies.append(r)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if fault is not None:
            rec.fault = fault.kind
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
                if not replies:
                    replies = [_as_reply(self.script(messages, body, base_index + i)) for i in range(n)]
            elif fault.kind == "disconnect":
                rec.status = 0
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError()
            elif fault.kind == "body":
                rec.status = 200
                return web.json_response(fault.payload)
            elif fault.kind == "malformed":
                rec.status = 200
                return web.Response(text='{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind',
                                    content_type="application/json")
            else:
                rec.status = fault.status
                hdrs = {}
                if fault.retry_after is not None:
                    hdrs["Retry-After"] = f"{fault.retry_after:g}"
                etype = "rate_limit_exceeded" if fault.status == 429 else "server_error"
                return web.json_response({"error": {"message": fault.message, "type": etype, "code": etype}},
                                         status=fault.status, headers=hdrs)
        payload = self._completion(body, messages, replies)
        rec.status = 200
        resp = web.json_response(payload)
        await resp.prepare(request)
        await resp.write_eof()
        rec.completed = True
        return resp

    def _completion(self, body: dict, messages: list, replies: list[Reply]) -> dict:
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        want_lp = bool(body.get("logprobs"))
        k = int(body.get("top_logprobs") or 0)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        prompt_tokens = sum(len(tokenize(m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content")))) for m in messages)
        if replies and replies[0].prompt_tokens is not None:
            prompt_tokens = replies[0].prompt_tokens
        choices, completion_tokens = [], 0
        for i, r in enumerate(replies):
            rtoks = tokenize(r.reasoning_content or "")
            ctoks = tokenize(r.content)
            finish = r.finish_reason
            if max_tokens is not None and len(rtoks) + len(ctoks) > int(max_tokens):
                m = int(max_tokens)
                rtoks, ctoks = rtoks[:m], ctoks[: max(0, m - len(rtoks))]
                finish = "length"
            ntok = r.completion_tokens if r.completion_tokens is not None else len(rtoks) + len(ctoks)
            completion_tokens += ntok
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(ctoks), "refusal": None}
            if r.reasoning_content is not None:
                msg["reasoning_content"] = "".join(rtoks)
            if r.message:
                msg.update(r.message)
            choices.append(
                {
                    "index": i,
                    "message": msg,
                    "logprobs": _logprobs_for(ctoks, k, as_ids) if want_lp else None,
                    "finish_reason": finish,
                }
            )
        out = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if replies and replies[0].usage:
            out["usage"].update(replies[0].usage)
        if replies and replies[0].no_usage:
            del out["usage"]
        return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Loopback OpenAI-compatible test server (default script).")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="test-model")
    a = ap.parse_args(argv)
    srv = OpenAIServer(latency=a.latency, port=a.port, model=a.model).start()
    print(f"READY {srv.base_url}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or kills us)
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        srv.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
