"""``backend: openai``: any OpenAI-compatible chat endpoint over one ``aiohttp`` session.

* One HTTP client path: ``POST {base_url}/chat/completions`` with a JSON body over an ``aiohttp``
  session (``concurrency`` connections kept alive; proxies from ``HTTP(S)_PROXY`` / ``NO_PROXY``; the
  system CA store, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, and on macOS / Windows the OS trust
  store through ``truststore`` when installed). The reply is read as a plain dict, so vendor fields
  such as ``reasoning_content`` survive. The official ``openai`` SDK is not used here: it spends about
  0.8 ms of CPU per request building request/response objects (httpx2 URLs, headers, options models)
  against 0.2 ms for the same request over aiohttp (measured on 2 cores), which caps one process near
  1,000 requests/s; returning a raw response does not help, the cost is in building the request
  (``benchmarks/sampling.py`` drives the SDK side by side). ``teacher.client`` (``openai`` /
  ``aiohttp``) chose between the two; it is gone, and a recipe that still sets it gets a one-line error.
* Retries: tenacity, exponential backoff with jitter, at least the server's ``Retry-After`` (or
  ``retry-after-ms``), on 429 / 408 / 409 / 5xx / timeouts / connection errors / malformed bodies.
  Other 4xx fail at once (a per-row failure).
* ``concurrency`` worker tasks; ``rpm`` / ``tpm`` limits with ``aiolimiter``.
* Logprobs: ``logprobs: k`` -> ``logprobs=true, top_logprobs=k``; with ``token_ids: true``
  (vLLM servers) ``return_tokens_as_token_ids`` makes tokens read ``token_id:<id>`` -> exact ids, and
  ``top_logprobs=k+1``: vLLM's list starts with the sampled token and is cut at the requested count,
  so a sampled token outside the top-k would push out the k-th. Each step's list is sorted by logprob
  and cut at k (``vllm serve --max-logprobs`` must allow k + 1; its default 20 allows k <= 19).
* The API key is read from the environment variable named by ``api_key_env`` and lives only in the
  session's default headers: it never enters the request hash, the log, a row or a message.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import sys
import threading
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from ..errors import BackendError
from .base import Request, Sink, Strict, as_count, as_text

if TYPE_CHECKING:
    from ..sampling import SampleConfig

_OPENAI_URL = "https://api.openai.com/v1"

class OpenAITeacher(Strict):
    """Any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, ``vllm serve``, SGLang, ...)."""

    backend: Literal["openai"] = "openai"
    model: str
    base_url: str | None = None
    """Default: ``$<base_url_env>`` (``OPENAI_BASE_URL``), else the OpenAI API."""
    base_url_env: str = "OPENAI_BASE_URL"
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (keys never go in a recipe). Unset with a
    ``base_url`` (a local server): the key ``EMPTY`` is sent."""
    concurrency: int = Field(64, ge=1, le=8192)
    client: SkipJsonSchema[None] = Field(None, exclude=True)
    """Removed (there is one HTTP client); kept only to say so when a recipe still sets it."""
    rpm: float | None = Field(None, gt=0)
    """Requests-per-minute limit (aiolimiter)."""
    tpm: float | None = Field(None, gt=0)
    """Tokens-per-minute limit; each request reserves its estimated prompt + ``max_tokens * n``."""
    timeout: float = Field(600.0, gt=0)
    """Per-request timeout in seconds."""
    max_retries: int = Field(6, ge=0)
    """Retries on 429 / 5xx / 408 / timeouts / connection errors / malformed bodies."""
    backoff_initial: float = Field(1.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)
    native_n: bool = True
    """Ask for ``n`` choices in one request; false = fan out ``n`` requests with ``n=1``."""
    token_ids: bool = False
    """Send ``return_tokens_as_token_ids`` (vLLM servers) so logprob tokens carry exact ids."""
    @field_validator("client", mode="before")
    @classmethod
    def _client_removed(cls, v: Any) -> None:
        raise ValueError(f"removed: curate now has one HTTP client (aiohttp), so '{v}' chooses nothing; "
                         "delete this key")

    @field_validator("api_key_env", "base_url_env")
    @classmethod
    def _env_name(cls, v: str, info: Any) -> str:
        from ..yamlio import check_env_name

        return check_env_name(v, info.field_name)

    tokenizer: str | None = None
    """The teacher's tokenizer (a local path or hub id, loaded with ``transformers.AutoTokenizer``) when
    logprobs are kept: the ``tokenizer`` column then reads ``<model>@<vocabulary hash>``, which offline KD
    checks against the student. Unset: ``<model>@`` (no hash; training then needs ``kd.check_tokenizer: false``)."""


