"""``backend: openai`` with a real ``vllm serve`` as the teacher (one server for the module): the
reasoning parser's split, n, usage, and top-k logprobs with exact token ids (``token_ids: true``)."""

from __future__ import annotations

import polars as pl
import pytest

from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context
from curate.tokenizer import tokenizer_tag

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # the first test also starts vLLM (~1 min)


def problems(k: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"What is {i} plus {i + 1}?" for i in range(k)]})


def cfg(served, **kw) -> SampleConfig:
    teacher = {"backend": "openai", "model": served.model, "base_url": served.base_url, "token_ids": True,
               "tokenizer": served.model, "max_retries": 0, "concurrency": 4}
    teacher.update(kw.pop("teacher", {}))
    base = {"teacher": teacher, "n": 2, "temperature": 1.0, "top_p": 0.95, "max_tokens": 12, "seed": 7, "user_template": "{problem}"}
    base.update(kw)
    return SampleConfig(**base)


def test_served_topk_ids_are_the_true_topk(served, tmp_path):
    """vLLM's top_logprobs list puts the sampled token first and then cuts at k, so a sampled token
    outside the top-k pushes out the k-th; the rows must still hold the true top-k."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = Context.for_test(tmp_path)
    df = sample_rows(problems(3), cfg(served, logprobs=5), ctx)
    tok = AutoTokenizer.from_pretrained(served.model)
    model = AutoModelForCausalLM.from_pretrained(served.model, dtype=torch.float32).eval()
    assert df.height == 6 and df["tokenizer"].unique().to_list() == [tokenizer_tag(tok, served.model)]
    prompt_len = {}
    for r in df.iter_rows(named=True):
        prompt_ids = tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        prompt_len[r["problem_id"]] = len(prompt_ids)
        ids = r["token_ids"]
        assert r["completion_tokens"] == len(ids) == len(r["topk_ids"]) <= 12
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([prompt_ids + ids])).logits[0, len(prompt_ids) - 1 : -1], -1)
        for pos, (top_ids, top_lps) in enumerate(zip(r["topk_ids"], r["topk_logprobs"])):
            want = ref[pos].topk(5)
            assert top_ids == want.indices.tolist(), (pos, top_ids, want)
            assert torch.allclose(torch.tensor(top_lps), want.values, atol=1e-3)
    usage = ctx.stats["sample"]
    assert usage["completion_tokens"] == sum(len(x) for x in df["token_ids"].to_list())
    assert usage["prompt_tokens"] == sum(prompt_len.values())  # the server's usage: once per request


def test_served_reasoning_split_n_and_seed(served, tmp_path):
    """The deepseek_r1 parser splits at ``</think>`` (made likely with a logit bias); the template prefilled ``<think>``."""
    from transformers import AutoTokenizer

    end = AutoTokenizer.from_pretrained(served.model).convert_tokens_to_ids("</think>")
    c = cfg(served, n=3, max_tokens=16, extra_body={"logit_bias": {str(end): 4.0}})
    df = sample_rows(problems(2), c, Context.for_test(tmp_path / "a"))
    assert df.height == 6 and df["sample_index"].to_list() == [0, 1, 2] * 2
    split = df.filter(pl.col("answer_text") != "")  # reasoning_content ("reasoning") + content after </think>
    assert 1 <= split.height < df.height and (split["reasoning"] != "").all()
    assert not any("</think>" in (r or "") for r in df["reasoning"].to_list())
    assert len(set(df.filter(pl.col("problem_id") == "p0")["reasoning"].to_list())) == 3  # n distinct samples
    again = sample_rows(problems(2), c, Context.for_test(tmp_path / "b"))  # same seed, no shared log
    assert again.select("reasoning", "answer_text").equals(df.select("reasoning", "answer_text"))
