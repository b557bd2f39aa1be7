"""From problem rows to requests: prompt templates, the request hash (the durable log's key) and the
teacher's identity (by content for local models)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .. import traces
from ..backends.base import Request
from ..backends.openai_compat import OpenAITeacher
from ..backends.transformers_local import TransformersTeacher
from ..backends.vllm_offline import VLLMTeacher
from .config import SampleConfig

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
    from ..yamlio import _SECRET_FIELD, looks_like_secret

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
        from ..fingerprint import path_fingerprint

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
