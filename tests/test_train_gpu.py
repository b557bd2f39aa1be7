"""bf16 SFT + offline KD smoke on a CUDA device (skipped without one); prints tokens/s."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_sft_and_kd_smoke(tmp_path):
    import datasets
    import yaml

    from curate.train import run_train, tokenizer_tag
    from curate.train.kd import teacher_topk
    from support.tiny import make_model, make_tokenizer, save_tiny

    tok = make_tokenizer()
    teacher = make_model(tok, hidden=256, layers=4, seed=1).eval()
    student_dir = save_tiny(tmp_path / "student", tok, make_model(tok, hidden=256, layers=4, seed=2))
    rows = []
    for i in range(64):
        prompt = [{"role": "user", "content": f"{i}+{i}?"}]
        answer = f"<think>\n{i}+{i}={2 * i}\n</think>\n\n{2 * i}" * 4
        p = tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)["input_ids"]
        comp = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids, lps = teacher_topk(teacher, torch.tensor(p + comp), len(p), 20)
        rows.append({"prompt": prompt, "completion": answer, "token_ids": comp, "topk_ids": ids,
                     "topk_logprobs": lps, "tokenizer": tokenizer_tag(tok)})
    data = tmp_path / "d.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(data))
    for method, precision in (("sft", "auto"), ("kd", "auto"), ("kd", "fp16")):
        dtype = "float32" if precision == "fp16" else "bfloat16"  # fp16 AMP keeps fp32 master weights
        body = {"method": method, "student": {"model": str(student_dir), "dtype": dtype},
                "mixed_precision": precision, "dataset": {"path": str(data)},
                "output_dir": str(tmp_path / f"{method}-{precision}"), "max_length": 512,
                "max_steps": 20, "batch_size": 8, "grad_accum": 1, "logging_steps": 5}
        path = tmp_path / f"{method}-{precision}.yaml"
        path.write_text(yaml.safe_dump(body))
        summary = json.loads((run_train(path) / "train_summary.json").read_text())
        print(f"{method} {precision} ({dtype} weights) on {torch.cuda.get_device_name()}: {summary['tokens_per_second']:.0f} tokens/s")
        assert summary["global_steps"] == 20 and summary["last_logged_loss"] < summary["first_logged_loss"]
