"""End to end through the CLI: a recipe with a `sample` stage against the loopback server (endpoint
and key from the environment), verified and published; the key reaches no file."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.testing.openai_server import Fault, OpenAIServer, Reply

SECRET = "sk-live-DO-NOT-LEAK-42"

RECIPE = """
name: sampled
version: 0.1.0
description: sampled from a loopback teacher
license: cc0-1.0
sources:
  - kind: file
    path: problems.jsonl
    fields: {problem: question, gold_answer: answer}
stages:
  - type: sample
    teacher:
      backend: openai
      model: ${TEACHER_MODEL:-loop-teacher}
      api_key_env: LOOP_KEY
      concurrency: 8
      max_retries: 1
      backoff_initial: 0.01
    n: 2
    max_failures: 4
  - type: verify
    mode: filter
output:
  dir: out
  formats: [messages]
"""


def test_recipe_with_sample_stage_end_to_end(tmp_path, monkeypatch):
    from curate.cli import app

    rows = [{"question": f"What is {i} times 3?", "answer": str(3 * i)} for i in range(6)]
    (tmp_path / "problems.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)

    def script(messages, params, index):
        q = messages[-1]["content"]
        i = int(q.split("What is ")[1].split(" ")[0])
        if i == 5:
            return Fault.error(400, "prompt rejected")  # a per-row failure, not a crash
        answer = 3 * i if index == 0 else 3 * i + 1  # sample 0 right, sample 1 wrong
        return Reply(content=f"The answer is \\boxed{{{answer}}}.", reasoning_content=f"{i} times 3")

    with OpenAIServer(script=script) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("LOOP_KEY", SECRET)
        monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
        monkeypatch.chdir(tmp_path)
        res = CliRunner().invoke(app, ["run", "recipe.yaml"])
        assert res.exit_code == 0, res.output
        assert "completion_tokens=" in res.output and "failed=1" in res.output  # usage in the funnel
        assert srv.count() == 6  # 5 good requests + the bad one (a 400 is not retried)
        vdir = tmp_path / "out" / "sampled" / "0.1.0"
        train = pl.read_parquet(next((vdir / "data").glob("train-*.parquet")))
        rejected = pl.read_parquet(next((vdir / "data").glob("rejected-*.parquet")))
        assert train.height == 5 and (train["sample_index"] == 0).all()
        assert sorted(rejected["drop_reason"].to_list()) == ["incorrect"] * 5 + ["teacher_error"] * 2
        assert rejected.filter(pl.col("drop_reason") == "teacher_error")["error"][0].count("prompt rejected") == 1
        # a second run of the same recipe (new version) re-sends only the failed request: finished
        # ones come from the durable log, and a stage with failed requests is not cached
        res = CliRunner().invoke(app, ["run", "recipe.yaml", "--set", "version=0.1.1"])
        assert res.exit_code == 0, res.output
        assert srv.count() == 7
        assert [r.status for r in srv.requests()][-1] == 400
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET.encode() not in blob
    assert b"loop-teacher" in blob


def test_shipped_gsm8k_recipe_validates(monkeypatch):
    from pathlib import Path

    from curate.cli import app

    root = Path(__file__).resolve().parents[1]
    res = CliRunner().invoke(app, ["validate", str(root / "recipes" / "gsm8k-openai.yaml")])
    assert res.exit_code == 0, res.output
    assert "sample -> verify" in res.output