_MAX_RETRY_AFTER = 300.0


class MalformedResponse(Exception):
    """The server answered 200 with a body that is not a chat completion."""


class APIStatusError(Exception):
    """A non-2xx answer: its status, headers (``Retry-After``) and the server's error message."""

    def __init__(self, status_code: int, headers: Any, message: str):
        super().__init__(f"Error code: {status_code} - {message}")
        self.status_code = status_code
        self.headers = headers


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        s = exc.status_code
        return s in (408, 409, 429) or s >= 500
    # malformed bodies; connection, payload and timeout errors (aiohttp's timeouts are asyncio's)
    return isinstance(exc, (MalformedResponse, aiohttp.ClientError, asyncio.TimeoutError))


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header on an API error, if any."""
    h = getattr(exc, "headers", None)
    if h is None:
        return None
    try:
        if h.get("retry-after-ms"):
            return float(h["retry-after-ms"]) / 1000.0
        if h.get("retry-after"):
            return float(h["retry-after"])
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to our backoff
    return None


def describe(exc: BaseException) -> str:
    s = _status(exc)
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, asyncio.TimeoutError):
        msg = msg or "request timed out"
    name = type(exc).__name__
    return f"{name} (HTTP {s}): {msg}" if s else f"{name}: {msg}"


class _Wait:
    """Exponential backoff with equal jitter (half fixed, half random), capped, and never shorter than
    the server's ``Retry-After``. ``offset`` counts attempts made before tenacity took over."""

    def __init__(self, initial: float, cap: float, offset: int = 0):
        self.initial, self.cap, self.offset = initial, cap, offset

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        exp = min(self.cap, self.initial * (2 ** (attempt - 1)))
        wait = exp / 2 + random.uniform(0, exp / 2)
        ra = retry_after(exc)
        if ra is not None:
            wait = max(wait, min(ra, _MAX_RETRY_AFTER))
        return wait

    def __call__(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number + self.offset, exc)


def parse_logprobs(lp: Any, k: int) -> dict:
    """OpenAI ``choices[i].logprobs`` -> token_ids / topk_ids / topk_logprobs (or topk_tokens)."""
    content = (lp or {}).get("content") or []
    ids: list[int] = []
    top_ids: list[list[int]] = []
    top_lps: list[list[float]] = []
    top_toks: list[list[str]] = []
    exact = True

    def tid(tok: str) -> int | None:
        if isinstance(tok, str) and tok.startswith("token_id:"):
            try:
                return int(tok[9:])
            except ValueError:
                return None
        return None

    for entry in content:
        i = tid(entry.get("token"))
        exact = exact and i is not None
        ids.append(i if i is not None else -1)
        # by logprob, then cut at k: vLLM lists the sampled token first and cuts at the requested count,
        # so a sampled token outside the top-k displaces the k-th (the request asks vLLM for k + 1)
        tops = sorted(entry.get("top_logprobs") or [], key=lambda t: -float(t.get("logprob")))[:k] if k else []
        row_ids = [tid(t.get("token")) for t in tops]
        exact = exact and all(x is not None for x in row_ids)
        top_ids.append([x if x is not None else -1 for x in row_ids])
        top_lps.append([float(t.get("logprob")) for t in tops])
        top_toks.append([str(t.get("token")) for t in tops])
    if exact:
        return {"token_ids": ids, "topk_ids": top_ids, "topk_logprobs": top_lps}
    return {"token_ids": None, "topk_ids": None, "topk_logprobs": top_lps, "topk_tokens": top_toks}


