"""The vLLM backend. vLLM cannot be installed here (no CUDA, no wheels for this box), so the mapping
onto vLLM's API is tested against a TEST DOUBLE of the ``vllm`` module: its ``LLM.__init__``,
``LLM.chat`` and ``SamplingParams`` accept exactly the parameter names of the real API (vllm
``entrypoints/llm.py`` ``LLM.chat(messages, sampling_params, use_tqdm, lora_request, chat_template,
chat_template_content_format, add_generation_prompt, continue_final_message, tools,
chat_template_kwargs, mm_processor_kwargs)``; ``sampling_params.SamplingParams``; ``outputs.RequestOutput``
/ ``CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs, finish_reason)`` with
``logprobs`` a list of ``dict[token_id, Logprob(logprob, rank, decoded_token)]``), and renders prompts
with a real chat template. The ``gpu`` test at the end runs the real vLLM and is skipped without CUDA."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import polars as pl
import pytest

from curate.errors import MissingExtraError
from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context


# ----------------------------------------------------------------------------- the test double
@dataclass
class Logprob:  # vllm.sequence.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: object = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list
    prompt_logprobs: object
    outputs: list
    finished: bool = True


_SP_FIELDS = {"n", "best_of", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p",
              "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens",
              "logprobs", "prompt_logprobs", "detokenize", "skip_special_tokens", "spaces_between_special_tokens",
              "include_stop_str_in_output", "output_kind", "guided_decoding", "logit_bias", "allowed_token_ids",
              "extra_args", "bad_words", "truncate_prompt_tokens"}
_ENGINE_ARGS = {"model", "tokenizer", "tensor_parallel_size", "dtype", "max_model_len", "gpu_memory_utilization",
                "seed", "trust_remote_code", "logprobs_mode", "max_logprobs", "enable_prefix_caching",
                "enforce_eager", "quantization", "revision"}


class SamplingParams:
    def __init__(self, **kw):
        unknown = set(kw) - _SP_FIELDS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword(s) {unknown}")
        self.__dict__.update({"n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": None, "logprobs": None,
                              "stop": None}, **kw)


class FakeLLM:
    instances: list = []

    def __init__(self, model: str, **kw):
        unknown = set(kw) - _ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs got unexpected keyword(s) {unknown}")
        from curate.train.tiny import make_tokenizer

        self.kw = {"model": model, **kw}
        self.tok = make_tokenizer()
        self.chat_calls: list = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self, lora_request=None):
        return self.tok

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             chat_template_content_format="auto", add_generation_prompt=True, continue_final_message=False,
             tools=None, chat_template_kwargs=None, mm_processor_kwargs=None):
        assert isinstance(messages[0], list) and len(sampling_params) == len(messages)
        self.chat_calls.append((messages, sampling_params, chat_template_kwargs))
        outs = []
        for r, (msgs, sp) in enumerate(zip(messages, sampling_params)):
            prompt = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                  **(chat_template_kwargs or {}))
            p_ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
            comps = []
            for i in range(sp.n):
                text = f"<think>r{sp.seed}</think>ans {i}"
                ids = self.tok(text, add_special_tokens=False)["input_ids"][: sp.max_tokens]
                lps = None
                if sp.logprobs is not None:
                    lps = []
                    for t in ids:  # top-k by rank, plus the sampled token ranked below them
                        d = {1000 + j: Logprob(-0.1 * (j + 1), rank=j + 1, decoded_token="x") for j in range(sp.logprobs)}
                        d[t] = Logprob(-5.0, rank=sp.logprobs + 3, decoded_token="s")
                        lps.append(d)
                fin = "length" if len(ids) == sp.max_tokens else "stop"
                comps.append(CompletionOutput(i, self.tok.decode(ids), ids, None, lps, fin))
            outs.append(RequestOutput(str(r), prompt, p_ids, None, comps[::-1]))  # any order: sorted by index
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    pytest.importorskip("transformers")
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, SamplingParams
    FakeLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def probs(k=3):
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"{i}+{i}" for i in range(k)]})


# ----------------------------------------------------------------------------- tests
def test_vllm_mapping_params_chat_and_logprobs(fake_vllm, tmp_path):
    ctx = Context.for_test(tmp_path)
    cfg = SampleConfig(teacher={"backend": "vllm", "model": "org/teacher", "tensor_parallel_size": 2, "dtype": "bfloat16",
                                "max_model_len": 4096, "gpu_memory_utilization": 0.8, "chunk_size": 2,
                                "chat_template_kwargs": {"enable_thinking": True}},
                       n=2, temperature=0.7, top_p=0.9, max_tokens=64, seed=9, stop=["</answer>"], logprobs=3)
    df = sample_rows(probs(3), cfg, ctx)
    (llm,) = FakeLLM.instances
    assert llm.kw == {"model": "org/teacher", "tensor_parallel_size": 2, "dtype": "bfloat16", "max_model_len": 4096,
                      "gpu_memory_utilization": 0.8, "trust_remote_code": False, "logprobs_mode": "raw_logprobs",
                      "max_logprobs": 20, "seed": 9}
    assert [len(c[0]) for c in llm.chat_calls] == [2, 1]  # chunks of chunk_size, logged after each
    sp = llm.chat_calls[0][1][0]
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed, sp.stop, sp.logprobs) == (2, 0.7, 0.9, 64, 9, ["</answer>"], 3)
    assert llm.chat_calls[0][2] == {"enable_thinking": True}
    assert df.height == 6 and df["sample_index"].to_list() == [0, 1] * 3
    r = df.row(1, named=True)
    assert (r["reasoning"], r["answer_text"], r["finish_reason"]) == ("r9", "ans 1", "stop")
    assert r["topk_ids"][0] == [1000, 1001, 1002]  # by rank; the lower-ranked sampled token left out
    assert r["topk_logprobs"][0] == pytest.approx([-0.1, -0.2, -0.3])
    assert len(r["token_ids"]) == r["completion_tokens"] == len(r["topk_ids"])
    assert r["prompt_tokens"] > 0 and r["tokenizer"].startswith("org/teacher@")
    again = sample_rows(probs(3), cfg, ctx)
    assert len(FakeLLM.instances) == 1 and again.equals(df)  # resumed from the log: vLLM not started


def test_vllm_missing_is_a_one_line_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    cfg = SampleConfig(teacher={"backend": "vllm", "model": "m"})
    with pytest.raises(MissingExtraError) as e:
        sample_rows(probs(1), cfg, Context.for_test(tmp_path))
    assert "pip install 'curate[vllm]'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.gpu
def test_vllm_for_real(tmp_path):
    pytest.importorskip("vllm")
    from curate.train.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny", hidden=64, layers=2, heads=4, max_positions=512)
    cfg = SampleConfig(teacher={"backend": "vllm", "model": str(model), "gpu_memory_utilization": 0.3,
                                "max_model_len": 256, "dtype": "float32"},
                       n=2, max_tokens=16, temperature=1.0, logprobs=5, user_template="{problem}")
    df = sample_rows(probs(4), cfg, Context.for_test(tmp_path))
    assert df.height == 8 and (df["completion_tokens"] == df["token_ids"].list.len()).all()
    assert all(len(x) == 5 for rows in df["topk_ids"] for x in rows)
