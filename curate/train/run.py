"""``curate train RECIPE``: load the train recipe, the data and the student, pick the trainer, train, save."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import CurateError, RecipeError, first_line
from .config import TrainRecipe


def load_recipe(path: Path, overrides: list[str] | None = None) -> TrainRecipe:
    """Line-numbered one-line errors, ${ENV} interpolation and --set overrides (the core's YAML loader)."""
    return _load(path, overrides)[0]


def _load(path: Path, overrides: list[str] | None = None) -> tuple[TrainRecipe, dict[str, Any]]:
    """(recipe built from the resolved tree, the public tree: secret ${VARS} unresolved, secrets masked)."""
    from ..yamlio import load_yaml, validate_model

    loaded = load_yaml(path, overrides)
    return validate_model(TrainRecipe, loaded), loaded.public


class TrainingFailed(CurateError):
    """The trainer (transformers / TRL / torch) raised: one line naming the recipe; the traceback is kept in
    ``output_dir/train_error.log`` and the checkpoints written so far stay (``resume: true`` continues)."""


def run_train(recipe_path: Path, overrides: list[str] | None = None) -> Path:
    recipe, public = _load(recipe_path, overrides)
    try:
        return _run(recipe, Path(recipe_path), public)
    except CurateError as e:  # every one-line error names the recipe file
        if str(e).startswith(str(recipe_path)):
            raise
        raise type(e)(f"{recipe_path}: {e}") from None


def write_summary(out: Path, summary: dict[str, Any], public: dict[str, Any]) -> Path:
    """Write ``train_summary.json`` with the recipe's public tree (as written, --set applied,
    secret-looking ${VARS} kept as references): never the env-interpolated one."""
    path = Path(out) / "train_summary.json"
    path.write_text(json.dumps({**summary, "recipe": public}, indent=2, default=str))
    return path


def _public_value(public: dict[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    cur: Any = public
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def _split_eval(ds, recipe: TrainRecipe, base: Path, recipe_path: Path):
    """(train rows, eval rows or None): ``eval.split`` of the same dataset, or a seeded ``eval.fraction``."""
    from .data import load_rows

    e = recipe.eval
    if e is None:
        return ds, None
    if e.split is not None:
        cfg = recipe.dataset.model_copy(update={"split": e.split, "limit": None})
        ev = load_rows(cfg, base, where=f"{recipe_path}: eval.split")
    else:
        n_eval = max(1, round(len(ds) * e.fraction))
        if n_eval >= len(ds):
            raise RecipeError(f"{recipe_path}: eval.fraction {e.fraction} of {len(ds)} rows leaves no training rows")
        parts = ds.train_test_split(test_size=n_eval, seed=recipe.seed, shuffle=True)
        ds, ev = parts["train"], parts["test"]
    if e.limit:
        ev = ev.select(range(min(e.limit, len(ev))))
    return ds, ev


def _encode(recipe: TrainRecipe, tokenizer, ds, where: str, vocab_size: int | None):
    if recipe.method == "kd":
        from .kd import kd_dataset

        return kd_dataset(ds, tokenizer, recipe, vocab_size, where)
    from .data import chat_dataset

    return chat_dataset(ds, tokenizer, recipe.max_length, recipe.truncation, where)


def _student_vocab(recipe: TrainRecipe, tokenizer) -> int:
    """Ids the student may see, from its config (no weights loaded): min(lm_head rows, tokenizer ids)."""
    from transformers import AutoConfig

    st = recipe.student
    try:
        cfg = AutoConfig.from_pretrained(st.model, trust_remote_code=st.trust_remote_code)
    except Exception as e:
        raise RecipeError(f"student.model: cannot load the config of {st.model!r}: {first_line(e)}") from None
    rows = getattr(cfg.get_text_config(), "vocab_size", None) or len(tokenizer)
    return min(rows, len(tokenizer))


def _trainer_builder(recipe: TrainRecipe) -> Any:
    """The trainer factory of the recipe's method (online_kd: its teacher loaded first, before the student)."""
    teacher = None
    if recipe.method == "online_kd":
        from .online import load_teacher

        teacher = load_teacher(recipe)
    if recipe.method == "sft":
        from .sft import build_sft_trainer as build
    elif recipe.method == "kd":
        from .kd import build_kd_trainer as build
    else:
        from functools import partial

        from .online import build_online_trainer

        build = partial(build_online_trainer, teacher=teacher)
    return build


def _summary(recipe: TrainRecipe, public: dict[str, Any], trainer: Any, result: Any, seconds: float,
             train: tuple[Any, dict[str, Any], Any], evaluation: tuple[Any, dict[str, Any] | None]) -> dict[str, Any]:
    """The run summary: data, losses, throughput and (with eval rows) the evaluation history."""
    train_ds, stats, curriculum = train
    eval_ds, eval_stats = evaluation
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h[recipe.eval.metric] for h in trainer.state.log_history if recipe.eval and recipe.eval.metric in h]
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    summary = {
        "method": recipe.method,
        "student": _public_value(public, ("student", "model"), recipe.student.model),
        "dataset": _public_value(public, ("dataset", "path"), recipe.dataset.path),
        "rows": len(train_ds),
        **stats,
        "truncation": recipe.truncation,
        "max_length": recipe.max_length,
        "curriculum": curriculum,
        "lora": recipe.lora is not None,
        "run_name": trainer.args.run_name,
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "tokens_seen": tokens,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "seconds": seconds,
    }
    if eval_ds is not None:
        summary["eval"] = {
            "rows": len(eval_ds), **{k: v for k, v in eval_stats.items() if k.startswith("rows_")},
            "metric": recipe.eval.metric, "history": evals,
            "best_metric": trainer.state.best_metric, "best_checkpoint": trainer.state.best_model_checkpoint,
            "stopped_early": bool(recipe.eval.early_stopping_patience) and trainer.state.global_step < trainer.state.max_steps,
        }
    return summary


def _run(recipe: TrainRecipe, recipe_path: Path, public: dict[str, Any]) -> Path:
    from .common import callbacks_for, load_student, load_tokenizer, resume_arg
    from .data import apply_curriculum, has_curriculum, load_rows, require_kd_columns

    base = Path(recipe_path).resolve().parent
    where = f"{recipe_path}: dataset.path {recipe.dataset.path}"
    # data first: every data error comes before a weight is loaded
    ds = load_rows(recipe.dataset, base, where=f"{recipe_path}: dataset.path")
    if recipe.method == "kd":
        require_kd_columns(ds, where)
    if recipe.packing and has_curriculum(ds, recipe.curriculum):
        raise RecipeError(
            "packing: the dataset is in curriculum order (curriculum_rank) and packing would mix rows; "
            "set curriculum.mode: off to pack, or packing: false"
        )
    ds, eval_rows = _split_eval(ds, recipe, base, recipe_path)
    ds, curriculum = apply_curriculum(ds, recipe.curriculum, recipe.seed, where)
    if recipe.dataset.limit:
        ds = ds.select(range(min(recipe.dataset.limit, len(ds))))
    tokenizer = load_tokenizer(recipe, base)
    vocab = _student_vocab(recipe, tokenizer) if recipe.method == "kd" else None
    train_ds, stats = _encode(recipe, tokenizer, ds, where, vocab)
    eval_ds, eval_stats = (None, None)
    if eval_rows is not None:
        eval_where = f"{recipe_path}: eval rows of {recipe.dataset.path}"
        eval_ds, eval_stats = _encode(recipe, tokenizer, eval_rows, eval_where, vocab)
    build = _trainer_builder(recipe)
    model = load_student(recipe)
    out = Path(recipe.output_dir)
    try:
        trainer = build(recipe, model, tokenizer, train_ds, eval_ds, curriculum=curriculum,
                        callbacks=callbacks_for(recipe, eval_ds is not None))
        t0 = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume_arg(recipe))
        seconds = time.perf_counter() - t0
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
    except CurateError:
        raise
    except Exception as e:  # transformers / TRL / torch: one line, the traceback kept beside the checkpoints
        import traceback

        out.mkdir(parents=True, exist_ok=True)
        log = out / "train_error.log"
        log.write_text(traceback.format_exc())
        raise TrainingFailed(f"training failed: {type(e).__name__}: {first_line(e)} (traceback in {log})") from None
    summary = _summary(recipe, public, trainer, result, seconds, (train_ds, stats, curriculum), (eval_ds, eval_stats))
    if recipe.merge:
        from .merge import merge_lora

        summary["merged_dir"] = str(merge_lora(out, out / "merged"))
    write_summary(out, summary, public)
    return out
