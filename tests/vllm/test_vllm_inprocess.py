"""``backend: vllm`` against the real in-process vLLM engine (one engine for the whole module):
chat template with the ``<think>`` prefill, n, seeds, temperature/top_p, max_tokens, stop,
finish_reason, token usage, and raw top-k logprobs with exact token ids (checked against a
transformers forward pass of the same weights)."""

from __future__ import annotations

import polars as pl
import pytest

from curate.backends import vllm_offline
from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context
from curate.tokenizer import tokenizer_tag

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # the first test also starts vLLM (~1 min)


@pytest.fixture(scope="module", autouse=True)
def _one_engine():
    yield
    vllm_offline.release()


def problems(k: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"What is {i} plus {i + 1}?" for i in range(k)]})


def cfg(model, **kw) -> SampleConfig:
    base = {"teacher": {"backend": "vllm", "model": str(model), "dtype": "float32", "max_model_len": 512, "gpu_memory_utilization": 0.25,
                         "engine_kwargs": {"enforce_eager": True}},
                "n": 2, "temperature": 1.0, "top_p": 0.95, "max_tokens": 12, "seed": 7, "user_template": "{problem}"}
    base.update(kw)
    return SampleConfig(**base)


def test_rows_usage_prefill_and_exact_topk_ids(tiny_teacher, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = Context.for_test(tmp_path)
    df = sample_rows(problems(3), cfg(tiny_teacher, logprobs=5, temperature=0.7), ctx)
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    assert df.height == 6 and df["sample_index"].to_list() == [0, 1] * 3
    assert df["tokenizer"].unique().to_list() == [tokenizer_tag(tok, str(tiny_teacher))]
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher, dtype=torch.float32).eval()
    for r in df.iter_rows(named=True):
        prompt_ids = tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        assert r["prompt_tokens"] == len(prompt_ids)  # the model's own template, with "<think>\n"
        assert tok.decode(prompt_ids).endswith("<think>\n")
        ids = r["token_ids"]
        assert r["completion_tokens"] == len(ids) == len(r["topk_ids"]) == len(r["topk_logprobs"]) <= 12
        assert r["finish_reason"] == ("length" if len(ids) == 12 else "stop")
        # the prefilled think block is restored: an unclosed trace is all reasoning
        if "</think>" not in tok.decode(ids, skip_special_tokens=False):
            assert r["answer_text"] == "" and r["reasoning"] == tok.decode(ids).strip()
        # raw (T=1) top-k, ranked, with the ids of the teacher's own vocabulary
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + ids])).logits[0, len(prompt_ids) - 1 : -1].float()
        ref = torch.log_softmax(logits, -1)
        for pos, (top_ids, top_lps) in enumerate(zip(r["topk_ids"], r["topk_logprobs"])):
            assert len(top_ids) == 5 and top_lps == sorted(top_lps, reverse=True)
            got = ref[pos, top_ids]
            assert torch.allclose(got, torch.tensor(top_lps), atol=0.08), (pos, top_ids, got, top_lps)
            assert ref[pos].topk(5).values[-1] <= max(top_lps[-1] + 0.08, top_lps[-1])  # nothing better was left out
    # samples of one request differ (seed + index per sample); usage is in the stage's stats
    ids = df["token_ids"].to_list()
    assert ids[0] != ids[1]
    usage = ctx.stats["sample"]
    assert usage["completion_tokens"] == sum(len(x) for x in ids)
    assert usage["prompt_tokens"] == sum(df.filter(pl.col("sample_index") == 0)["prompt_tokens"])  # once per request


def test_same_seed_same_samples_other_seed_differs(tiny_teacher, tmp_path):
    a = sample_rows(problems(2), cfg(tiny_teacher), Context.for_test(tmp_path / "a"))
    b = sample_rows(problems(2), cfg(tiny_teacher), Context.for_test(tmp_path / "b"))  # no shared log
    c = sample_rows(problems(2), cfg(tiny_teacher, seed=8), Context.for_test(tmp_path / "c"))
    cols = ["problem_id", "sample_index", "reasoning", "answer_text", "finish_reason", "completion_tokens"]
    assert a.select(cols).equals(b.select(cols))
    assert a["reasoning"].to_list() != c["reasoning"].to_list()
    # a lower temperature / top_p changes what is sampled for the same seed
    d = sample_rows(problems(2), cfg(tiny_teacher, temperature=0.3, top_p=0.5), Context.for_test(tmp_path / "d"))
    assert a["reasoning"].to_list() != d["reasoning"].to_list()


def test_stop_string_and_max_tokens(tiny_teacher, tmp_path):
    free = sample_rows(problems(1), cfg(tiny_teacher, n=1, max_tokens=24), Context.for_test(tmp_path / "free"))
    text = free["reasoning"][0]
    assert free["finish_reason"][0] == "length" and free["completion_tokens"][0] == 24
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip() and text.index(stop) > 0
    cut = sample_rows(problems(1), cfg(tiny_teacher, n=1, max_tokens=24, stop=[stop]), Context.for_test(tmp_path / "cut"))
    assert cut["finish_reason"][0] == "stop"
    assert cut["reasoning"][0] == text[: text.index(stop)].strip()
    assert cut["completion_tokens"][0] < 24
