"""``backend: vllm``: in-process ``vllm.LLM`` (offline batch inference on local GPUs).

* ``vllm.LLM(model, tensor_parallel_size, dtype, max_model_len, gpu_memory_utilization, seed,
  trust_remote_code, logprobs_mode="raw_logprobs", max_logprobs=k)``; imported lazily, so without
  vLLM only this backend fails, with a one-line install hint.
* ``LLM.chat(list_of_conversations, sampling_params=[SamplingParams(n, temperature, top_p, max_tokens,
  seed, stop, logprobs=k) per request], chat_template_kwargs=..., use_tqdm=False)`` applies the
  model's own chat template. Requests go in chunks of ``chunk_size``; every finished chunk is
  written to the durable log before the next one starts.
* ``RequestOutput.outputs[i]`` (``CompletionOutput``): ``text``, ``token_ids``, ``finish_reason`` and
  ``logprobs`` = one ``dict[token_id -> Logprob(logprob, rank, decoded_token)]`` per generated token
  (the top-k by rank, plus the sampled token when it ranks lower). Raw (T=1, before any processor)
  logprobs are vLLM's ``raw_logprobs`` mode.
"""

from __future__ import annotations

from typing import Any

from ..errors import BackendError, MissingExtraError
from ..sampling import Request, SampleConfig, Sink, VLLMTeacher, with_prefill


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise MissingExtraError(
            f"teacher.backend: vllm needs the 'vllm' package and a CUDA GPU ({e}); run: pip install 'curate[vllm]'"
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
        }
        if t.max_model_len is not None:
            kw["max_model_len"] = t.max_model_len
        if cfg.logprobs is not None:
            kw["max_logprobs"] = max(20, cfg.logprobs)
        if cfg.seed is not None:
            kw["seed"] = cfg.seed
        kw.update(t.engine_kwargs)
        try:
            self.llm = self.vllm.LLM(**kw)
        except (OSError, ValueError, RuntimeError) as e:
            raise BackendError(f"teacher.model: vLLM cannot load '{t.model}' ({str(e).splitlines()[0][:200]})") from None
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
