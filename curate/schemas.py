"""JSON Schema export of the recipe models (``curate schema``); a test fails when schemas/ drifts."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

# file name -> (module, attribute) of the pydantic model; modules must not import torch at import time.
EXTRA_MODELS = {
    "train.schema.json": ("curate.train.config", "TrainRecipe"),
    "eval.schema.json": ("curate.eval.config", "EvalRecipe"),
}


def all_schemas() -> dict[str, dict[str, Any]]:
    from .recipe import json_schema

    out = {"recipe.schema.json": json_schema()}
    for fname, (mod, attr) in EXTRA_MODELS.items():
        try:
            model = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"curate {fname.split('.')[0]} recipe"
        out[fname] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname, schema in all_schemas().items():
        p = out_dir / fname
        p.write_text(render(schema))
        paths.append(p)
    return paths
