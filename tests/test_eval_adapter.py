"""`curate eval` with a base model + LoRA adapter: merged with peft once, cached, used as the model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch  # noqa: E402
import yaml  # noqa: E402

from curate.errors import RecipeError  # noqa: E402
from curate.eval.adapter import merged_model_dir  # noqa: E402
from curate.eval.config import EvalRecipe  # noqa: E402
from curate.eval.run import with_adapter  # noqa: E402
from curate.stages.base import Context  # noqa: E402
from curate.yamlio import load_yaml_model  # noqa: E402


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from support.tiny import save_tiny

    root = tmp_path_factory.mktemp("lora")
    base = save_tiny(root / "base", hidden=32, layers=1, heads=2)
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(str(root / "adapter"))
    return root, base, root / "adapter"


def _logits(path_or_model, ids):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(path_or_model)) if not isinstance(path_or_model, torch.nn.Module) else path_or_model
    with torch.no_grad():
        return m.eval()(ids).logits


def test_merge_matches_the_adapter_and_is_cached(base_and_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, base, adapter = base_and_adapter
    merged = merged_model_dir(str(base), adapter, tmp_path / "work")
    assert merged.parent == tmp_path / "work" / "merged" and (merged / "tokenizer_config.json").is_file()
    ids = torch.tensor([[5, 17, 30, 42, 8, 11]])
    with_lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter))
    want = _logits(with_lora, ids)
    got = _logits(merged, ids)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, _logits(base, ids), atol=1e-3)  # the adapter does change the model
    stamp = (merged / "config.json").stat().st_mtime_ns
    assert merged_model_dir(str(base), adapter, tmp_path / "work") == merged
    assert (merged / "config.json").stat().st_mtime_ns == stamp  # reused, not merged again


def _recipe(tmp_path, backend: str, adapter: str) -> EvalRecipe:
    teacher = {"backend": backend, "model": "base"}
    if backend == "openai":
        teacher["base_url"] = "http://127.0.0.1:1/v1"
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"name": "lora", "benchmark": "gsm8k", "sampling": {"teacher": teacher},
                                    "adapter": adapter}))
    return path


def test_with_adapter_points_the_backend_at_the_merged_model(base_and_adapter):
    root, base, adapter = base_and_adapter
    path = _recipe(root, "transformers", "adapter")  # relative to the recipe's folder
    recipe = load_yaml_model(path, EvalRecipe)
    ctx = Context.for_test(root)
    sampling = with_adapter(recipe, ctx, path)
    assert sampling.teacher.model == str(merged_model_dir(str(base), adapter, ctx.work_dir))
    assert sampling.n == recipe.sampling.n and recipe.sampling.teacher.model == "base"


def test_adapter_errors_are_one_line(base_and_adapter, tmp_path):
    root, base, adapter = base_and_adapter
    with pytest.raises(RecipeError, match=r"eval.yaml:\d+: adapter: .*OpenAI-compatible endpoint serves its own"):
        load_yaml_model(_recipe(tmp_path, "openai", "adapter"), EvalRecipe)
    with pytest.raises(RecipeError, match=r"adapter: .*nope: no such folder"):
        merged_model_dir(str(base), tmp_path / "nope", tmp_path / "work")
    with pytest.raises(RecipeError, match=r"no adapter_config.json"):
        merged_model_dir(str(base), base, tmp_path / "work")
    with pytest.raises(RecipeError, match=r"sampling.teacher.model: cannot load base model"):
        merged_model_dir(str(tmp_path / "missing-base"), adapter, tmp_path / "work")


def test_eval_end_to_end_with_transformers_backend_and_adapter(base_and_adapter, tmp_path, monkeypatch):
    """Base vs base + LoRA through curate eval (real generate on a tiny model), then compare."""
    import json

    import polars as pl

    from curate.eval import compare_runs, run_eval

    root, base, adapter = base_and_adapter
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    (tmp_path / "bench.jsonl").write_text(
        "".join(json.dumps({"q": f"{i}+{i}=?", "a": str(2 * i)}) + "\n" for i in range(4))
    )
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny-lora",
        "benchmark": {"kind": "file", "path": "bench.jsonl", "fields": {"problem": "q", "gold_answer": "a"}},
        "sampling": {"teacher": {"backend": "transformers", "model": str(base), "device": "cpu"},
                     "n": 1, "temperature": 0.0, "max_tokens": 8, "user_template": "{problem}"},
        "adapter": str(adapter),
        "verify": {"num_proc": 0},
        "metrics": {"pass_k": [1], "maj_k": [1], "n_boot": 200},
    }))
    with_lora = run_eval(recipe, output=tmp_path / "lora")
    plain = run_eval(recipe, ["adapter=null"], output=tmp_path / "base")
    res = json.loads((with_lora / "results.json").read_text())
    assert res["model"]["adapter"] == str(adapter) and res["summary"]["n_samples"] == 4
    a = pl.read_parquet(with_lora / "samples.parquet")
    b = pl.read_parquet(plain / "samples.parquet")
    assert a["teacher"][0] != b["teacher"][0] and "merged" in a["teacher"][0]
    assert a["answer_text"].to_list() != b["answer_text"].to_list()  # greedy: the adapter changed the outputs
    md = compare_runs(plain, with_lora, n_boot=200)
    assert "Paired over 4 common problems" in md and "| pass@1 |" in md
