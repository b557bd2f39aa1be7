"""Teacher sampling: problems -> one row per teacher sample, durable and resumable.

Public API (used by the ``sample`` stage, the ``difficulty`` probe and ``curate eval``)::

    from curate.sampling import SampleConfig, sample_rows
    cfg = SampleConfig(teacher={"backend": "openai", "model": "deepseek-reasoner",
                                "api_key_env": "DEEPSEEK_API_KEY"}, n=4, max_tokens=8192)
    samples = sample_rows(problems, cfg, ctx, log_name="sample")

How a run works
  1. Every problem row becomes prompts: ``system_prompt`` (optional) + ``user_template`` with
     ``{column}`` placeholders filled from the row (other braces, e.g. ``\\boxed{}``, stay literal).
  2. Requests are planned: one per problem with native ``n`` (vLLM, transformers, OpenAI-compatible
     servers by default) or ``n`` requests of ``n=1`` (``teacher.native_n: false``) with seeds
     ``seed + sample_index``. Each request has a hash over (backend, model, messages, sampling params,
     first sample index, count, seed) - never a key, a URL or a header.
  3. A durable log (SQLite, WAL: ``<work_dir>/sampling/<log_name>.sqlite``) holds every finished
     response under its hash *before* it counts as done (a writer thread group-commits what arrived). Re-running sends only what is not
     in the log: a committed response is never requested again; a SIGKILL re-sends only what had been
     delivered but not yet committed (at most the requests in flight). One process per log (a file lock).
  4. A request that still fails after its retries becomes rows with ``finish_reason == "error"``
     and the text in ``error`` (and is retried by the next run); so does a reply that is not a usable
     completion (a per-row failure, never a run failure). ``max_failures`` (a count, or a fraction of the
     stage's requests) stops a run against a broken endpoint with a ``BackendError``; the ``budget``
     reserves ``max_tokens x n`` per request in flight and stops cleanly with ``BudgetExceeded``.
  5. Rows: DESIGN.md's sample columns, problem columns carried over, ordered by problem then sample.

The reasoning comes from the server's ``reasoning_content`` (or ``reasoning``) when it sends one,
otherwise from ``<think>...</think>`` in the text; a template that prefills ``<think>`` leaves only
``</think>`` in the text, which is handled the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

import polars as pl
from pydantic import Field, field_validator, model_validator

from . import columns, traces
from .backends.base import Backend, Request, Sink, as_count, as_text  # noqa: F401
from .backends.base import Strict as _Strict
from .backends.openai_compat import OpenAITeacher
from .backends.transformers_local import TransformersTeacher
from .backends.vllm_offline import VLLMTeacher
from .errors import BackendError, BudgetExceeded, RecipeError

if TYPE_CHECKING:
    from .context import Context

DEFAULT_USER_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."

__all__ = [
    "SAMPLE_COLUMNS",
    "SAMPLE_SCHEMA",
    "Budget",
    "DEFAULT_USER_TEMPLATE",
    "OpenAITeacher",
    "Request",
    "RequestLog",
    "SampleConfig",
    "TeacherConfig",
    "TransformersTeacher",
    "VLLMTeacher",
    "build_messages",
    "finish_stage_sampling",
    "plan_requests",
    "sample_rows",
    "split_reasoning",
]


# --------------------------------------------------------------------------- configuration
TeacherConfig = Annotated[Union[OpenAITeacher, VLLMTeacher, TransformersTeacher], Field(discriminator="backend")]


class Budget(_Strict):
    """Stop cleanly (``BudgetExceeded``, resumable) once the run's logged usage reaches a limit."""

    max_completion_tokens: int | None = Field(None, ge=1)
    max_usd: float | None = Field(None, gt=0)
    usd_per_million_prompt: float = Field(0.0, ge=0)
    usd_per_million_completion: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _prices(self) -> "Budget":
        if self.max_usd is not None and not (self.usd_per_million_prompt or self.usd_per_million_completion):
            raise ValueError("max_usd needs usd_per_million_prompt and/or usd_per_million_completion")
        return self


