"""Train recipe options on a tiny model: one truncation policy (drop | cut_end) with counts for SFT, KD and
online KD; trainer errors as one line with exit 2; the smaller fixes (cosine_with_min_lr, warmup_ratio 1.0,
--merge, packing under a curriculum, KD data checked first, checkpointing argument names); and the practitioner
features (eval split / held-out fraction, eval steps, best checkpoint, early stopping, save_total_limit,
run_name, tensorboard, fp16 guard)."""

import dataclasses
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from curate.errors import CurateError, RecipeError, SourceError  # noqa: E402
from curate.train import run_train, tokenizer_tag  # noqa: E402
from curate.train.kd import teacher_topk  # noqa: E402
from support.tiny import make_model, make_tokenizer, save_tiny  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A student, a teacher, and rows of which 3 have completions far beyond max_length 96."""
    import datasets

    root = tmp_path_factory.mktemp("opts")
    tok = make_tokenizer()
    teacher = make_model(tok, seed=1).eval()
    student = save_tiny(root / "student", tok, make_model(tok, seed=2))
    teacher_dir = save_tiny(root / "teacher", tok, teacher)
    rows = []
    for i in range(12):
        reasoning = f"{i} times 2 is {2 * i}" + (" and so on" * 20 if i % 4 == 3 else "")
        prompt = [{"role": "user", "content": f"{i}*2?"}]
        completion = f"<think>\n{reasoning}\n</think>\n\n{2 * i}"
        p = tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)["input_ids"]
        comp = tok(completion + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids, lps = teacher_topk(teacher, torch.tensor(p + comp), len(p), 8)
        rows.append({"prompt": prompt, "completion": completion, "token_ids": comp, "topk_ids": ids,
                     "topk_logprobs": lps, "tokenizer": tokenizer_tag(tok, "tiny"), "curriculum_rank": i})
    data = root / "d.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(data))
    long_rows = sum(1 for r in rows if len(r["token_ids"]) + 12 > 96)
    assert long_rows == 3
    return root, student, teacher_dir, data


def _recipe(path: Path, student, data, **extra) -> Path:
    import yaml

    body = {"method": "sft", "student": {"model": str(student)}, "dataset": {"path": str(data)},
            "output_dir": str(path.parent / (path.stem + "-out")), "lora": None, "max_length": 96,
            "max_steps": 2, "batch_size": 4, "grad_accum": 1, "logging_steps": 1, "save_steps": 100,
            "optim": {"lr": 1e-3, "schedule": "constant", "warmup_ratio": 0.0}}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(body.get(k), dict):
            body[k] = {**body[k], **v}
        else:
            body[k] = v
    path.write_text(yaml.safe_dump(body))
    return path


def _summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


@pytest.mark.parametrize("method", ["sft", "kd", "online_kd"])
@pytest.mark.parametrize("policy", ["drop", "cut_end"])
def test_one_truncation_policy_with_counts(tiny, tmp_path, method, policy):
    root, student, teacher_dir, data = tiny
    extra = {"online": {"teacher": str(teacher_dir)}} if method == "online_kd" else {}
    s = _summary(run_train(_recipe(tmp_path / "r.yaml", student, data, method=method, truncation=policy,
                                   max_steps=1, **extra)))
    assert s["rows_in"] == 12 and s["truncation"] == policy
    if policy == "drop":
        assert s["rows_dropped_too_long"] == 3 and s["rows_cut_to_max_length"] == 0 and s["rows_trained"] == 9
    else:
        assert s["rows_dropped_too_long"] == 0 and s["rows_cut_to_max_length"] == 3 and s["rows_trained"] == 12


def test_default_truncation_is_drop(tiny, tmp_path):
    root, student, _, data = tiny
    from curate.train.config import TrainRecipe

    assert TrainRecipe.model_validate({"student": {"model": "m"}, "dataset": {"path": "d"}, "output_dir": "o"}).truncation == "drop"


def _cli(*args):
    result = CliRunner().invoke(app, list(map(str, args)))
    text = (result.stdout or "") + (getattr(result, "stderr", "") or "")
    return result.exit_code, "\n".join(l for l in text.splitlines() if not l.lstrip("\r").startswith("Map"))


def test_every_row_too_long_is_one_line_exit_2(tiny, tmp_path):
    root, student, _, data = tiny
    code, text = _cli("train", _recipe(tmp_path / "r.yaml", student, data, max_length=10))
    assert code == 2 and "max_length 10" in text and "truncation: cut_end" in text, text
    assert len([line for line in text.splitlines() if "error" in line]) == 1 and "Traceback" not in text


def test_trainer_errors_are_one_line_exit_2(tiny, tmp_path):
    root, student, _, data = tiny
    path = _recipe(tmp_path / "r.yaml", student, data, optim={"name": "no_such_optimizer"})
    code, text = _cli("train", path)
    assert code == 2 and "training failed" in text and "r.yaml" in text and "Traceback" not in text, text
    assert len([line for line in text.splitlines() if "error" in line]) == 1 and "Traceback" not in text
    assert (tmp_path / "r-out" / "train_error.log").read_text().startswith("Traceback")


def test_cosine_with_min_lr(tiny, tmp_path):
    root, student, _, data = tiny
    with pytest.raises(RecipeError, match="min_lr"):
        run_train(_recipe(tmp_path / "a.yaml", student, data, optim={"schedule": "cosine_with_min_lr"}))
    out = run_train(_recipe(tmp_path / "b.yaml", student, data, max_steps=6,
                            optim={"schedule": "cosine_with_min_lr", "min_lr_ratio": 0.1, "lr": 1e-3}))
    lrs = [h["learning_rate"] for h in _summary_history(out) if "learning_rate" in h]
    assert len(lrs) == 6 and min(lrs) >= 1e-4 - 1e-12 and lrs[-1] < 2e-4, lrs


def _summary_history(out: Path) -> list:
    from transformers.trainer_utils import get_last_checkpoint  # noqa: F401

    state = sorted(out.glob("checkpoint-*/trainer_state.json"))
    if state:
        return json.loads(state[-1].read_text())["log_history"]
    return _summary(out)["log_history"]


def test_warmup_ratio_one_warms_up_over_every_step(tiny, tmp_path):
    root, student, _, data = tiny
    out = run_train(_recipe(tmp_path / "r.yaml", student, data, max_steps=4, save_steps=4,
                            optim={"schedule": "linear", "warmup_ratio": 1.0, "lr": 1e-3}))
    lrs = [h["learning_rate"] for h in _summary_history(out) if "learning_rate" in h]
    assert len(lrs) == 4 and all(a < b for a, b in zip(lrs, lrs[1:])), lrs


def test_merge_flag_checks_lora_first_and_writes_output_dir_merged(tiny, tmp_path):
    root, student, _, data = tiny
    code, text = _cli("train", _recipe(tmp_path / "full.yaml", student, data), "--merge")
    assert code == 2 and "merge" in text and "LoRA" in text, text
    assert not (tmp_path / "full-out").exists()  # refused before training
    path = _recipe(tmp_path / "lora.yaml", student, data, lora={"r": 4, "alpha": 8}, max_steps=1)
    code, text = _cli("train", path, "--merge")
    assert code == 0, text
    out = tmp_path / "lora-out"
    assert (out / "merged" / "config.json").exists() and not Path(str(out) + "-merged").exists()


def test_packing_under_a_curriculum_is_refused_before_training(tiny, tmp_path):
    root, student, _, data = tiny
    with pytest.raises(RecipeError, match="curriculum.mode: off") as e:
        run_train(_recipe(tmp_path / "r.yaml", student, data, packing=True))
    assert "\n" not in str(e.value)
    s = _summary(run_train(_recipe(tmp_path / "p.yaml", student, data, packing=True, curriculum={"mode": "off"},
                                   max_steps=1)))
    assert s["curriculum"] is False


def test_kd_data_is_checked_first_and_names_the_kd_columns(tmp_path):
    import datasets

    data = tmp_path / "plain.parquet"
    datasets.Dataset.from_list([{"prompt": "hi", "completion": "x"}] * 3).to_parquet(str(data))
    with pytest.raises(SourceError) as e:  # the student does not even exist: the data error comes first
        run_train(_recipe(tmp_path / "r.yaml", tmp_path / "no-such-student", data, method="kd"))
    msg = str(e.value)
    assert "token_ids" in msg and "topk_ids" in msg and "tokenizer" not in msg.split("needs columns")[1], msg


def test_checkpointing_argument_name_is_feature_detected(tiny, tmp_path):
    from curate.train.common import checkpointing_kwargs

    @dataclasses.dataclass
    class Old:  # transformers 5.16 - 5.19
        gradient_checkpointing: bool = False

    @dataclasses.dataclass
    class New:  # transformers >= 5.20
        activation_checkpointing: bool = False
        gradient_checkpointing: bool = False

    assert checkpointing_kwargs(Old, True) == {"gradient_checkpointing": True}
    assert checkpointing_kwargs(New, True) == {"activation_checkpointing": True}
    root, student, _, data = tiny
    s = _summary(run_train(_recipe(tmp_path / "r.yaml", student, data, gradient_checkpointing=True, max_steps=1)))
    assert s["global_steps"] == 1


def test_fp16_needs_cuda(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 runs (tests/test_train_gpu.py)")
    root, student, _, data = tiny
    with pytest.raises(RecipeError, match="fp16 needs a CUDA device"):
        run_train(_recipe(tmp_path / "r.yaml", student, data, mixed_precision="fp16"))


def test_eval_best_checkpoint_early_stopping_retention_tensorboard(tiny, tmp_path):
    root, student, _, data = tiny
    path = _recipe(
        tmp_path / "r.yaml", student, data, max_steps=20, truncation="cut_end", save_total_limit=1,
        run_name="tiny-eval", report_to=["tensorboard"], optim={"lr": 1e-9},  # nothing improves: stops early
        eval={"fraction": 0.25, "steps": 2, "early_stopping_patience": 2, "early_stopping_threshold": 0.01},
    )
    out = run_train(path)
    s = _summary(out)
    ev = s["eval"]
    assert ev["rows"] == 3 and s["rows_in"] == 9  # 12 rows: 3 held out
    assert s["global_steps"] == 6 and ev["stopped_early"] is True  # evals at 2 (best), 4, 6: two without improvement
    assert len(ev["history"]) == 3 and ev["best_checkpoint"].endswith("checkpoint-2")
    assert s["run_name"] == "tiny-eval"
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert len(ckpts) <= 2 and "checkpoint-2" in ckpts, ckpts  # limit 1 + the best one kept
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no tensorboard event file"


def test_eval_split_for_kd(tiny, tmp_path):
    import datasets

    root, student, _, data = tiny
    version = tmp_path / "v1"
    (version / "data").mkdir(parents=True)
    ds = datasets.Dataset.from_parquet(str(data))
    ds.select(range(8)).to_parquet(str(version / "data" / "train-00000-of-00001.parquet"))
    ds.select(range(8, 12)).to_parquet(str(version / "data" / "validation-00000-of-00001.parquet"))
    s = _summary(run_train(_recipe(tmp_path / "r.yaml", student, version, method="kd", max_steps=2,
                                   eval={"split": "validation", "steps": 1})))
    assert s["eval"]["rows"] == 3 and s["eval"]["rows_dropped_too_long"] == 1  # row 11 is too long (drop)
    assert len(s["eval"]["history"]) == 2 and s["eval"]["best_metric"] is not None


def test_eval_for_online_kd(tiny, tmp_path):
    root, student, teacher_dir, data = tiny
    s = _summary(run_train(_recipe(tmp_path / "r.yaml", student, data, method="online_kd", max_steps=2,
                                   online={"teacher": str(teacher_dir)}, eval={"fraction": 0.25, "steps": 1})))
    assert s["eval"]["rows"] >= 1 and len(s["eval"]["history"]) == 2 and s["eval"]["best_checkpoint"]
