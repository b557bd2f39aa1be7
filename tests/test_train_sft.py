"""SFT through TRL on a tiny random Llama: loss falls, prompt tokens carry no loss, <think> reasoning is
trained, curriculum order is followed, LoRA merge keeps the logits."""

import json
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from curate.errors import CurateError, RecipeError, SourceError  # noqa: E402
from curate.train import merge_lora, run_train  # noqa: E402
from curate.train.config import TrainRecipe  # noqa: E402
from curate.train.data import apply_curriculum, curriculum_order, load_rows  # noqa: E402
from support.tiny import STRIPPING_TEMPLATE, make_tokenizer, save_tiny  # noqa: E402

torch.set_num_threads(1)


def _rows(n=16, seed=0):
    rng = random.Random(seed)
    rows = []
    ranks = list(range(n))
    rng.shuffle(ranks)
    pairs = rng.sample([(a, b) for a in range(1, 10) for b in range(1, 10)], n)  # distinct texts
    for i, (a, b) in enumerate(pairs):
        rows.append({
            "messages": [
                {"role": "user", "content": f"{a}+{b}?"},
                {"role": "assistant", "content": f"<think>\n{a}+{b}={a + b}\n</think>\n\n{a + b}"},
            ],
            "curriculum_rank": ranks[i],
            "curriculum_stage": "easy" if ranks[i] < n // 2 else "hard",
            "row": i,
        })
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("sft")
    model_dir = save_tiny(root / "student")
    version = root / "set" / "v1"
    (version / "data").mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    datasets.Dataset.from_list(_rows()).to_parquet(str(version / "data" / "train-00000-of-00001.parquet"))
    return root, model_dir, version


def _recipe(root, model_dir, data, name, **extra):
    body = {
        "method": "sft",
        "student": {"model": str(model_dir)},
        "dataset": {"path": str(data)},
        "output_dir": str(root / "runs" / name),
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "max_length": 128,
        "optim": {"lr": 1e-2, "schedule": "constant", "warmup_ratio": 0.0},
        "max_steps": 30,
        "batch_size": 8,
        "grad_accum": 1,
        "logging_steps": 5,
        "save_steps": 1000,
        **extra,
    }
    path = root / f"{name}.yaml"
    import yaml

    path.write_text(yaml.safe_dump(body))
    return path


def _build(root, model_dir, version, curriculum=None, template=None):
    from curate.train.common import load_student
    from curate.train.data import sft_dataset
    from curate.train.sft import build_sft_trainer

    extra = {"curriculum": curriculum} if curriculum else {}
    recipe = TrainRecipe.model_validate(
        {"student": {"model": str(model_dir)}, "dataset": {"path": str(version)}, "output_dir": str(root / "x"),
         "max_length": 128, "batch_size": 4, **extra}
    )
    tok = make_tokenizer(chat_template=template) if template else make_tokenizer()
    ds, cur = apply_curriculum(load_rows(recipe.dataset), recipe.curriculum, recipe.seed)
    train_ds, fmt, _ = sft_dataset(ds, tok, max_length=recipe.max_length)
    trainer = build_sft_trainer(recipe, load_student(recipe), tok, train_ds, curriculum=cur)
    trainer.data_format = fmt
    return trainer, tok, ds


def test_sft_trains_loss_falls_and_saves(tiny, monkeypatch):
    root, model_dir, version = tiny
    monkeypatch.setenv("STUDENT_TOKEN", str(model_dir))  # a secret-looking variable: never written out
    path = _recipe(root, model_dir, version, "sft", merge=True)
    path.write_text(path.read_text().replace(f"model: {model_dir}", "model: ${STUDENT_TOKEN}"))
    out = run_train(path)
    text = (out / "train_summary.json").read_text()
    summary = json.loads(text)
    assert summary["recipe"]["student"]["model"] == "${STUDENT_TOKEN}" and str(model_dir) not in text
    assert summary["global_steps"] == 30 and summary["curriculum"] is True
    assert summary["last_logged_loss"] < 0.7 * summary["first_logged_loss"], summary
    assert (out / "adapter_config.json").exists()
    # merged model gives the same logits as base + adapter
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    merged_dir = out / "merged"
    assert summary["merged_dir"] == str(merged_dir)
    ids = torch.tensor([[1, 20, 30, 40, 2, 7, 1, 50]])
    with torch.no_grad():
        a = AutoPeftModelForCausalLM.from_pretrained(str(out)).eval()(input_ids=ids).logits
        b = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, base, atol=1e-3)  # the adapter did change the model
    again = merge_lora(out, root / "merged2")
    assert (again / "config.json").exists()


