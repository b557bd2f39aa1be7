"""``curate validate``: schema and semantic checks of a recipe, without doing any work."""

from __future__ import annotations

from pathlib import Path

from .errors import RecipeError
from .recipe import load_recipe
from .registry import get_stage
from .sampling import SAMPLE_COLUMNS
from .sources import PROBLEM_COLUMNS, FileSource, TracesSource, _expand
from .stages.base import Context



def validate_recipe(path: Path, overrides: list[str] | None = None) -> list[str]:
    """Raise RecipeError/SourceError on the first problem; return notes for the user."""
    lr = load_recipe(path, overrides)
    notes = []
    columns = set(PROBLEM_COLUMNS)
    for i, src in enumerate(lr.recipe.sources):
        if isinstance(src, (FileSource, TracesSource)) and not getattr(src, "hub", False):
            files = _expand(src.path, lr.base_dir, f"sources.{i}")
            notes.append(f"source {i} ({src.kind}): {len(files)} file(s)")
        else:
            notes.append(f"source {i} ({src.kind}): loaded from the hub at run time")
        if isinstance(src, TracesSource):
            columns |= set(SAMPLE_COLUMNS)
    labels = lr.stage_labels()
    for cfg, label in zip(lr.recipe.stages, labels):
        cls = get_stage(cfg.type)
        missing = [c for c in cls.requires if c not in columns]
        if missing:
            raise RecipeError(
                f"{lr.path}: stage '{label}' needs column(s) {', '.join(missing)} that no earlier source or "
                "stage produces"
            )
        cls(cfg).check(Context(work_dir=Path(".curate") / lr.recipe.name, base_dir=lr.base_dir, stage_label=label))
        columns |= set(cls.produces)
    notes.append(f"stages: {' -> '.join(labels) or '(none)'}")
    return notes