def parse_completion(body: Any, n: int, k: int | None) -> dict:
    """A chat.completions JSON body -> the sampling payload (see ``curate.sampling.Backend``)."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise MalformedResponse(f"response has no choices: {str(body)[:200]}")
    choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
    if len(choices) < n:
        raise MalformedResponse(f"asked for n={n}, got {len(choices)} choices")
    samples = []
    for ch in choices[:n]:
        msg = ch.get("message") or {}
        try:  # content as a list of parts (some providers) is joined; anything else is malformed
            content = as_text(msg.get("content"), "message.content") or ""
            reasoning = as_text(msg.get("reasoning_content") or msg.get("reasoning"), "message.reasoning_content")
        except ValueError as e:
            raise MalformedResponse(str(e)) from None
        fr = ch.get("finish_reason")
        s: dict[str, Any] = {
            "content": content,
            "reasoning_content": reasoning or None,
            "finish_reason": fr if isinstance(fr, str) and fr else "stop",
            "completion_tokens": None,
        }
        if k is not None:
            s.update(parse_logprobs(ch.get("logprobs"), k))
            if s.get("token_ids") is not None or s.get("topk_tokens"):
                s["completion_tokens"] = len(s["topk_logprobs"])
        samples.append(s)
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    completion = as_count(usage.get("completion_tokens"))  # "n/a" and the like: unknown (estimated later)
    if n == 1 and completion is not None:
        samples[0]["completion_tokens"] = completion
    return {"samples": samples, "prompt_tokens": as_count(usage.get("prompt_tokens")), "completion_tokens": completion}


def _ssl_context() -> ssl.SSLContext | bool:
    """``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set; on macOS / Windows the OS trust store (``truststore``,
    when installed: python.org builds there ship without CA certificates); else the system store."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None,
                                          capath=os.environ.get("SSL_CERT_DIR") or None)
    if sys.platform in ("darwin", "win32"):
        try:
            import truststore
        except ImportError:
            return True
        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True  # aiohttp's default context: the system store


