"""The runner, the cache, the publisher and the CLI, end to end on small recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import datasets
import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.publish import push
from curate.recipe import load_recipe
from curate.registry import register_stage, unregister_stage
from curate.runner import execute, run_recipe
from curate.stages.base import Context, Stage, StageConfig, mark_drop

CALLS: list[str] = []


class CountConfig(StageConfig):
    type: Literal["count_test"] = "count_test"
    drop_below: int = 0
    api_key: str | None = None


class CountStage(Stage):
    """A tiny test stage: counts its executions and drops rows with source_index < drop_below."""

    name = "count_test"
    Config = CountConfig
    requires = ("source_index",)
    produces = ("seen",)

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        CALLS.append(ctx.stage_label)
        ctx.stats["rows_seen"] = df.height
        df = df.with_columns(pl.lit(True).alias("seen"))
        return mark_drop(df, pl.col("source_index") < self.config.drop_below, "too_small")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.chdir(tmp_path)
    register_stage(CountStage)
    CALLS.clear()
    yield
    unregister_stage("count_test")


def write_recipe(tmp_path: Path, stages: str = "", extra: str = "", version: str = "0.1.0") -> Path:
    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(10)]
    (tmp_path / "probs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = tmp_path / "recipe.yaml"
    p.write_text(
        f"""name: demo
version: {version}
license: mit
sources:
  - kind: file
    path: probs.jsonl
    fields: {{problem: question, gold_answer: answer}}
    answer_extractor: gsm8k
stages:
{stages or "  []"}
output:
  dir: out
{extra}"""
    )
    return p


STAGES = """  - type: count_test
    label: first
  - type: count_test
    label: second
    drop_below: {second}
