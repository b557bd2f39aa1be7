"""The transformers backend on a tiny randomly initialised Llama and a character tokenizer built in
the test (support.tiny): real generate, real chat template, raw T=1 top-k logprobs checked
against a teacher-forced forward pass."""

from __future__ import annotations

import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from curate.sampling import SampleConfig, sample_rows  # noqa: E402
from curate.stages.base import Context  # noqa: E402
from support.tiny import save_tiny  # noqa: E402
from curate.tokenizer import tokenizer_hash  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny(tmp_path_factory.mktemp("tiny") / "m", hidden=32, layers=2, heads=2, max_positions=256))


def probs(k=3):
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"{i * 7}+{i}=?" for i in range(k)]})


def test_generate_rows_logprobs_and_resume(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = Context.for_test(tmp_path)
    cfg = SampleConfig(teacher={"backend": "transformers", "model": tiny, "batch_size": 3, "device": "cpu"},
                       n=2, max_tokens=12, temperature=0.8, top_p=0.9, seed=1, logprobs=4, user_template="{problem}")
    df = sample_rows(probs(3), cfg, ctx)
    assert df.height == 6 and df["sample_index"].to_list() == [0, 1] * 3
    assert set(df["finish_reason"].to_list()) <= {"stop", "length"}
    assert (df["completion_tokens"] == df["token_ids"].list.len()).all()
    assert (df["completion_tokens"] <= 12).all() and (df["prompt_tokens"] > 0).all()
    tok = AutoTokenizer.from_pretrained(tiny)
    assert df["tokenizer"][0] == f"{tiny}@{tokenizer_hash(tok)}"
    # the stored top-k are the raw T=1 distribution: recompute with a teacher-forced forward pass
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    r = df.row(0, named=True)
    prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + r["token_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    for t in range(len(r["token_ids"])):
        step = lp[len(p_ids) - 1 + t]
        ids, vals = r["topk_ids"][t], r["topk_logprobs"][t]
        # the stored ids carry their T=1 log-probs, and they are the top 4 (robust to near-ties)
        assert step[ids].tolist() == pytest.approx(vals, abs=1e-4)
        assert vals == sorted(vals, reverse=True)
        assert vals[-1] >= step.topk(5).values[-1].item() - 1e-4
        assert vals[0] == pytest.approx(step.max().item(), abs=1e-4)
    text = tok.decode(r["token_ids"], skip_special_tokens=False)
    for special in set(tok.all_special_tokens) - {"<think>", "</think>"}:  # as the backend cleans the text
        text = text.replace(special, "")
    assert (r["reasoning"] or "") in text and (r["answer_text"] or "") in text
    # resume: everything comes from the log (the model is not even loaded) and the rows are equal
    again = sample_rows(probs(3), cfg, ctx)
    assert ctx.stats["sample"]["sent_ok"] == 0 and again.equals(df)


def test_greedy_is_deterministic_and_length_finish(tiny, tmp_path):
    cfg = SampleConfig(teacher={"backend": "transformers", "model": tiny, "device": "cpu"}, n=1, max_tokens=5,
                       temperature=0, user_template="{problem}")
    a = sample_rows(probs(2), cfg, Context.for_test(tmp_path / "a"))
    b = sample_rows(probs(2), cfg, Context.for_test(tmp_path / "b"))
    assert a["answer_text"].to_list() == b["answer_text"].to_list()
    assert all(fr == "length" or c < 5 for fr, c in zip(a["finish_reason"], a["completion_tokens"]))
    assert "token_ids" not in a.columns  # no logprobs asked


def test_bad_model_path_is_one_line(tmp_path):
    from curate.errors import BackendError

    cfg = SampleConfig(teacher={"backend": "transformers", "model": str(tmp_path / "nope")})
    with pytest.raises(BackendError) as e:
        sample_rows(probs(1), cfg, Context.for_test(tmp_path))
    assert "teacher.model" in str(e.value) and "\n" not in str(e.value)


def test_template_that_prefills_think(tmp_path):
    """A chat template ending in <think> (DeepSeek-R1 distills, Qwen3): the output starts inside the
    think block; without a </think> it is all reasoning (a truncated trace), never an answer."""
    from support.tiny import CHAT_TEMPLATE, make_tokenizer

    tok = make_tokenizer(chat_template=CHAT_TEMPLATE.replace("assistant\n", "assistant\n<think>\n"))
    path = str(save_tiny(tmp_path / "prefill", tokenizer=tok, hidden=32, layers=2, heads=2, max_positions=256))
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<think>\n")
    cfg = SampleConfig(teacher={"backend": "transformers", "model": path, "device": "cpu"}, n=2, max_tokens=6,
                       temperature=1.0, user_template="{problem}", logprobs=1)
    df = sample_rows(probs(2), cfg, Context.for_test(tmp_path))
    unclosed = 0
    for r in df.iter_rows(named=True):
        raw = tok.decode(r["token_ids"], skip_special_tokens=False)
        for special in set(tok.all_special_tokens) - {"<think>", "</think>"}:
            raw = raw.replace(special, "")
        def opened(x: str) -> str:  # a re-emitted opening tag is the same think block
            x = x.strip()
            return x[len("<think>"):].strip() if x.startswith("<think>") else x

        if "</think>" not in raw:
            unclosed += 1
            assert (r["reasoning"], r["answer_text"]) == (opened(raw), "")
        else:
            head, tail = raw.split("</think>", 1)
            assert (r["reasoning"], r["answer_text"]) == (opened(head), tail.strip())
    assert unclosed >= 1


def test_greedy_with_several_samples_repeats_the_one_greedy_answer(tiny, tmp_path):
    """Greedy decoding cannot return n different sequences (transformers refuses num_return_sequences
    without beams): the backend decodes once and gives every sample that answer."""
    cfg = SampleConfig(teacher={"backend": "transformers", "model": tiny, "device": "cpu"}, n=3, max_tokens=5,
                       temperature=0, user_template="{problem}", logprobs=2)
    df = sample_rows(probs(2), cfg, Context.for_test(tmp_path))
    assert df.height == 6 and set(df["finish_reason"]) <= {"stop", "length"}
    for pid in ("p0", "p1"):
        rows = df.filter(pl.col("problem_id") == pid)
        assert rows["sample_index"].to_list() == [0, 1, 2]
        assert rows["token_ids"].to_list()[0] == rows["token_ids"].to_list()[1] == rows["token_ids"].to_list()[2]
