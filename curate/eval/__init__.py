"""``curate eval``: the same sample + verify machinery as curation, with the model under test in
the teacher's seat; pass@1 / unbiased pass@k / maj@k with bootstrap intervals, and a paired
before/after comparison of two runs. See docs/eval.md.

Public API (imported lazily, so ``import curate.eval`` stays light)::

    run_eval(recipe_path, overrides=None, output=None) -> Path       # the run folder
    compare_runs(run_a, run_b, *, n_boot=10000, seed=0) -> str       # markdown
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run_eval", "compare_runs", "EvalRecipe"]


def run_eval(recipe_path: Path, overrides: list[str] | None = None, output: Path | None = None) -> Path:
    from .run import run_eval as _run

    return _run(recipe_path, overrides, output)


def compare_runs(run_a: Path, run_b: Path, *, n_boot: int = 10000, seed: int = 0) -> str:
    from .compare import compare_runs as _cmp

    return _cmp(run_a, run_b, n_boot=n_boot, seed=seed)


def __getattr__(name: str) -> Any:
    if name == "EvalRecipe":
        from .config import EvalRecipe

        return EvalRecipe
    raise AttributeError(name)
