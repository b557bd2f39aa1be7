"""curate: declarative curation of reasoning-distillation datasets.

The public API (see ``curate.api``): ``load_recipe``, ``validate_recipe``, ``run_recipe``,
``audit_dataset``, ``push_version``, ``run_eval``, ``run_train``; ``Stage``/``StageConfig``/``register_stage`` to add a stage; the errors.
Attributes load lazily, so ``import curate`` stays cheap (no polars, no torch until used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_recipe": "curate.api",
    "validate_recipe": "curate.api",
    "run_recipe": "curate.api",
    "audit_dataset": "curate.api",
    "push_version": "curate.api",
    "run_eval": "curate.api",
    "run_train": "curate.api",
    "RunResult": "curate.runner",
    "LoadedRecipe": "curate.recipe",
    "Stage": "curate.stages.base",
    "StageConfig": "curate.stages.base",
    "Context": "curate.stages.base",
    "register_stage": "curate.registry",
    "CurateError": "curate.errors",
    "RecipeError": "curate.errors",
    "SourceError": "curate.errors",
    "BackendError": "curate.errors",
    "VersionExistsError": "curate.errors",
    "MissingExtraError": "curate.errors",
    "BudgetExceeded": "curate.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
