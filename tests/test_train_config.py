"""The train recipe model: example recipes validate, bad fields are one-line errors, no torch needed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curate.errors import RecipeError
from curate.train.config import TrainRecipe
from curate.train.run import _load, load_recipe, write_summary

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("train-*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_example_recipes_validate(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, TrainRecipe)
    assert recipe.student.model


def test_overrides_and_env(monkeypatch):
    monkeypatch.setenv("STUDENT", "my/student")
    path = next(p for p in RECIPES if p.name == "train-kd.yaml")
    recipe = load_recipe(path, ["kd.temperature=2.0", "max_steps=5"])
    assert recipe.student.model == "my/student" and recipe.kd.temperature == 2.0 and recipe.max_steps == 5


@pytest.mark.parametrize(
    "body, needle",
    [
        ("method: sft\nstudent: {model: m}\ndataset: {path: d}\noutput_dir: o\nlora: {rank: 8}\n", "lora.rank"),
        ("method: kd\nstudent: {model: m}\ndataset: {path: d}\noutput_dir: o\nkd: {temperature: 0}\n", "kd.temperature"),
        ("method: online_kd\nstudent: {model: m}\ndataset: {path: d}\noutput_dir: o\n", "online"),
        ("method: dpo\nstudent: {model: m}\ndataset: {path: d}\noutput_dir: o\n", "method"),
    ],
)
def test_bad_recipe_is_one_line_naming_file_and_field(tmp_path, body, needle):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "r.yaml" in msg and needle in msg and "\n" not in msg


def test_config_and_schema_import_without_torch():
    code = (
        "import sys, json; from curate.train.config import TrainRecipe; import curate.train; "
        "json.dumps(TrainRecipe.model_json_schema()); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yaml_bare_off_means_off(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("student: {model: m}\ndataset: {path: d}\noutput_dir: o\ncurriculum: {mode: off}\n")
    assert load_recipe(path).curriculum.mode == "off"


def test_summary_keeps_secret_references_unresolved(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_TOKEN", "hf_very_secret_123")
    monkeypatch.setenv("STUDENT", "my/student")
    path = tmp_path / "r.yaml"
    path.write_text(
        "student: {model: '${STUDENT}', tokenizer: 'org/tok-${HUB_TOKEN}'}\n"
        "dataset: {path: d, revision: '${HUB_TOKEN}'}\noutput_dir: o\n"
    )
    recipe, public = _load(path, ["max_steps=7"])
    assert recipe.dataset.revision == "hf_very_secret_123"  # the code runs with the value
    out = write_summary(tmp_path, {"method": recipe.method, "global_steps": 7}, public)
    text = out.read_text()
    assert out.name == "train_summary.json" and "hf_very_secret_123" not in text
    summary = json.loads(text)
    assert summary["global_steps"] == 7
    assert summary["recipe"]["dataset"]["revision"] == "${HUB_TOKEN}"
    assert summary["recipe"]["student"] == {"model": "my/student", "tokenizer": "org/tok-${HUB_TOKEN}"}
    assert summary["recipe"]["max_steps"] == 7  # --set overrides are part of the public tree
