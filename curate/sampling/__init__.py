"""Teacher sampling: problems -> one row per teacher sample, durable and resumable.

Public API (used by the ``sample`` stage, the ``difficulty`` probe and ``curate eval``)::

    from curate.sampling import SampleConfig, sample_rows
    cfg = SampleConfig(teacher={"backend": "openai", "model": "deepseek-reasoner",
                                "api_key_env": "DEEPSEEK_API_KEY"}, n=4, max_tokens=8192)
    samples = sample_rows(problems, cfg, ctx, log_name="sample")

How a run works
  1. Every problem row becomes prompts: ``system_prompt`` (optional) + ``user_template`` with
     ``{column}`` placeholders filled from the row (other braces, e.g. ``\boxed{}``, stay literal).
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

from ..backends.base import Backend, Request, Sink, as_count, as_text  # noqa: F401
from ..backends.openai_compat import OpenAITeacher  # noqa: F401
from ..backends.transformers_local import TransformersTeacher  # noqa: F401
from ..backends.vllm_offline import VLLMTeacher  # noqa: F401
from .config import (  # noqa: F401
    DEFAULT_USER_TEMPLATE,
    Budget,
    SampleConfig,
    TeacherConfig,
)
from .log import (  # noqa: F401
    RequestLog,
    _lock_log,
)
from .prompts import (  # noqa: F401
    _PLACEHOLDER,
    _canon,
    _hash_safe,
    _teacher_identity,
    build_messages,
    fill_template,
    native_n,
    plan_requests,
    request_hash,
    sampling_params,
    split_reasoning,
    teacher_fingerprint,
    template_fields,
    with_prefill,
)
from .rows import (  # noqa: F401
    SAMPLE_COLUMNS,
    SAMPLE_SCHEMA,
    _assemble,
    _sample_id,
    _schema,
    finish_stage_sampling,
    sample_rows,
)
from .run import (  # noqa: F401
    _Run,
    _token_counter,
    make_backend,
    normalize_payload,
    split_usage,
)

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
