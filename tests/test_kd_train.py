"""Offline top-k KD moves a tiny student toward a tiny teacher; tokenizer checks; online KD via TRL GKD."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from curate.errors import SourceError  # noqa: E402
from curate.train import run_train, tokenizer_hash, tokenizer_tag  # noqa: E402
from curate.train.kd import teacher_topk  # noqa: E402
from support.tiny import make_model, make_tokenizer, save_tiny  # noqa: E402

torch.set_num_threads(1)
K = 32


def _prompt(i):
    return [{"role": "user", "content": f"{i % 7}*{i % 5}+{i}?"}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("kd")
    tok = make_tokenizer()
    teacher = make_model(tok, seed=1).eval()
    teacher_dir = save_tiny(root / "teacher", tok, teacher)
    # student: other init, lm_head padded past the tokenizer (like 151,936 vs 152,064)
    student_dir = save_tiny(root / "student", tok, make_model(tok, seed=2, vocab_size=len(tok) + 5))
    rows = []
    gen = torch.Generator().manual_seed(0)
    for i in range(24):
        prompt_ids = tok.apply_chat_template(_prompt(i), tokenize=True, add_generation_prompt=True)["input_ids"]
        ids = torch.tensor(prompt_ids)
        with torch.no_grad():
            for _ in range(20):  # sample 20 completion tokens from the teacher
                probs = torch.softmax(teacher(input_ids=ids[None]).logits[0, -1], -1)
                ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)])
        top_ids, top_lps = teacher_topk(teacher, ids, len(prompt_ids), K)
        rows.append({
            "prompt": _prompt(i), "token_ids": ids[len(prompt_ids):].tolist(),
            "topk_ids": top_ids, "topk_logprobs": top_lps, "tokenizer": tokenizer_tag(tok, "tiny-char"),
        })
    data = root / "kd.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(data))
    return root, tok, teacher, teacher_dir, student_dir, rows, data


def _recipe(root, student_dir, data, name, method="kd", **extra):
    import yaml

    body = {
        "method": method, "student": {"model": str(student_dir)}, "dataset": {"path": str(data)},
        "output_dir": str(root / "runs" / name), "lora": None, "max_length": 64,
        "optim": {"lr": 1e-2, "schedule": "constant", "warmup_ratio": 0.0},
        "max_steps": 36, "batch_size": 6, "grad_accum": 2, "logging_steps": 6, "save_steps": 1000,
        **extra,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@torch.no_grad()
def _kl_to_teacher(model, teacher, tok, rows):
    """Mean full-vocabulary KL(teacher || student) over the completion positions."""
    total, n = 0.0, 0
    for r in rows:
        p_ids = tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True)["input_ids"]
        ids = torch.tensor(p_ids + r["token_ids"])[None]
        sl = slice(len(p_ids) - 1, ids.shape[1] - 1)
        t = torch.log_softmax(teacher(input_ids=ids).logits[0, sl], -1)
        s = torch.log_softmax(model(input_ids=ids).logits[0, sl, : t.shape[-1]], -1)
        total += (t.exp() * (t - s)).sum().item()
        n += t.shape[0]
    return total / n


def test_offline_kd_moves_student_toward_teacher(setup):
    from transformers import AutoModelForCausalLM

    root, tok, teacher, _, student_dir, rows, data = setup
    before = _kl_to_teacher(AutoModelForCausalLM.from_pretrained(str(student_dir)).eval(), teacher, tok, rows)
    out = run_train(_recipe(root, student_dir, data, "kd", max_steps=36, kd={"ce_weight": 0.0, "temperature": 1.0, "chunk_size": 16}))
    after = _kl_to_teacher(AutoModelForCausalLM.from_pretrained(str(out)).eval(), teacher, tok, rows)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_steps"] == 36
    print(f"offline KD: KL(teacher||student) {before:.4f} -> {after:.4f}")
    assert after <= 0.5 * before, (before, after)


def test_tokenizer_mismatch_is_a_clear_error(setup, tmp_path):
    import datasets

    root, tok, _, _, student_dir, rows, _ = setup
    other = make_tokenizer(extra_chars="\u00e9")
    assert tokenizer_hash(other) != tokenizer_hash(tok)
    bad = tmp_path / "bad.parquet"
    datasets.Dataset.from_list([dict(r, tokenizer=tokenizer_tag(other, "other")) for r in rows]).to_parquet(str(bad))
    with pytest.raises(SourceError) as e:
        run_train(_recipe(tmp_path, student_dir, bad, "bad"))
    msg = str(e.value)
    assert "tokenizer" in msg and "other@" in msg and tokenizer_hash(tok) in msg and "\n" not in msg
    # ids beyond the student's vocabulary are refused even without the hash check
    big = tmp_path / "big.parquet"
    datasets.Dataset.from_list([dict(r, topk_ids=[[len(tok) + 50] * K] * len(r["topk_ids"])) for r in rows]).to_parquet(str(big))
    with pytest.raises(SourceError, match="outside the student's vocabulary"):
        run_train(_recipe(tmp_path, student_dir, big, "big", kd={"check_tokenizer": False}))
    # rows without the logprob columns
    plain = tmp_path / "plain.parquet"
    datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": "x", "tokenizer": r["tokenizer"]} for r in rows]).to_parquet(str(plain))
    with pytest.raises(SourceError, match="token_ids"):
        run_train(_recipe(tmp_path, student_dir, plain, "plain"))


def test_tokenizer_hash_needs_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from curate.train import tokenizer_hash; from curate.train.config import TrainRecipe; "
        "print(tokenizer_hash({'a': 0, 'b': 1})); assert 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(out.stdout.strip()) == 16


def test_online_kd_with_trl_gkd(setup):
    from transformers import AutoModelForCausalLM

    root, tok, teacher, teacher_dir, student_dir, rows, _ = setup  # student lm_head padded by 5 rows
    import datasets

    text_rows = [{"prompt": r["prompt"], "completion": tok.decode(r["token_ids"])} for r in rows[:12]]
    data = root / "online.parquet"
    datasets.Dataset.from_list(text_rows).to_parquet(str(data))
    before = _kl_to_teacher(AutoModelForCausalLM.from_pretrained(str(student_dir)).eval(), teacher, tok, rows[:12])
    out = run_train(_recipe(
        root, student_dir, data, "online", method="online_kd", max_steps=12,
        online={"teacher": str(teacher_dir), "divergence": "forward_kl", "temperature": 1.0},
    ))
    after = _kl_to_teacher(AutoModelForCausalLM.from_pretrained(str(out)).eval(), teacher, tok, rows[:12])
    print(f"online KD: KL(teacher||student) {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, (before, after)


def test_online_kd_on_policy_jsd_runs(setup):
    import datasets

    root, tok, _, teacher_dir, student_dir, rows, _ = setup
    data = root / "online2.parquet"
    datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": "x"} for r in rows[:6]]).to_parquet(str(data))
    out = run_train(_recipe(
        root, student_dir, data, "online-jsd", method="online_kd", max_steps=2, batch_size=3, grad_accum=1,
        online={"teacher": str(teacher_dir), "divergence": "jsd", "beta": 0.5, "lmbda": 1.0, "max_new_tokens": 6,
                "temperature": 2.0},
    ))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_steps"] == 2 and summary["train_loss"] > 0


def test_offline_kd_with_lora_and_resume(setup):
    root, _, _, _, student_dir, _, data = setup
    path = _recipe(root, student_dir, data, "kd-lora", lora={"r": 4, "alpha": 8}, max_steps=2, save_steps=2,
                   batch_size=4, grad_accum=1, curriculum={"mode": "off"})
    out = run_train(path)
    assert (out / "adapter_config.json").exists() and (out / "checkpoint-2").is_dir()
    # resume: true continues from checkpoint-2 up to the new max_steps
    out = run_train(path, ["resume=true", "max_steps=3"])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_steps"] == 3