def test_prompt_tokens_carry_no_loss_and_reasoning_is_trained(tiny):
    root, model_dir, version = tiny
    for template in (None, STRIPPING_TEMPLATE):
        trainer, tok, ds = _build(root, model_dir, version, template=template)
        assert trainer.data_format == ("conversational" if template is None else "text")
        think = tok.convert_tokens_to_ids("<think>")
        for ex, row in zip(trainer.train_dataset, ds):
            prompt = tok.apply_chat_template(row["messages"][:1], tokenize=True, add_generation_prompt=True)["input_ids"]
            labels, ids = ex["labels"], ex["input_ids"]
            assert ids[: len(prompt)] == prompt
            assert all(x == -100 for x in labels[: len(prompt)])  # prompt: no loss
            assert labels[len(prompt):] == ids[len(prompt):]  # completion: all trained
            assert labels[len(prompt)] == think  # the reasoning is in the trained text
            answer = row["messages"][1]["content"]
            assert tok.decode(labels[len(prompt):]).startswith(answer)
    # the collated batch the model sees keeps the mask
    batch = next(iter(trainer.get_train_dataloader()))
    first = batch["labels"][0]
    assert (first[:5] == -100).all() and (first != -100).any()


def _seen_rows(trainer, tok, ds):
    by_text = {tok.apply_chat_template(r["messages"], tokenize=False): r for r in ds}
    seen = []
    for batch in trainer.get_train_dataloader():
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            text = tok.decode(ids[mask.bool()].tolist())
            seen.append(by_text[text])
    return seen


def test_data_order_follows_curriculum_rank(tiny):
    root, model_dir, version = tiny
    trainer, tok, ds = _build(root, model_dir, version)
    assert trainer.curriculum
    seen = _seen_rows(trainer, tok, ds)
    assert [r["curriculum_rank"] for r in seen] == list(range(16))
    # shuffled inside stages: stages stay in order, ranks inside a stage do not
    trainer, tok, ds = _build(root, model_dir, version, curriculum={"shuffle_within_stage": True})
    seen = _seen_rows(trainer, tok, ds)
    stages = [r["curriculum_stage"] for r in seen]
    assert stages == ["easy"] * 8 + ["hard"] * 8
    assert [r["curriculum_rank"] for r in seen] != list(range(16))
    # curriculum off: the Trainer's random order
    trainer, tok, ds = _build(root, model_dir, version, curriculum={"mode": "off"})
    assert not trainer.curriculum
    seen = _seen_rows(trainer, tok, ds)
    assert sorted(r["row"] for r in seen) == list(range(16))
    assert [r["curriculum_rank"] for r in seen] != list(range(16))


def test_curriculum_order_helper():
    ranks = [3, 0, 2, 1]
    assert curriculum_order(ranks, None, False, 0) == [1, 3, 2, 0]
    order = curriculum_order(list(range(10)), ["a"] * 5 + ["b"] * 5, True, 1)
    assert sorted(order[:5]) == [0, 1, 2, 3, 4] and sorted(order[5:]) == [5, 6, 7, 8, 9]


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    root, model_dir, version = tiny
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"method: sft\nstudent: {{model: {model_dir}}}\ndataset: {{path: {version}}}\noutput_dir: x\nlr: 3\n")
    with pytest.raises(RecipeError) as e:
        run_train(bad)
    assert "bad.yaml" in str(e.value) and "lr" in str(e.value) and "\n" not in str(e.value)
    missing = _recipe(tmp_path, model_dir, tmp_path / "nope", "missing")
    with pytest.raises(SourceError) as e:
        run_train(missing)
    assert "nope" in str(e.value) and "dataset.path" in str(e.value)
    with pytest.raises(CurateError):
        run_train(_recipe(tmp_path, tmp_path / "no-model", version, "nomodel"))
