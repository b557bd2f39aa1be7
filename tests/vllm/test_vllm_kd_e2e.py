"""End to end through the CLI: ``curate run`` samples with top-k logprobs from a served vLLM
(``backend: openai``) and from the in-process engine (``backend: vllm``), publishes, and ``curate train``
with ``method: kd`` consumes the stored top-k: the tokenizer check passes (the teacher's tiny tokenizer
is the student's) and the loss is finite and drops; a student with another tokenizer is refused in one line."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import yaml
from tiny_vllm import make_tokenizer, save_tiny_qwen2
from typer.testing import CliRunner

from curate.backends import vllm_offline

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # the first test also starts vLLM (~1 min)


@pytest.fixture(scope="module", autouse=True)
def _release_engine():
    yield
    vllm_offline.release()


def recipe(root, name: str, teacher: dict) -> dict:
    return {
        "name": name, "version": "0.1.0", "description": "tiny vLLM teacher with top-k logprobs", "license": "cc0-1.0",
        "seed": 3,
        "sources": [{"kind": "file", "path": str(root / "problems.jsonl"), "fields": {"problem": "question", "gold_answer": "answer"}}],
        "stages": [{"type": "sample", "teacher": teacher, "n": 2, "temperature": 1.0, "top_p": 1.0, "max_tokens": 24,
                    "logprobs": 5, "user_template": "{problem}"}],
        "output": {"dir": str(root / "out"), "formats": ["messages"]},
    }


def kd_recipe(data, student, out) -> dict:
    return {"method": "kd", "student": {"model": str(student)}, "dataset": {"path": str(data)},
            "output_dir": str(out), "lora": None, "max_length": 64, "gradient_checkpointing": True,
            "optim": {"lr": 1e-2, "schedule": "constant", "warmup_ratio": 0.0},
            "max_steps": 8, "batch_size": 4, "grad_accum": 1, "logging_steps": 1, "save_steps": 1000,
            "kd": {"ce_weight": 0.0, "temperature": 1.0, "chunk_size": 16}}


@pytest.fixture(scope="module")
def published(served, tiny_teacher, tmp_path_factory):
    """Two published versions: sampled from ``vllm serve`` and from the in-process engine."""
    from curate.cli import app

    root = tmp_path_factory.mktemp("kd-e2e")
    rows = [{"question": f"What is {i} plus {i + 2}?", "answer": str(2 * i + 2)} for i in range(8)]
    (root / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    teachers = {
        "served": {"backend": "openai", "model": served.model, "base_url": served.base_url, "token_ids": True,
                   "tokenizer": served.model, "max_retries": 0},
        "inproc": {"backend": "vllm", "model": str(tiny_teacher), "dtype": "float32", "max_model_len": 512, "gpu_memory_utilization": 0.25,
                   "engine_kwargs": {"enforce_eager": True}},
    }
    out = {}
    runner = CliRunner()
    for name, teacher in teachers.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(recipe(root, name, teacher)))
        res = runner.invoke(app, ["run", str(root / f"{name}.yaml")], env={"CURATE_HOME": str(root / ".curate")})
        assert res.exit_code == 0, res.output
        out[name] = root / "out" / name / "0.1.0"
    return root, out


@pytest.mark.parametrize("which", ["served", "inproc"])
def test_kd_trains_on_vllm_topk(published, tiny_teacher, which):
    from curate.cli import app

    root, out = published
    train = pl.read_parquet(next((out[which] / "data").glob("train-*.parquet")))
    assert train.height == 16 and {"token_ids", "topk_ids", "topk_logprobs", "tokenizer"} <= set(train.columns)
    assert all(len(t) == 5 for ids in train["topk_ids"].to_list() for t in ids)
    student = save_tiny_qwen2(root / f"student-{which}", tokenizer=make_tokenizer(), seed=1)  # same tokenizer, new weights
    path = root / f"kd-{which}.yaml"
    path.write_text(yaml.safe_dump(kd_recipe(out[which], student, root / "runs" / which)))
    res = CliRunner().invoke(app, ["train", str(path)])
    assert res.exit_code == 0, res.output
    summary = json.loads((root / "runs" / which / "train_summary.json").read_text())
    first, last = summary["first_logged_loss"], summary["last_logged_loss"]
    assert math.isfinite(first) and math.isfinite(last) and last < first, summary


def test_student_with_another_tokenizer_is_refused_in_one_line(published):
    from curate.cli import app

    root, out = published
    other = save_tiny_qwen2(root / "student-other", tokenizer=make_tokenizer(vocab_size=400), seed=1)
    path = root / "kd-other.yaml"
    path.write_text(yaml.safe_dump(kd_recipe(out["served"], other, root / "runs" / "other")))
    res = CliRunner().invoke(app, ["train", str(path)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "tokenizer" in lines[0] and "hashes to" in lines[0], res.output