"""


def test_changing_a_later_stage_reuses_the_earlier_ones(tmp_path):
    p = write_recipe(tmp_path, STAGES.format(second=3))
    r1 = execute(load_recipe(p))
    assert CALLS == ["first", "second"]
    assert r1.train.height == 7 and r1.rejected.height == 3
    assert set(r1.rejected["dropped_by"]) == {"second"} and set(r1.rejected["drop_reason"]) == {"too_small"}

    execute(load_recipe(p))  # nothing changed: everything cached
    assert CALLS == ["first", "second"]

    r3 = execute(load_recipe(p, ["stages.1.drop_below=5"]))  # only the second stage changed
    assert CALLS == ["first", "second", "second"]
    assert r3.train.height == 5
    assert [r.cached for r in r3.records] == [False, True, False]

    execute(load_recipe(p), resume=False)  # --no-resume recomputes everything
    assert CALLS[-2:] == ["first", "second"]


def test_run_publishes_a_loadable_version_and_refuses_to_overwrite(tmp_path):
    p = write_recipe(tmp_path, STAGES.format(second=4))
    res = run_recipe(load_recipe(p))
    vdir = tmp_path / "out" / "demo" / "0.1.0"
    assert res.version_dir.resolve() == vdir.resolve()
    train = datasets.load_dataset(str(vdir), split="train")
    assert train.num_rows == 6 and "seen" in train.column_names
    rejected = datasets.load_dataset(str(vdir), "rejected", split="rejected")
    assert rejected.num_rows == 4 and set(rejected["dropped_by"]) == {"second"}
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 6, "rejected": 4}
    assert [f["stage"] for f in manifest["funnel"]] == ["source", "first", "second"]
    assert manifest["funnel"][2]["dropped"] == {"too_small": 4}
    assert manifest["inputs"][0]["inputs"][0]["sha256"]
    assert len(manifest["recipe_hash"]) == 64 and "datasets" in manifest["packages"]
    card = (vdir / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: rejected" in card and "| second | 10 | 6 |" in card
    assert not list(vdir.parent.glob(".tmp-*"))

    result = CliRunner().invoke(app, ["run", str(p)])
    assert result.exit_code == 2
    assert "exists" in result.output and "Traceback" not in result.output


def test_secrets_never_reach_manifest_card_or_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-very-secret-123")
    monkeypatch.setenv("DATA_NAME", "probs")
    p = write_recipe(tmp_path, STAGES.format(second=0))
    text = p.read_text().replace("path: probs.jsonl", "path: ${DATA_NAME}.jsonl")
    p.write_text(text.replace("label: first", "label: first\n    api_key: ${MY_API_KEY}"))
    lr = load_recipe(p)
    assert lr.recipe.stages[0].api_key == "sk-very-secret-123"  # resolved for the code
    assert lr.public["stages"][0]["api_key"] == "${MY_API_KEY}"  # not for anything written
    assert lr.public["sources"][0]["path"] == "probs.jsonl"  # non-secret variables are resolved
    run_recipe(lr)
    vdir = tmp_path / "out" / "demo" / "0.1.0"
    for f in [vdir / "manifest.json", vdir / "README.md"] + list((tmp_path / ".curate").rglob("*.json")):
        assert "sk-very-secret" not in f.read_text(), f


def test_cli_validate_reports_a_misspelled_key_with_its_line(tmp_path):
    p = write_recipe(tmp_path, "  - type: count_test\n    drop_belw: 3\n")
    result = CliRunner().invoke(app, ["validate", str(p)])
    assert result.exit_code == 2
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1, result.output
    assert "recipe.yaml:11:" in lines[0] and "drop_belw" in lines[0]

    ok = CliRunner().invoke(app, ["validate", str(write_recipe(tmp_path, STAGES.format(second=1)))])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "stages, needle",
    [
        ("  - type: count_tset\n", "unknown type 'count_tset'"),
        ("  - type: count_test\n    drop_below: lots\n", "stages.0.drop_below"),
    ],
)
def test_cli_bad_stage_config_is_one_line_exit_2(tmp_path, stages, needle):
    result = CliRunner().invoke(app, ["run", str(write_recipe(tmp_path, stages))])
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output


def test_cli_missing_source_file_and_field(tmp_path):
    p = write_recipe(tmp_path)
    (tmp_path / "probs.jsonl").unlink()
    r = CliRunner().invoke(app, ["run", str(p)])
    assert r.exit_code == 2 and "probs.jsonl: no such file" in r.output
    p = write_recipe(tmp_path)
    p.write_text(p.read_text().replace("problem: question", "problem: questoin"))
    r = CliRunner().invoke(app, ["run", str(p)])
    assert r.exit_code == 2 and "field 'questoin'" in r.output and "probs.jsonl" in r.output


def test_push_uploads_and_tags(tmp_path):
    """The hub cannot be reached here: a recording stand-in for HfApi checks the calls we make."""

    class FakeApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, **kw):
            self.calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            self.calls.append(("upload_folder", kw["repo_id"], sorted(p.name for p in Path(kw["folder_path"]).iterdir())))
            return type("Info", (), {"oid": "abc123"})()

        def create_tag(self, repo_id, **kw):
            self.calls.append(("create_tag", repo_id, kw))

    run_recipe(load_recipe(write_recipe(tmp_path)))
    api = FakeApi()
    tag = push(tmp_path / "out" / "demo" / "0.1.0", "me/demo", api=api)
    assert tag == "v0.1.0"
    assert api.calls[0][0] == "create_repo" and api.calls[0][2]["repo_type"] == "dataset"
    assert api.calls[1] == ("upload_folder", "me/demo", ["README.md", "audit", "data", "manifest.json"]) or api.calls[
        1
    ] == ("upload_folder", "me/demo", ["README.md", "data", "manifest.json"])
    assert api.calls[2][0] == "create_tag" and api.calls[2][2]["tag"] == "v0.1.0"
    assert api.calls[2][2]["revision"] == "abc123"


class BoomConfig(StageConfig):
    type: Literal["boom_test"] = "boom_test"


class BoomStage(Stage):
    name = "boom_test"
    Config = BoomConfig

    def run(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        raise KeyboardInterrupt  # what Ctrl-C does in the middle of a stage


def test_ctrl_c_keeps_finished_stages_cached(tmp_path):
    register_stage(BoomStage)
    try:
        p = write_recipe(tmp_path, STAGES.format(second=2) + "  - type: boom_test\n")
        result = CliRunner().invoke(app, ["run", str(p)])
        assert result.exit_code == 130 and "resume" in result.output
        assert CALLS == ["first", "second"]
        assert not (tmp_path / "out" / "demo" / "0.1.0").exists()
        p.write_text(p.read_text().replace("  - type: boom_test\n", ""))
        assert CliRunner().invoke(app, ["run", str(p)]).exit_code == 0
        assert CALLS == ["first", "second"]  # both served from the cache on the second run
    finally:
        unregister_stage("boom_test")


def test_two_versions_with_the_same_folder_name_do_not_share_the_datasets_cache(tmp_path):
    """datasets caches local folders by name + card; the card's content fingerprint keeps them apart."""
    run_recipe(load_recipe(write_recipe(tmp_path, STAGES.format(second=2))), output_dir=tmp_path / "a")
    run_recipe(load_recipe(write_recipe(tmp_path, STAGES.format(second=7))), output_dir=tmp_path / "b")
    a = datasets.load_dataset(str(tmp_path / "a" / "demo" / "0.1.0"), split="train")
    b = datasets.load_dataset(str(tmp_path / "b" / "demo" / "0.1.0"), split="train")
    assert (a.num_rows, b.num_rows) == (8, 3)


def test_error_lines_keep_brackets_and_bad_map_is_one_line(capsys):
    import typer

    from curate.cli import _handle
    from curate.errors import MissingExtraError

    @_handle
    def boom():
        raise MissingExtraError("curate train needs torch; run: pip install 'curate[train]' (see [/tmp])")

    with pytest.raises(typer.Exit) as e:
        boom()
    assert e.value.exit_code == 2
    assert "pip install 'curate[train]' (see [/tmp])" in capsys.readouterr().err
    r = CliRunner().invoke(app, ["audit", "x.parquet", "--map", "reasoning"])
    assert r.exit_code == 2 and "--map 'reasoning': expected target=column" in r.output
