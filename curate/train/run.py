"""``curate train RECIPE``: load the train recipe, the data and the student, pick the trainer, train, save."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import CurateError
from .config import TrainRecipe


def load_recipe(path: Path, overrides: list[str] | None = None) -> TrainRecipe:
    """Line-numbered one-line errors, ${ENV} interpolation and --set overrides (the core's YAML loader)."""
    return _load(path, overrides)[0]


def _load(path: Path, overrides: list[str] | None = None) -> tuple[TrainRecipe, dict[str, Any]]:
    """(recipe built from the resolved tree, the public tree: secret ${VARS} unresolved, secrets masked)."""
    from ..yamlio import load_yaml, validate_model

    loaded = load_yaml(path, overrides)
    return validate_model(TrainRecipe, loaded), loaded.public


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


def _run(recipe: TrainRecipe, recipe_path: Path, public: dict[str, Any]) -> Path:
    from .common import load_student, load_tokenizer, resume_arg
    from .data import apply_curriculum, load_rows

    base = Path(recipe_path).resolve().parent
    where = f"{recipe_path}: dataset.path {recipe.dataset.path}"
    ds = load_rows(recipe.dataset, base, where=f"{recipe_path}: dataset.path")
    ds, curriculum = apply_curriculum(ds, recipe.curriculum, recipe.seed, where)
    if recipe.dataset.limit:
        ds = ds.select(range(min(recipe.dataset.limit, len(ds))))
    tokenizer = load_tokenizer(recipe, base)
    model = load_student(recipe)
    if recipe.method == "sft":
        from .sft import build_sft_trainer as build
    elif recipe.method == "kd":
        from .kd import build_kd_trainer as build
    else:
        from .online import build_online_trainer as build
    trainer = build(recipe, model, tokenizer, ds, curriculum=curriculum, where=where)

    out = Path(recipe.output_dir)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_arg(recipe))
    seconds = time.perf_counter() - t0
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    summary = {
        "method": recipe.method,
        "student": _public_value(public, ("student", "model"), recipe.student.model),
        "dataset": _public_value(public, ("dataset", "path"), recipe.dataset.path),
        "rows": len(ds),
        "curriculum": curriculum,
        "lora": recipe.lora is not None,
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "tokens_seen": tokens,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "seconds": seconds,
    }
    if recipe.merge:
        from .merge import merge_lora

        summary["merged_dir"] = str(merge_lora(out, out / "merged"))
    write_summary(out, summary, public)
    return out