class SampleConfig(_Strict):
    teacher: TeacherConfig
    n: int = Field(1, ge=1, le=1024)
    """Samples per problem."""
    temperature: float | None = Field(0.6, ge=0)
    """``None`` leaves it to the server (some reasoning APIs reject it)."""
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(4096, ge=1)
    seed: int | None = None
    """Default: the run seed."""
    stop: list[str] | None = None
    logprobs: int | None = Field(None, ge=0, le=100)
    """Keep the top-k raw (T=1) logprobs per completion token: ``token_ids``/``topk_ids``/``topk_logprobs``."""
    system_prompt: str | None = None
    user_template: str = DEFAULT_USER_TEMPLATE
    """``{column}`` placeholders are filled from the problem row; other braces stay literal."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Passed through to the request body (openai) or merged into the sampling params."""
    max_failures: float = Field(0.05, ge=0)
    """Failed requests (after retries) tolerated: a count (>= 1) or a fraction of the requests (< 1)."""
    budget: Budget | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


# --------------------------------------------------------------------------- prompts
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_fields(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template or "") if m.group(1)]


def fill_template(template: str, row: dict) -> str:
    """Replace ``{column}`` with the row's value; ``{{``/``}}`` give literal braces and any other brace
    is literal as is (``\\boxed{}``)."""

    def sub(m: re.Match) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        v = row.get(m.group(1))
        return "" if v is None else str(v)

    return _PLACEHOLDER.sub(sub, template)


def build_messages(row: dict, cfg: SampleConfig) -> list[dict]:
    msgs = []
    if cfg.system_prompt:
        msgs.append({"role": "system", "content": fill_template(cfg.system_prompt, row)})
    msgs.append({"role": "user", "content": fill_template(cfg.user_template, row)})
    return msgs


with_prefill = traces.with_prefill  # the <think> format lives in curate.traces


def split_reasoning(content: str | None, reasoning_content: str | None = None) -> tuple[str, str, bool]:
    """(reasoning, answer_text, think_closed) from a reply: ``curate.traces.split``."""
    s = traces.split(content, reasoning_content)
    return s.reasoning, s.answer, s.closed


# --------------------------------------------------------------------------- requests
def sampling_params(cfg: SampleConfig) -> dict:
    """The backend-independent sampling parameters that enter the request hash."""
    return {
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "stop": cfg.stop,
        "logprobs": cfg.logprobs,
        "extra_body": _hash_safe(cfg.extra_body),
    }


