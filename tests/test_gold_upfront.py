"""A verify stage that would see no gold answer is refused before a teacher in front of it is paid."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from curate.testing.openai_server import OpenAIServer

RECIPE = """
name: nogold
version: 0.1.0
sources:
  - kind: file
    path: p.jsonl
    fields: {problem: question, gold_answer: missing_column_typo}
stages:
  - type: sample
    teacher: {backend: openai, model: m, api_key_env: LOOP_KEY, max_retries: 0}
  - type: verify
output:
  dir: out
"""


def test_no_gold_is_refused_before_sampling(tmp_path, monkeypatch):
    from curate.cli import app

    rows = [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(5)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(RECIPE.replace("missing_column_typo", "answer_typo"))
    with OpenAIServer() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("LOOP_KEY", "x")
        monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
        monkeypatch.chdir(tmp_path)
        for cmd in (["validate", "r.yaml"], ["run", "r.yaml"]):
            res = CliRunner().invoke(app, cmd)
            assert res.exit_code == 2, res.output
            assert "no gold answer" in res.output or "answer_typo" in res.output
        assert srv.count() == 0  # nothing paid
        # with the opt-in, the same recipe runs (verdicts no_gold)
        (tmp_path / "r.yaml").write_text(
            RECIPE.replace("fields: {problem: question, gold_answer: missing_column_typo}", "fields: {problem: question}")
            .replace("  - type: verify\n", "  - type: verify\n    allow_missing_gold: true\n")
        )
        res = CliRunner().invoke(app, ["run", "r.yaml"])
        assert res.exit_code == 0, res.output
        (tmp_path / "r.yaml").write_text(
            RECIPE.replace("fields: {problem: question, gold_answer: missing_column_typo}", "fields: {problem: question}")
            .replace("version: 0.1.0", "version: 0.2.0")
        )
        before = srv.count()
        res = CliRunner().invoke(app, ["run", "r.yaml"])
        assert res.exit_code == 2 and "no gold answer" in res.output, res.output
        assert srv.count() == before


def test_plan_check_reads_only_the_gold_column(tmp_path, monkeypatch):
    """The up-front gold check before the first stage is given the first shard's gold answers only,
    not every column of it (the traces): at scale that shard is ~100k traces read for nothing."""
    import shutil
    from pathlib import Path

    import curate.validate as validate
    from curate.cli import app

    root = Path(__file__).resolve().parents[1] / "recipes"
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "q.yaml").write_text((root / "quickstart.yaml").read_text())
    seen: list[list[str]] = []
    real = validate.check_plan

    def spy(lr, columns, work_dir=None, rows=None):
        seen.append(list(rows.columns) if rows is not None else [])
        if rows is not None:
            assert rows.height > 0
        return real(lr, columns, work_dir, rows)

    monkeypatch.setattr(validate, "check_plan", spy)
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "q.yaml", "--output", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert seen == [["gold_answer"]]
