"""Docs that cannot drift: every YAML example in README.md and docs/*.md parses and validates.

A block is classified by its shape: a whole curation recipe (``name`` + ``sources``), an eval recipe
(``benchmark``), a train recipe (``method`` or ``student``), or a fragment of a curation recipe (a list
of stages, ``stages:``, ``engine``/``ray``, ``output``, or a sample stage's ``teacher``) or of a train
recipe (only train-recipe keys), which is wrapped into a minimal recipe and validated against the same pydantic models the runner uses. A block
that is intentionally not a recipe is preceded by the line ``<!-- yaml: not a recipe -->``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<pre>[^\n]*\n)?```ya?ml\n(?P<body>.*?)```", re.S)
SKIP = "<!-- yaml: not a recipe -->"
FRAGMENT_KEYS = {"stages", "engine", "ray", "output", "sources", "seed"}


def _blocks():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[: m.start("body")].count("\n") + 1
            if SKIP in (m.group("pre") or ""):
                continue
            yield pytest.param(doc, line, m.group("body"), id=f"{doc.name}:{line}")


def _wrap(fragment: dict) -> dict:
    recipe = {"name": "docs-example", "version": "0.1.0",
              "sources": [{"kind": "file", "path": "problems.jsonl"}]}
    recipe.update(fragment)
    return recipe


def _classify(data):
    if isinstance(data, list):
        return "recipe", _wrap({"stages": data})
    if not isinstance(data, dict):
        return None, data
    if "benchmark" in data:
        return "eval", data
    if "method" in data or "student" in data:
        return "train", data
    if "name" in data and "sources" in data:
        return "recipe", data
    if "teacher" in data:
        return "recipe", _wrap({"stages": [{"type": "sample", **data}]})
    if data and set(data) <= FRAGMENT_KEYS:
        return "recipe", _wrap(data)
    from curate.train.config import TrainRecipe

    if data and set(data) <= set(TrainRecipe.model_fields):  # a fragment of a train recipe
        return "train", {"student": {"model": "student"}, "dataset": {"path": "data"}, "output_dir": "out", **data}
    return None, data


def validate_block(body: str, where: str, tmp_path: Path) -> None:
    from curate.eval.config import EvalRecipe
    from curate.recipe import recipe_model
    from curate.train.config import TrainRecipe
    from curate.yamlio import load_yaml, validate_model

    data = yaml.safe_load(body)
    kind, tree = _classify(data)
    assert kind is not None, f"{where}: a YAML example that is no recipe or recipe fragment (mark it '{SKIP}')"
    path = tmp_path / "example.yaml"
    path.write_text(body if tree is data else yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    model = {"recipe": recipe_model(), "eval": EvalRecipe, "train": TrainRecipe}[kind]
    validate_model(model, load_yaml(path))  # raises a one-line RecipeError naming the field


@pytest.mark.parametrize("doc,line,body", list(_blocks()))
def test_yaml_example_validates(doc, line, body, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    validate_block(body, f"{doc.relative_to(REPO)}:{line}", tmp_path)


@pytest.mark.parametrize("body", [
    "- type: dedup\n  feild: problem\n",                       # a misspelled stage key
    "stages:\n  - type: no_such_stage\n",
    "teacher: {backend: openai, model: m}\nn: 0\n",             # n must be >= 1
    "name: x\nversion: one\nsources: [{kind: file, path: a.jsonl}]\n",
    "eval: {fraction: 2.0}\nsave_total_limit: 2\n",              # a train-recipe fragment out of range
])
def test_a_wrong_example_fails(body, tmp_path):
    from curate.errors import RecipeError

    with pytest.raises(RecipeError):
        validate_block(body, "bad", tmp_path)


def test_every_doc_has_been_scanned():
    assert len(list(_blocks())) >= 10