def _env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from ``HTTP_PROXY`` / ``HTTPS_PROXY`` (``NO_PROXY`` honoured), as httpx and
    requests do; ``None`` without one."""
    import urllib.parse
    import urllib.request

    u = urllib.parse.urlsplit(url)
    if u.hostname and urllib.request.proxy_bypass(u.hostname):
        return None
    return urllib.request.getproxies().get(u.scheme) or None


def resolve_endpoint(t: OpenAITeacher) -> tuple[str | None, str]:
    base_url = t.base_url or os.environ.get(t.base_url_env) or None
    key = os.environ.get(t.api_key_env)
    if not key:
        if base_url is None:
            raise BackendError(
                f"teacher.api_key_env: the environment variable {t.api_key_env} is not set "
                f"(and no teacher.base_url / ${t.base_url_env} for a local server)"
            )
        key = "EMPTY"  # local servers (vllm serve, the test server) accept any key
    return base_url, key


def tokenizer_column(t: OpenAITeacher) -> str:
    """The ``tokenizer`` column for logprob rows from an API teacher: ``<model>@<vocabulary hash>`` with
    ``teacher.tokenizer`` loaded by ``transformers.AutoTokenizer`` (offline KD checks the hash against
    the student), or ``<model>@`` without one (a server does not say which vocabulary it uses)."""
    if not t.tokenizer:
        return f"{t.model}@"
    from ..errors import RecipeError, require
    from ..tokenizer import tokenizer_tag

    transformers = require("transformers", "train", "teacher.tokenizer")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(t.tokenizer)
    except Exception as e:  # OSError / ValueError / hub errors: one line naming the field
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RecipeError(f"teacher.tokenizer: cannot load the tokenizer '{t.tokenizer}' ({first})") from None
    return tokenizer_tag(tok, t.model)


class OpenAIBackend:
    def __init__(self, t: OpenAITeacher, cfg: SampleConfig):
        self.t, self.cfg = t, cfg
        self.base_url, self._key = resolve_endpoint(t)
        self._url = (self.base_url or _OPENAI_URL).rstrip("/") + "/chat/completions"
        self.teacher = t.model
        self.tokenizer = tokenizer_column(t) if cfg.logprobs is not None else None

    # ------------------------------------------------------------------ request body
    def body(self, req: Request) -> dict:
        cfg, t = self.cfg, self.t
        b: dict[str, Any] = {"model": t.model, "messages": req.messages}
        if req.n > 1:
            b["n"] = req.n
        for name in ("temperature", "top_p", "max_tokens"):
            v = getattr(cfg, name)
            if v is not None:
                b[name] = v
        if req.seed is not None:
            b["seed"] = req.seed
        if cfg.stop:
            b["stop"] = cfg.stop
        if cfg.logprobs is not None:
            b["logprobs"] = True
            if cfg.logprobs > 0:
                # vLLM (token_ids: true) puts the sampled token first in its top list: one more keeps the true top-k
                b["top_logprobs"] = cfg.logprobs + 1 if t.token_ids else cfg.logprobs
            if t.token_ids:
                b["return_tokens_as_token_ids"] = True
        b.update(cfg.extra_body)
        return b

    def _redact(self, text: str) -> str:
        """Error texts become row data: make sure the key cannot ride along (e.g. an echoing proxy)."""
        return text.replace(self._key, "***") if len(self._key) >= 8 else text

    def _estimate_tokens(self, req: Request) -> int:
        chars = sum(len(str(m.get("content") or "")) for m in req.messages)
        return chars // 4 + 1 + (self.cfg.max_tokens or 1024) * req.n

    # ------------------------------------------------------------------ run
    def run(self, requests: list[Request], sink: Sink) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._main(requests, sink))
            return
        # called from inside an event loop (a notebook, an async caller): run ours on a thread
        err: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(self._main(requests, sink))
            except BaseException as e:  # pragma: no cover - re-raised below
                err.append(e)

        th = threading.Thread(target=target, name="curate-openai-sampler")
        th.start()
        th.join()
        if err:
            raise err[0]

    def _session(self) -> aiohttp.ClientSession:
        t = self.t
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=t.concurrency, ssl=_ssl_context()),
            timeout=aiohttp.ClientTimeout(total=t.timeout, connect=min(t.timeout, 30.0)),
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
            # the proxy is resolved once: trust_env=True would look it (and ~/.netrc) up in a thread per request
            proxy=_env_proxy(self._url),
        )

    async def _post(self, session: aiohttp.ClientSession, body: dict, headers: dict) -> Any:
        """One attempt: the parsed JSON body of a 2xx answer, else ``APIStatusError`` / ``MalformedResponse``."""
        async with session.post(self._url, data=json.dumps(body).encode(), headers=headers) as r:
            raw = await r.read()
            status, resp_headers = r.status, r.headers
        if status >= 400:
            try:
                err = json.loads(raw).get("error") or {}
                msg = err.get("message") if isinstance(err, dict) else str(err)
            except (ValueError, AttributeError):
                msg = raw[:200].decode("utf-8", "replace")
            raise APIStatusError(status, resp_headers, str(msg))
        try:
            return json.loads(raw)
        except ValueError as e:  # truncated or not JSON (JSONDecodeError), or not UTF-8 (UnicodeDecodeError)
            raise MalformedResponse(f"response body is not JSON ({e}): {raw[:120]!r}") from None

    async def _main(self, requests: list[Request], sink: Sink) -> None:
        from aiolimiter import AsyncLimiter

        t = self.t
        # rpm: one request every 60/rpm s (no initial burst); tpm: a one-second token bucket
        rpm = AsyncLimiter(1, 60.0 / t.rpm) if t.rpm else None
        tpm = AsyncLimiter(max(1.0, t.tpm / 60.0), 1) if t.tpm else None
        session = self._session()
        it = iter(requests)

        admit = getattr(sink, "admit", None)  # reserves budget for the request before it is sent

        async def worker() -> None:
            for req in it:
                ok = True if admit is None else admit(req)
                while ok is None:  # budget: reservations of requests in flight fill it for now
                    await asyncio.sleep(0.01)
                    ok = admit(req)
                if sink.stop_reason or not ok:
                    return
                if rpm is not None:
                    await rpm.acquire()
                if tpm is not None:
                    await tpm.acquire(min(self._estimate_tokens(req), tpm.max_rate))
                try:
                    payload = await self._send(session, req)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    sink.failed(req, self._redact(describe(e)))
                    continue
                sink.done(req, payload)

        try:
            await asyncio.gather(*[worker() for _ in range(min(t.concurrency, len(requests)))])
        finally:
            await session.close()

    async def _send(self, session: aiohttp.ClientSession, req: Request) -> dict:
        body = self.body(req)
        headers = {"X-Curate-Request-Hash": req.key, "X-Curate-Sample-Index": str(req.sample_index)}
        k, t = self.cfg.logprobs, self.t
        try:  # first attempt outside tenacity: most requests need no retry, and its bookkeeping costs CPU
            return parse_completion(await self._post(session, body, headers), req.n, k)
        except Exception as e:
            if t.max_retries == 0 or not retryable(e):
                raise
            first = e
        wait = _Wait(t.backoff_initial, t.backoff_max, offset=1)
        await asyncio.sleep(wait.delay(1, first))
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(t.max_retries),
            wait=wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        ):
            with attempt:
                return parse_completion(await self._post(session, body, headers), req.n, k)
        raise AssertionError("unreachable")  # pragma: no cover
