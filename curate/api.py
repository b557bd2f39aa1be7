"""The public Python API: what a notebook user needs, and what every CLI command calls.

    import curate

    lr = curate.load_recipe("recipes/quickstart.yaml", ["version=0.2.0"])
    notes = curate.validate_recipe("recipes/quickstart.yaml")   # no work done
    result = curate.run_recipe(lr, output_dir="out")            # or curate.run_recipe("recipe.yaml")
    result.version_dir, result.train, result.rejected, result.records
    curate.audit_dataset(result.version_dir, "audit-out")       # a version dir, parquet/jsonl or hub id
    curate.push_version(result.version_dir, "me/my-dataset")    # after a run, from Python too
    run_dir = curate.run_eval("recipes/eval-local.yaml")        # sample + verify + metrics via the runner
    out_dir = curate.run_train("recipes/train-sft.yaml")        # extra [train]

(The verbs carry a noun: ``curate.audit``, ``curate.train`` and ``curate.eval`` are subpackages.)

Every function raises ``curate.CurateError`` subclasses (one-line messages) on bad input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .recipe import LoadedRecipe, load_recipe
from .runner import RunResult
from .runner import run_recipe as _run_recipe

__all__ = ["load_recipe", "validate_recipe", "run_recipe", "audit_dataset", "push_version", "run_eval", "run_train"]


def _loaded(recipe: str | os.PathLike | LoadedRecipe, overrides: list[str] | None) -> LoadedRecipe:
    if isinstance(recipe, LoadedRecipe):
        if overrides:
            return load_recipe(recipe.path, overrides)
        return recipe
    return load_recipe(recipe, overrides)


def validate_recipe(recipe: str | os.PathLike, overrides: list[str] | None = None) -> list[str]:
    """Schema and semantic checks of a recipe without doing any work; returns notes (raises on errors)."""
    from .validate import validate_recipe as _validate

    return _validate(Path(recipe), overrides)


def run_recipe(
    recipe: str | os.PathLike | LoadedRecipe,
    overrides: list[str] | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    resume: bool = True,
    console: Any = None,
) -> RunResult:
    """Run a recipe and publish a new immutable version (``result.version_dir``)."""
    return _run_recipe(_loaded(recipe, overrides), output_dir=output_dir, limit=limit, resume=resume, console=console)


def audit_dataset(dataset: str | os.PathLike, out_dir: str | os.PathLike, mapping: dict[str, str] | None = None) -> dict:
    """Audit trace quality of a version folder, parquet/jsonl file or hub id; writes ``<out_dir>/audit/``."""
    from .audit import audit_dataset as _audit

    return _audit(str(dataset), Path(out_dir), mapping=mapping)


def push_version(version_dir: str | os.PathLike, repo_id: str, *, private: bool = True, api: Any = None) -> str:
    """Push a version folder to a hub dataset repo and tag the revision; returns the tag.
    ``api``: an ``huggingface_hub.HfApi`` (default: one with the token of the environment / HF login)."""
    from .publish import push

    return push(Path(version_dir), repo_id, private=private, api=api)


def run_eval(recipe: str | os.PathLike, overrides: list[str] | None = None, output: str | os.PathLike | None = None) -> Path:
    """``curate eval RECIPE``: returns the run folder (results.json, results.md, samples/problems parquet)."""
    from .eval import run_eval as _run_eval

    return _run_eval(Path(recipe), overrides, Path(output) if output is not None else None)


def run_train(recipe: str | os.PathLike, overrides: list[str] | None = None) -> Path:
    """``curate train RECIPE`` (extra [train]): returns the output folder of the trained student."""
    from .errors import require

    require("torch", "train", "curate train")
    from .train import run_train as _run_train

    return _run_train(recipe, overrides)