def _hash_safe(obj: Any) -> Any:
    """``extra_body`` for the request hash: values under secret-looking keys (``auth``, ``api_key``, ...)
    and key-shaped values are left out, so a rotated key neither changes the hash nor enters it."""
    from .yamlio import _SECRET_FIELD, looks_like_secret

    if isinstance(obj, dict):
        return {k: ("<secret>" if _SECRET_FIELD.search(str(k)) else _hash_safe(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hash_safe(v) for v in obj]
    return "<secret>" if looks_like_secret(obj) else obj


def _teacher_identity(t: Any) -> dict:
    ident = {"backend": t.backend, "model": t.model}
    if isinstance(t, OpenAITeacher):
        ident["token_ids"] = t.token_ids
    elif isinstance(t, (VLLMTeacher, TransformersTeacher)):
        ident["chat_template_kwargs"] = t.chat_template_kwargs
        # a local model is what its files contain, not where they lie: retraining into the same
        # folder must never replay the old model's samples (a hub id is its name, None here)
        from .fingerprint import path_fingerprint

        ident["content"] = path_fingerprint(t.model)
        if getattr(t, "tokenizer", None):
            ident["tokenizer_content"] = path_fingerprint(t.tokenizer)
    return ident


def teacher_fingerprint(t: Any) -> str:
    """The teacher's identity (backend, model, and for a local model folder the content of its files)."""
    return _canon(_teacher_identity(t))


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_hash(teacher: dict, messages: list, params: dict, sample_index: int, n: int, seed: int | None,
                 *, _prefix: str | None = None) -> str:
    """sha256 over the canonical JSON of (teacher identity, params) + messages + index, count, seed."""
    prefix = _prefix if _prefix is not None else _canon({"teacher": teacher, "params": params})
    blob = f"{prefix}\x1f{_canon(messages)}\x1f{sample_index}\x1f{n}\x1f{seed}"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def native_n(cfg: SampleConfig) -> bool:
    return not isinstance(cfg.teacher, OpenAITeacher) or cfg.teacher.native_n


def plan_requests(messages: list[list[dict]], cfg: SampleConfig, seed: int) -> list[Request]:
    ident = _teacher_identity(cfg.teacher)
    params = sampling_params(cfg)
    prefix = _canon({"teacher": ident, "params": params})
    native = native_n(cfg) or cfg.n == 1
    out: list[Request] = []
    for pos, msgs in enumerate(messages):
        if native:
            out.append(Request(request_hash(ident, msgs, params, 0, cfg.n, seed, _prefix=prefix), pos, 0, cfg.n, msgs, seed))
        else:
            for i in range(cfg.n):
                s = seed + i
                out.append(Request(request_hash(ident, msgs, params, i, 1, s, _prefix=prefix), pos, i, 1, msgs, s))
    return out


# --------------------------------------------------------------------------- durable log
class RequestLog:
    """Finished responses by request hash: SQLite in WAL mode.

    A committed row survives a SIGKILL of the writer (WAL + ``synchronous=NORMAL``: the data is in
    the OS before ``put`` / ``put_many`` returns). Failed requests are recorded separately (for the audit trail)
    and retried by the next run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, payload TEXT NOT NULL, t REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS failures (key TEXT, error TEXT, t REAL)")
        except sqlite3.DatabaseError as e:
            raise BackendError(f"{self.path}: cannot open the sampling log ({e})") from None

    _BATCH = 500
    """Keys per ``WHERE key IN (...)`` query (well under SQLite's bound-variable limit)."""

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The logged responses of ``keys`` (absent keys are left out), looked up by primary key."""
        want = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(want), self._BATCH):
                chunk = want[i : i + self._BATCH]
                marks = ",".join("?" * len(chunk))
                for key, payload in self._db.execute(f"SELECT key, payload FROM responses WHERE key IN ({marks})", chunk):
                    try:
                        out[key] = json.loads(payload)
                    except (TypeError, ValueError):
                        continue  # an unreadable entry counts as not logged: it is requested again
        return out

    def put(self, key: str, payload: dict) -> None:
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, blob, time.time()))

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        """Several responses in one transaction (group commit): all durable when this returns."""
        now = time.time()
        rows = [(k, json.dumps(p, ensure_ascii=False, separators=(",", ":")), now) for k, p in items]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put_failure(self, key: str, error: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO failures VALUES (?, ?, ?)", (key, error, time.time()))

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- backends
def make_backend(cfg: SampleConfig) -> Backend:
    t = cfg.teacher
    if isinstance(t, OpenAITeacher):
        from .backends.openai_compat import OpenAIBackend

        return OpenAIBackend(t, cfg)
    if isinstance(t, VLLMTeacher):
        from .backends.vllm_offline import VLLMBackend

        return VLLMBackend(t, cfg)
    from .backends.transformers_local import TransformersBackend

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
        from .yamlio import (
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


def _schema(with_lp: bool, with_tokens: bool) -> dict:
    s: dict[str, Any] = dict(columns.SAMPLE_SCHEMA)  # the data contract: curate.columns
    if with_lp:
        s.update(columns.KD_SCHEMA)
        if with_tokens:
            s["topk_tokens"] = pl.List(pl.List(pl.Utf8))
    return s


SAMPLE_SCHEMA: dict = _schema(False, False)
"""The sample columns and their polars dtypes (without the optional logprob columns)."""
SAMPLE_COLUMNS = tuple(SAMPLE_SCHEMA)


_sample_id = columns.sample_id  # origin = the request hash


def sample_rows(problems: pl.DataFrame, cfg: SampleConfig, ctx: "Context", *, log_name: str = "sample") -> pl.DataFrame:
    """One row per teacher sample (see the module docstring); problem columns are carried over."""
    label = ctx.stage_label or log_name
    if "problem_id" not in problems.columns:
        raise RecipeError(f"{label}: the input has no 'problem_id' column (sampling needs problem rows)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", log_name):
        raise RecipeError(f"{label}: log_name {log_name!r} must be a plain file name")
    for where, tpl in (("user_template", cfg.user_template), ("system_prompt", cfg.system_prompt or "")):
        missing = [f for f in template_fields(tpl) if f not in problems.columns]
        if missing:
            raise RecipeError(
                f"{label}: {where}: {{{missing[0]}}} is not a column of the input "
                f"(columns: {', '.join(problems.columns)})"
            )
    seed = ctx.seed if cfg.seed is None else cfg.seed
    rows = problems.to_dicts()
    messages = [build_messages(r, cfg) for r in rows]
    requests = plan_requests(messages, cfg, seed)
    log_path = Path(ctx.work_dir) / "sampling" / f"{log_name}.sqlite"
    log = RequestLog(log_path)
    busy = _lock_log(log_path, label)  # two processes on one log would both pay for what is missing
    t0 = time.perf_counter()
    try:
        # ``ctx.resume`` False (``curate run --no-resume``) re-sends everything (new responses replace old)
        have = log.get_many([r.key for r in requests]) if getattr(ctx, "resume", True) else {}
        by_key = {r.key: r for r in requests}
        # a logged payload that cannot be used (damaged, or logged by an older version) is sent again
        have = {k: q for k, p in have.items() if (q := normalize_payload(p, by_key[k].n)) is not None}
        pending = [r for r in requests if r.key not in have]
        count_tokens, token_method = _token_counter(cfg)
        with ctx.progress(sum(r.n for r in pending), f"{label}: {cfg.teacher.model}") as bar:
            run = _Run(log, len(requests), cfg.max_failures, cfg.budget, bar, max_tokens=cfg.max_tokens,
                       count_tokens=count_tokens, token_method=token_method)
            for k, p in have.items():
                run.add_usage(p, new=False, req=by_key[k])
            run.check_budget()
            backend = None
            if pending and run.stop_reason is None:
                backend = make_backend(cfg)
                run.start()
                try:
                    backend.run(pending, run)
                finally:
                    run.close()  # queued responses are committed first, also on Ctrl-C
            teacher = backend.teacher if backend is not None else cfg.teacher.model
            tokenizer = getattr(backend, "tokenizer", None) if backend is not None else None
        results = {**have, **run.payloads}
    finally:
        log.close()
        busy.release()
    seconds = time.perf_counter() - t0
    stats = {
        "teacher": cfg.teacher.model,
        "backend": cfg.teacher.backend,
        "requests": len(requests),
        "from_log": len(have),
        "sent_ok": run.sent_ok,
        "failed": len(run.failures),
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "new_prompt_tokens": run.new_prompt_tokens,
        "new_completion_tokens": run.new_completion_tokens,
        "usage_missing": run.usage_missing,
        "token_count": ("server usage" if not run.usage_missing else
                        f"server usage; {run.usage_missing} responses without usage: estimate by {run.token_method}"),
        "seconds": round(seconds, 3),
        "log": str(log_path),
    }
    if cfg.budget is not None and cfg.budget.max_usd is not None:
        stats["usd"] = round(run.usd(), 6)
    ctx.stats[log_name] = stats
    if run.stop_reason == "failures":
        limit = run.failure_limit()
        why = (f"more than {limit} of {len(requests)} requests (max_failures={cfg.max_failures:g})"
               if len(run.failures) > limit else
               f"none of the first {len(run.failures)} succeeded (max_failures={cfg.max_failures:g})")
        raise BackendError(
            f"{label}: {len(run.failures)} requests to {cfg.teacher.model} failed after retries, {why}; "
            f"last error: {run.last_error}. Finished responses are kept in {log_path}; fix the endpoint and "
            "re-run to resume"
        )
    if run.stop_reason and len(results) < len(requests):  # a budget reached with work left
        done = len(results)
        raise BudgetExceeded(
            f"{label}: {run.budget_message()}; {done}/{len(requests)} requests done and kept in {log_path}; "
            "raise the budget and re-run to resume"
        )
    if cfg.teacher.backend == "openai" and tokenizer is None and cfg.logprobs is not None:
        from .backends.openai_compat import (
            tokenizer_column,  # everything came from the log
        )

        tokenizer = tokenizer_column(cfg.teacher)
    return _assemble(problems, rows, requests, results, run.failures, cfg, teacher, tokenizer)


def _lock_log(log_path: Path, label: str) -> Any:
    """An OS lock on ``<log>.lock`` (released by the OS even on SIGKILL): a second process sampling into
    the same log (two runs, two evals of one folder) is refused with one line instead of paying twice."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(log_path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BackendError(
            f"{label}: another process is sampling into {log_path}; wait for it to finish (its responses are "
            "kept and reused), then run again"
        ) from None
    return lock


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


def finish_stage_sampling(out: pl.DataFrame, ctx: "Context", key: str, *, flatten: bool = False) -> pl.DataFrame:
    """What a *stage* does with a :func:`sample_rows` result (the ``sample`` stage on any engine, the
    ``difficulty`` probe and judge): one place, so every caller behaves alike.

    * ``ctx.stats[key]`` (``key`` = the ``log_name``) loses its ``log`` entry, a local path that is not
      for the published manifest; ``flatten`` moves the remaining numbers to the top of ``ctx.stats``
      (the ``sample`` stage: they show in the funnel), else they stay under ``key``;
    * any failed request (``finish_reason == "error"``) sets ``ctx.cacheable = False``, so the runner
      does not cache the output and a re-run retries those requests (finished ones come from the log);
    * failed rows get ``drop_reason: teacher_error`` (a caller that aggregates rows, like the
      difficulty probe, also skips them by ``finish_reason``).
    """
    from .context import mark_drop

    stats = ctx.stats.pop(key, None)
    if isinstance(stats, dict):
        stats = {k: v for k, v in stats.items() if k != "log"}
        if flatten:
            ctx.stats.update(stats)
        else:
            ctx.stats[key] = stats
    elif stats is not None:  # pragma: no cover - not sample_rows' stats: leave them
        ctx.stats[key] = stats
    failed = out.height > 0 and "finish_reason" in out.columns and bool((out["finish_reason"] == "error").any())
    if failed:
        ctx.cacheable = False
    if "finish_reason" not in out.columns:
        return out
    return mark_drop(out, (pl.col("finish_reason") == "error").fill_null(False), "teacher_error")


def _assemble(problems, rows, requests, results, failures, cfg, teacher, tokenizer) -> pl.DataFrame:
    with_lp = cfg.logprobs is not None
    with_tokens = with_lp and any(
        s.get("topk_tokens") is not None for p in results.values() for s in p.get("samples", [])
    )
    schema = _schema(with_lp, with_tokens)
    cols: dict[str, list] = {c: [] for c in schema}
    pos: list[int] = []
    flat_role: list[str] = []
    flat_content: list[str] = []
    flat_row: list[int] = []
    lp_cols = [c for c in ("token_ids", "topk_ids", "topk_logprobs", "topk_tokens") if c in schema]
    for req in requests:  # planned in problem order, then sample index
        pid = rows[req.pos]["problem_id"]
        payload = results.get(req.key)
        if payload is None:
            err = failures.get(req.key, "not sampled")
            samples, usage, p_tok, tok = [], [], None, None
        else:
            samples = payload["samples"]
            usage = split_usage(payload.get("completion_tokens"), samples)
            p_tok, err = payload.get("prompt_tokens"), "missing sample in response"
            tok = payload.get("tokenizer") or tokenizer
        for j in range(req.n):
            s = samples[j] if j < len(samples) else None
            pos.append(req.pos)
            cols["sample_id"].append(_sample_id(req.key, req.sample_index + j))
            cols["problem_id"].append(pid)
            cols["sample_index"].append(req.sample_index + j)
            cols["teacher"].append(teacher)
            row_no = len(pos) - 1
            for m in req.messages:  # the prompt column is built in one vectorised step below
                flat_role.append(m["role"])
                flat_content.append(m["content"])
                flat_row.append(row_no)
            cols["request_hash"].append(req.key)
            cols["prompt_tokens"].append(p_tok)
            if s is None:
                reasoning = answer = None
                finish, c_tok, error = "error", None, err
            else:
                reasoning, answer, _ = split_reasoning(s.get("content"), s.get("reasoning_content"))
                finish, c_tok, error = s.get("finish_reason") or "stop", usage[j], None
            cols["reasoning"].append(reasoning)
            cols["answer_text"].append(answer)
            cols["finish_reason"].append(finish)
            cols["completion_tokens"].append(c_tok)
            cols["error"].append(error)
            if with_lp:
                for c in lp_cols:
                    cols[c].append(s.get(c) if s is not None else None)
                cols["tokenizer"].append(tok if s is not None else None)
    prompt_t = schema["prompt"]
    cols.pop("prompt")
    samples_df = pl.DataFrame(cols, schema={k: v for k, v in schema.items() if k != "prompt"}, strict=False)
    prompts = (
        pl.DataFrame({"__row": flat_row, "role": flat_role, "content": flat_content},
                     schema={"__row": pl.Int64, "role": pl.Utf8, "content": pl.Utf8})
        .group_by("__row", maintain_order=True)
        .agg(pl.struct("role", "content").alias("prompt"))
    )
    samples_df = samples_df.with_columns(
        prompts["prompt"].cast(prompt_t) if prompts.height == samples_df.height else pl.lit(None, dtype=prompt_t).alias("prompt")
    )
    carried = [c for c in problems.columns if c not in schema]
    carried_df = problems.select(carried).gather(pos) if pos else problems.select(carried).clear()
    out = pl.concat([samples_df, carried_df], how="horizontal")
    first = [c for c in carried if c != "problem_id"]
    return out.select(["sample_id", "problem_id", *first, *[c for c in schema if c not in ("sample_id", "problem_id")]])
