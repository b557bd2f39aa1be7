"""The <think> reasoning is trained in every row that has it, whatever the chat template does with it:
per-row check (not row 0 only) with counts in the run summary, and the real templates of reasoning families
that strip past reasoning, prefill ``<think>\\n`` in the generation prompt and render the BOS themselves
(DeepSeek-R1-Distill as TRL ships it; QwQ-32B from its public tokenizer_config.json) with a tokenizer that adds
a BOS on plain encoding."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from curate.train import run_train  # noqa: E402
from curate.train.data import chat_dataset, encode_chat, end_of_turn, to_prompt_completion  # noqa: E402
from support.tiny import CHAT_TEMPLATE, STRIPPING_TEMPLATE, make_model, make_tokenizer, save_tiny  # noqa: E402

torch.set_num_threads(1)

# DeepSeek-R1-Distill-* (Qwen and Llama checkpoints ship it byte-identically): TRL keeps the original
DEEPSEEK_R1_DISTILL = Path(trl.__file__).parent / "chat_templates" / "deepseek_r1_distill.jinja"
DS_SPECIALS = ("<｜User｜>", "<｜Assistant｜>")
DS_BOS, DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

# Qwen/QwQ-32B tokenizer_config.json "chat_template" (tools branch included): strips the reasoning of every
# assistant turn and prefills "<think>\n" after the generation prompt
QWQ_32B = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- '' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n  {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" and not message.tool_calls %}\n"
    "        {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + content }}\n"
    "        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}\n"
)


def _ds_tokenizer():
    if not DEEPSEEK_R1_DISTILL.exists():
        pytest.skip(f"this TRL does not ship {DEEPSEEK_R1_DISTILL.name}")
    tok = make_tokenizer(chat_template=DEEPSEEK_R1_DISTILL.read_text(), special_tokens=DS_SPECIALS,
                         bos_token=DS_BOS, eos_token=DS_EOS)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # plain encoding adds a BOS, as the real tokenizer does
    return tok


def _rows(n=12, blank_first=True):
    """Quickstart-like rows in curriculum order: the easiest (rank 0) has blank reasoning."""
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        reasoning = "" if (blank_first and i == 0) else f"{a} plus {b} is {a + b}, check: {a + b} - {b} = {a}"
        rows.append({"problem": f"What is {a}+{b}?", "reasoning": reasoning, "answer_text": f"\\boxed{{{a + b}}}",
                     "curriculum_rank": i})
    return rows


def _ds(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def _completion_text(tok, row):
    ids, mask = row["input_ids"], row["completion_mask"]
    start = mask.index(1)
    return tok.decode(ids[:start]), tok.decode(ids[start:])


@pytest.mark.parametrize("template", [STRIPPING_TEMPLATE, QWQ_32B, "deepseek"], ids=["stripping", "qwq", "deepseek"])
def test_every_row_with_reasoning_is_trained_with_it(template):
    tok = _ds_tokenizer() if template == "deepseek" else make_tokenizer(chat_template=template)
    rows = _rows()
    enc, stats = chat_dataset(_ds(rows), tok, 512, "drop")
    assert stats["rows_with_reasoning"] == len(rows) - 1
    assert stats["rows_trained_with_reasoning"] == len(rows) - 1
    for row, src in zip(enc, rows):
        prompt_text, completion = _completion_text(tok, row)
        if src["reasoning"]:
            assert src["reasoning"] in completion
        assert src["answer_text"] in completion
        # trained text = what the model generates after the chat template's own generation prompt
        msgs = [{"role": "user", "content": src["problem"]}]
        gen = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)["input_ids"]
        assert row["input_ids"][: len(gen)] == gen and row["completion_mask"].index(1) == len(gen)
        full = prompt_text + completion
        assert full.count("<think>") == full.count("</think>") == (1 if src["reasoning"] else full.count("<think>"))
        assert full.count("<think>") <= 1, full  # never a second <think>
        assert completion.endswith(end_of_turn(tok))  # the turn is closed: the student learns to stop


def test_deepseek_r1_distill_template_with_a_bos_adding_tokenizer():
    tok = _ds_tokenizer()
    pc = to_prompt_completion({"problem": "What is 2+3?", "reasoning": "2 plus 3 is 5", "answer_text": "\\boxed{5}"})
    e = encode_chat(pc, tok, end_of_turn(tok))
    ids = e["prompt_ids"] + e["completion_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id  # the template's BOS, not a second one
    think = tok.convert_tokens_to_ids("<think>")
    assert ids.count(think) == 1 and e["prompt_ids"][-2:] == [think, tok.convert_tokens_to_ids("\n")]
    assert tok.decode(e["completion_ids"]) == "2 plus 3 is 5\n</think>\n\n\\boxed{5}" + DS_EOS
    assert e["fallback"] and e["kept_reasoning"]
    # a row without reasoning after the prefilled "<think>\n" closes an empty block, as the model does
    pc = to_prompt_completion({"problem": "What is 2+3?", "reasoning": "", "answer_text": "5"})
    e = encode_chat(pc, tok, end_of_turn(tok))
    assert tok.decode(e["completion_ids"]) == "\n</think>\n\n5" + DS_EOS


def test_template_that_keeps_reasoning_renders_it_itself():
    tok = make_tokenizer(chat_template=CHAT_TEMPLATE)
    enc, stats = chat_dataset(_ds(_rows()), tok, 512, "drop")
    assert stats["rows_rendered_outside_template"] == 0 and stats["rows_trained_with_reasoning"] == 11


def test_run_summary_counts_rows_trained_with_reasoning(tmp_path):
    """The issue's case end to end: curriculum order, rank 0 without reasoning, a template that strips it."""
    import yaml

    tok = make_tokenizer(chat_template=STRIPPING_TEMPLATE)
    model_dir = save_tiny(tmp_path / "student", tok, make_model(tok))
    data = tmp_path / "d.parquet"
    _ds(_rows()).to_parquet(str(data))
    body = {"method": "sft", "student": {"model": str(model_dir)}, "dataset": {"path": str(data)},
            "output_dir": str(tmp_path / "out"), "lora": None, "max_length": 256, "max_steps": 2, "batch_size": 4,
            "grad_accum": 1, "save_steps": 100, "optim": {"lr": 1e-3, "warmup_ratio": 0.0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(body))
    summary = json.loads((run_train(tmp_path / "r.yaml") / "train_summary.json").read_text())
    assert summary["curriculum"] is True
    assert summary["rows_with_reasoning"] == 11 and summary["rows_trained_with_reasoning"] == 11
    assert summary["rows_rendered_outside_template"] == 11


def test_online_kd_trains_reasoning_with_a_stripping_template(tmp_path):
    import yaml

    tok = make_tokenizer(chat_template=QWQ_32B)
    student = save_tiny(tmp_path / "student", tok, make_model(tok, seed=1))
    teacher = save_tiny(tmp_path / "teacher", tok, make_model(tok, seed=2))
    data = tmp_path / "d.parquet"
    _ds(_rows(6)).to_parquet(str(data))
    body = {"method": "online_kd", "student": {"model": str(student)}, "dataset": {"path": str(data)},
            "online": {"teacher": str(teacher)}, "output_dir": str(tmp_path / "out"), "lora": None,
            "max_length": 256, "max_steps": 1, "batch_size": 3, "grad_accum": 1, "save_steps": 100}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(body))
    summary = json.loads((run_train(tmp_path / "r.yaml") / "train_summary.json").read_text())
    assert summary["rows_trained_with_reasoning"] == summary["rows_with_reasoning"] == 5
