"""The public Python API (`import curate`): a notebook user runs, audits and pushes without the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import curate

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light_and_exports_the_api():
    code = "import sys, curate; assert 'polars' not in sys.modules and 'torch' not in sys.modules; print(sorted(curate.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("load_recipe", "validate_recipe", "run_recipe", "audit_dataset", "push_version", "run_eval",
                 "run_train", "Stage", "StageConfig", "register_stage", "CurateError", "RecipeError"):
        assert name in out
    with pytest.raises(AttributeError):
        curate.no_such_thing  # noqa: B018


def test_run_audit_and_push_from_python(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    recipe = tmp_path / "recipes" / "quickstart.yaml"
    assert isinstance(curate.validate_recipe(recipe), list)
    lr = curate.load_recipe(recipe, ["version=0.9.0"])
    result = curate.run_recipe(lr, output_dir=tmp_path / "out")
    assert result.version_dir == tmp_path / "out" / "quickstart" / "0.9.0"
    assert result.train.height > 0 and (result.version_dir / "manifest.json").is_file()
    with pytest.raises(curate.VersionExistsError):
        curate.run_recipe(recipe, ["version=0.9.0"], output_dir=tmp_path / "out")

    summary = curate.audit_dataset(result.version_dir, tmp_path / "audit")
    assert (tmp_path / "audit" / "audit" / "report.html").is_file() and summary

    class RecordingHub:  # the hub cannot be reached here: a recording stand-in for HfApi
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, **kw):
            self.calls.append("create_repo")

        def upload_folder(self, **kw):
            self.calls.append("upload_folder")
            return type("Info", (), {"oid": "abc"})()

        def create_tag(self, repo_id, **kw):
            self.calls.append(kw["tag"])

    hub = RecordingHub()
    assert curate.push_version(result.version_dir, "me/quick", api=hub) == "v0.9.0"
    assert hub.calls == ["create_repo", "upload_folder", "v0.9.0"]


def test_a_plugin_stage_registers_through_the_public_api(tmp_path, monkeypatch):
    from typing import Literal

    import polars as pl

    class UpperConfig(curate.StageConfig):
        type: Literal["upper_api_test"] = "upper_api_test"

    @curate.register_stage
    class Upper(curate.Stage):
        name = "upper_api_test"
        Config = UpperConfig
        requires = ("problem",)

        def run(self, df: pl.DataFrame, ctx: curate.Context) -> pl.DataFrame:
            return df.with_columns(pl.col("problem").str.to_uppercase())

    from curate.registry import unregister_stage

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    (tmp_path / "p.jsonl").write_text('{"q": "what is one plus one?", "a": "2"}\n')
    (tmp_path / "r.yaml").write_text(
        "name: plug\nversion: 0.1.0\nsources:\n  - kind: file\n    path: p.jsonl\n"
        "    fields: {problem: q, gold_answer: a}\nstages:\n  - type: upper_api_test\noutput:\n  dir: out\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        result = curate.run_recipe(tmp_path / "r.yaml")
    finally:
        unregister_stage("upper_api_test")  # the registry is process-wide: leave it as found
    assert result.train["problem"].to_list() == ["WHAT IS ONE PLUS ONE?"]
