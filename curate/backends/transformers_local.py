"""``backend: transformers``: a local Hugging Face causal LM with ``generate``, batched, on CPU or GPU.

* The prompt is the tokenizer's chat template (``add_generation_prompt=True``, plus
  ``chat_template_kwargs``), left-padded batches of ``batch_size`` requests, ``n`` samples each
  (``num_return_sequences``).
* Top-k logprobs come from the *raw* logits (``output_logits=True``: before temperature / top-p),
  log-softmaxed at T=1, as offline KD needs; ``token_ids`` are the generated ids up to and including
  the end-of-sequence token.
* Seeds: ``torch.manual_seed`` per batch from the first request's seed and hash, so a given batch is
  reproducible; a resumed run that batches differently samples differently (as any sampler would).
* ``finish_reason``: ``stop`` when EOS (or a ``stop`` string) ended the sample, else ``length``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..errors import BackendError, require
from ..traces import with_prefill
from .base import Request, Sink, Strict

if TYPE_CHECKING:
    from ..sampling import SampleConfig


class TransformersTeacher(Strict):
    """A local Hugging Face model (path or hub id) with ``generate``, batched, CPU or GPU."""

    backend: Literal["transformers"] = "transformers"
    model: str
    device: str = "auto"
    """``auto`` = cuda when available, else cpu."""
    dtype: str = "auto"
    batch_size: int = Field(8, ge=1)
    trust_remote_code: bool = False
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)


def _dtype(torch: Any, name: str, device: str) -> Any:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return getattr(torch, name)
    except AttributeError:
        raise BackendError(f"teacher.dtype: unknown torch dtype '{name}'") from None


class TransformersBackend:
    def __init__(self, t: TransformersTeacher, cfg: SampleConfig):
        torch = require("torch", "train", "the transformers teacher backend")
        tf = require("transformers", "train", "the transformers teacher backend")
        self.t, self.cfg, self.torch = t, cfg, torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if t.device == "auto" else t.device
        try:
            self.tok = tf.AutoTokenizer.from_pretrained(t.model, trust_remote_code=t.trust_remote_code)
            self.model = tf.AutoModelForCausalLM.from_pretrained(
                t.model, dtype=_dtype(torch, t.dtype, self.device), trust_remote_code=t.trust_remote_code
            ).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise BackendError(f"teacher.model: cannot load '{t.model}' ({str(e).splitlines()[0][:200]})") from None
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"
        if not getattr(self.tok, "chat_template", None):
            raise BackendError(f"teacher.model: the tokenizer of '{t.model}' has no chat template")
        self.teacher = t.model
        self.tokenizer = None
        if cfg.logprobs is not None:
            from ..tokenizer import tokenizer_tag

            self.tokenizer = tokenizer_tag(self.tok, t.model)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    def prompt_text(self, req: Request) -> str:
        return self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True,
                                            **self.t.chat_template_kwargs)

    def run(self, requests: list[Request], sink: Sink) -> None:
        bs = self.t.batch_size
        for i in range(0, len(requests), bs):
            if sink.stop_reason:
                return
            batch = requests[i : i + bs]
            try:
                payloads = self._generate(batch)
            except (RuntimeError, ValueError) as e:  # OOM, bad inputs: a per-request failure
                msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                for req in batch:
                    sink.failed(req, msg)
                continue
            for req, payload in zip(batch, payloads):
                sink.done(req, payload)

    def _generate(self, batch: list[Request]) -> list[dict]:
        torch, cfg = self.torch, self.cfg
        n = batch[0].n
        texts = [self.prompt_text(r) for r in batch]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        seed = (batch[0].seed or 0) * 1_000_003 + int(batch[0].key[:8], 16)
        torch.manual_seed(seed % (2**63))
        do_sample = bool(cfg.temperature) and cfg.temperature > 0
        # greedy decoding gives one answer however many are asked for: decode once, repeat it n times
        gen_n = n if do_sample else 1
        kw = self._generate_kwargs(do_sample, gen_n)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kw)
        width = enc["input_ids"].shape[1]
        gen = out.sequences[:, width:].tolist()
        logps = None
        if cfg.logprobs is not None and out.logits:
            # (steps, B*n, V) raw logits -> T=1 log-probs -> top-k per step
            stacked = torch.stack([x.float() for x in out.logits], dim=1)  # (B*n, steps, V)
            lp = torch.log_softmax(stacked, dim=-1)
            k = max(1, cfg.logprobs)
            top_v, top_i = lp.topk(k, dim=-1)
            logps = (top_v.tolist(), top_i.tolist())
        payloads = []
        for b, req in enumerate(batch):
            samples, total = [], 0
            for j in range(n):
                row = b * gen_n + (j if do_sample else 0)
                ids = gen[row]
                end = next((p + 1 for p, x in enumerate(ids) if x in self.eos_ids), None)
                ids = ids[:end] if end is not None else ids
                text = self.tok.decode(ids, skip_special_tokens=False)
                finish = "stop" if end is not None else "length"
                if cfg.stop and end is None:
                    for s in cfg.stop:
                        if s in text:
                            finish = "stop"
                            break
                text = with_prefill(texts[b], self._clean(text))
                s: dict[str, Any] = {"content": text, "reasoning_content": None, "finish_reason": finish,
                                     "completion_tokens": len(ids)}
                if logps is not None:
                    L = len(ids)
                    s["token_ids"] = ids
                    s["topk_ids"] = [r[: cfg.logprobs] for r in logps[1][row][:L]]
                    s["topk_logprobs"] = [[round(v, 6) for v in r[: cfg.logprobs]] for r in logps[0][row][:L]]
                total += len(ids)
                samples.append(s)
            payloads.append({"samples": samples, "prompt_tokens": int(prompt_lens[b]), "completion_tokens": total,
                             "tokenizer": self.tokenizer})
        return payloads

    def _generate_kwargs(self, do_sample: bool, gen_n: int) -> dict[str, Any]:
        """The keyword arguments of ``model.generate`` for one batch (the config's extra_body last)."""
        cfg = self.cfg
        kw: dict[str, Any] = {
            "max_new_tokens": cfg.max_tokens or 512,
            "do_sample": do_sample,
            "num_return_sequences": gen_n,
            "return_dict_in_generate": True,
            "output_logits": cfg.logprobs is not None,
            "pad_token_id": self.tok.pad_token_id,
        }
        if do_sample:
            kw["temperature"] = cfg.temperature
            kw["top_p"] = cfg.top_p if cfg.top_p is not None else 1.0
            kw["top_k"] = 0
        if cfg.stop:
            kw["stop_strings"] = cfg.stop
            kw["tokenizer"] = self.tok
        kw.update(cfg.extra_body)
        return kw

    def _clean(self, text: str) -> str:
        """Drop EOS/pad/special tokens from the text but keep ``<think>`` / ``</think>`` markers."""
        keep = {"<think>", "</think>"}
        for tok in self.tok.all_special_tokens:
            if tok and tok not in keep:
                text = text.replace(tok, "")
        return text
