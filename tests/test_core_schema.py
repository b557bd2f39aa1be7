"""schemas/ is generated from the pydantic models: fail on drift; every shipped recipe validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from curate.recipe import load_recipe
from curate.schemas import EXTRA_MODELS, all_schemas, render

ROOT = Path(__file__).resolve().parents[1]


def test_schemas_are_in_sync_with_the_models():
    schemas = all_schemas()
    assert "recipe.schema.json" in schemas
    for fname, schema in schemas.items():
        path = ROOT / "schemas" / fname
        assert path.exists(), f"{path} missing: run `curate schema --out schemas/`"
        assert path.read_text() == render(schema), f"{path} drifted from the models: run `curate schema --out schemas/`"


def _kind(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    for fname in ["recipe.schema.json", *EXTRA_MODELS]:
        if first.endswith(fname):
            return fname
    return ""


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_references_its_schema_and_validates(path, monkeypatch):
    kind = _kind(path)
    assert kind, f"{path.name}: first line must be '# yaml-language-server: $schema=../schemas/<kind>.schema.json'"
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "TEACHER_MODEL", "DEEPSEEK_API_KEY", "STUDENT_MODEL"):
        monkeypatch.setenv(var, "placeholder")
    if kind == "recipe.schema.json":
        load_recipe(path)
    else:
        import importlib

        from curate.yamlio import load_yaml_model

        mod, attr = EXTRA_MODELS[kind]
        load_yaml_model(path, getattr(importlib.import_module(mod), attr))
    assert yaml.safe_load(path.read_text())
