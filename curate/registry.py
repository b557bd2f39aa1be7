"""Stage registry: built-ins and entry-point plugins (group ``curate.stages``) share one path.

A plugin package declares, in its pyproject::

    [project.entry-points."curate.stages"]
    my_stage = "my_pkg.stages:MyStage"
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from .errors import RecipeError
from .stages.base import Stage

# type -> "module:Class". Imported lazily, so one stage's heavy deps never load for another.
BUILTIN_STAGES: dict[str, str] = {
    "sample": "curate.stages.sample:SampleStage",
    "verify": "curate.stages.verify:VerifyStage",
    "dedup": "curate.stages.dedup:DedupStage",
    "decontaminate": "curate.stages.decontaminate:DecontaminateStage",
    "difficulty": "curate.stages.difficulty:DifficultyStage",
    "curriculum": "curate.stages.curriculum:CurriculumStage",
    "select": "curate.stages.select:SelectStage",
    "audit": "curate.stages.audit:AuditStage",
}


def _load(target: str) -> type[Stage] | None:
    mod_name, _, cls_name = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:  # the module itself is absent (not one of its dependencies)
            return None
        raise
    return getattr(mod, cls_name)


@lru_cache(maxsize=1)
def stage_classes() -> dict[str, type[Stage]]:
    """All available stage classes by their YAML ``type``."""
    out: dict[str, type[Stage]] = {}
    for name, target in BUILTIN_STAGES.items():
        cls = _load(target)
        if cls is not None:
            out[name] = cls
    for ep in entry_points(group="curate.stages"):
        if ep.name in out:
            raise RecipeError(f"plugin stage '{ep.name}' ({ep.value}) clashes with a built-in stage")
        out[ep.name] = ep.load()
    for name, cls in out.items():
        if getattr(cls, "name", None) != name:
            raise RecipeError(f"stage class {cls.__module__}.{cls.__name__} must set name = {name!r}")
    return out


def get_stage(name: str) -> type[Stage]:
    classes = stage_classes()
    if name not in classes:
        raise RecipeError(f"unknown stage type '{name}' (known: {', '.join(sorted(classes))})")
    return classes[name]


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Register a stage class from Python (tests, notebooks); usable as a class decorator.

    Packages should prefer the ``curate.stages`` entry point, which needs no import side effect.
    """
    classes = stage_classes()
    existing = classes.get(cls.name)
    if existing is not None and existing is not cls:
        raise RecipeError(f"stage type '{cls.name}' is already registered by {existing.__module__}")
    classes[cls.name] = cls  # the recipe model is keyed by the registered configs: it follows
    return cls


def unregister_stage(name: str) -> None:
    stage_classes().pop(name, None)
