"""The recipe: pydantic models, the single source of truth (JSON Schema is generated from them).

    name, version, description, license, seed, sources[], stages[], output

``stages`` is a list discriminated by ``type``; each stage's config lives next to its code and is
collected through the registry, so plugins extend the schema the same way built-ins do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from .registry import stage_classes
from .sources import SourceConfig
from .stages.base import StageConfig
from .yamlio import Loaded, load_yaml, validate_model

SEMVER = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
SLUG = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class PushConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo_id: str
    private: bool = True


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    """Cluster address (``auto``, ``ray://host:10001``); unset starts a local Ray instance."""
    num_cpus: int | None = Field(default=None, ge=1)
    """CPUs of a locally started instance (ignored with ``address``)."""
    batch_size: int = Field(default=1024, ge=1)
    """Rows per Ray Data batch for row-wise stages."""
    sample_replicas: int | None = Field(default=None, ge=1)
    """Teacher backend replicas for ``sample`` (default: cluster GPUs // tensor_parallel_size for
    vLLM, one per node for API backends, which split rpm/tpm/concurrency between them)."""


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: str = "out"
    """Versions land in ``<dir>/<name>/<version>/`` (relative to the working directory)."""
    formats: list[Literal["messages", "prompt_completion"]] = Field(default_factory=lambda: ["messages"])
    """Training columns added to the train split: ``messages`` and/or ``prompt``/``completion``."""
    include_rejected: bool = True
    """Write the ``rejected`` split (every dropped row with ``dropped_by``/``drop_reason``)."""
    shard_rows: int = Field(default=200_000, ge=1)
    """Rows per parquet shard."""
    push: PushConfig | None = None
    """Push the version to the hub after writing it (or later: ``curate push``)."""


class RecipeBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG)
    version: str = Field(pattern=SEMVER, description="semver; a version, once written, is immutable")
    description: str = ""
    license: str = "other"
    seed: int = 0
    engine: Literal["local", "ray"] = "local"
    """Executor of the stages: this process (``local``) or a Ray cluster (``ray``, extra [ray])."""
    ray: RayOptions = Field(default_factory=lambda: RayOptions())
    shard_rows: int = Field(100_000, ge=1)
    """Rows per work shard: stages stream shards of whole problems from disk, so memory depends on this,
    not on the dataset's size. One shard (smaller inputs) keeps every row in memory at once."""
    sources: list[SourceConfig] = Field(min_length=1)
    stages: list[StageConfig] = Field(default_factory=list)
    output: OutputConfig = Field(default_factory=OutputConfig)


def recipe_model() -> type[RecipeBase]:
    """The Recipe model with ``stages`` as a discriminated union over every registered stage
    (built once per set of registered stage configs: registering a stage yields a new model)."""
    return _recipe_model_for(tuple(cls.Config for cls in stage_classes().values()))


@lru_cache(maxsize=16)
def _recipe_model_for(configs: tuple[type[StageConfig], ...]) -> type[RecipeBase]:
    if not configs:
        return RecipeBase
    union = Union[configs] if len(configs) > 1 else configs[0]  # type: ignore[valid-type]
    stage_t = Annotated[union, Field(discriminator="type")] if len(configs) > 1 else union
    return create_model(
        "Recipe",
        __base__=RecipeBase,
        stages=(list[stage_t], Field(default_factory=list)),  # type: ignore[valid-type]
    )


@dataclass
class LoadedRecipe:
    recipe: Any  # Recipe
    loaded: Loaded

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def base_dir(self) -> Path:
        return self.loaded.path.resolve().parent

    @property
    def public(self) -> dict[str, Any]:
        """The recipe as written (after overrides), secrets unresolved: safe for manifests and logs."""
        return self.loaded.public

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.public, sort_keys=True, default=str).encode()).hexdigest()

    def stage_labels(self) -> list[str]:
        seen: dict[str, int] = {}
        labels = []
        for st in self.recipe.stages:
            base = st.label or st.type
            seen[base] = seen.get(base, 0) + 1
            labels.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
        return labels


def _check_labels(recipe: Any, loaded: Loaded) -> None:
    """Stage labels name folders (``<work>/stages/<label>``) and lines of the card: plain names, like
    ``name`` (no ``/``, no ``..``, no absolute paths)."""
    import re

    from .errors import RecipeError

    for i, st in enumerate(recipe.stages):
        label = getattr(st, "label", None)
        if label is not None and not re.match(SLUG, label):
            line = loaded.lines.get(("stages", i, "label")) or loaded.lines.get(("stages", i))
            where = f":{line}" if line else ""
            raise RecipeError(
                f"{loaded.path}{where}: stages.{i}.label: {label[:60]!r} must be a plain name (letters, digits, "
                "'.', '_', '-'; starting with a letter or digit), like `name`"
            )


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> LoadedRecipe:
    loaded = load_yaml(path, overrides)
    recipe = validate_model(recipe_model(), loaded)
    _check_labels(recipe, loaded)
    return LoadedRecipe(recipe, loaded)


def json_schema() -> dict[str, Any]:
    schema = recipe_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "curate recipe"
    return schema
