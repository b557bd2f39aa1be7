"""Content-addressed stage cache: a stage's key comes from the frame it actually receives.

The failing scenario (issue 13): a `sample` stage with persistently failed requests is not cached;
once the endpoint heals, a re-run recovers those rows, so everything downstream must be recomputed
on the new input. Keys derived from the upstream *key* served `verify` from the cache with the old
input, and the recovered (paid-for) rows reached neither split.
"""

from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from curate.testing.openai_server import Fault, OpenAIServer, Reply

RECIPE = """
name: recovered
version: 0.1.0
license: cc0-1.0
sources:
  - kind: file
    path: problems.jsonl
    fields: {problem: question, gold_answer: answer}
stages:
  - type: sample
    teacher:
      backend: openai
      model: loop-teacher
      api_key_env: LOOP_KEY
      concurrency: 4
      max_retries: 0
      backoff_initial: 0.01
    n: 2
    max_failures: 0.5
  - type: verify
  - type: difficulty
output:
  dir: out
"""


def _rows(vdir, split):
    files = sorted((vdir / "data").glob(f"{split}-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()


def test_recovered_upstream_rows_reach_downstream_stages(tmp_path, monkeypatch):
    from curate.cli import app

    n_problems = 12
    rows = [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(n_problems)]
    (tmp_path / "problems.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    healed = {"ok": False}

    def script(messages, params, index):
        i = int(messages[-1]["content"].split("What is ")[1].split(" ")[0])
        if i in (3, 7) and not healed["ok"]:
            return Fault.error(400, "sticky failure")  # not retried: a teacher_error row
        return Reply(content=f"So \\boxed{{{2 * i}}}.", reasoning_content=f"{i} and {i}")

    with OpenAIServer(script=script) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("LOOP_KEY", "sk-test-not-a-real-key-000")
        monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
        monkeypatch.chdir(tmp_path)
        res = CliRunner().invoke(app, ["run", "recipe.yaml"])
        assert res.exit_code == 0, res.output
        first = _rows(tmp_path / "out" / "recovered" / "0.1.0", "train")
        assert first["problem_id"].n_unique() == n_problems - 2

        healed["ok"] = True
        res = CliRunner().invoke(app, ["run", "recipe.yaml", "--set", "version=0.1.1"])
        assert res.exit_code == 0, res.output
    vdir = tmp_path / "out" / "recovered" / "0.1.1"
    train, rejected = _rows(vdir, "train"), _rows(vdir, "rejected")
    seen = set(train["problem_id"].to_list())
    if rejected.height:
        seen |= set(rejected["problem_id"].to_list())
    assert len(seen) == n_problems, "recovered problems are in neither split"
    assert train["problem_id"].n_unique() == n_problems
    manifest = json.loads((vdir / "manifest.json").read_text())
    verify = next(s for s in manifest["stages"] if s["stage"] == "verify")
    assert verify["rows_in"] == 2 * n_problems and not verify["cached"]


def test_identical_input_is_served_from_cache(tmp_path, monkeypatch):
    """The other half of the contract: the same input content hits the cache (a re-run recomputes nothing)."""
    from curate.cli import app

    rows = [{"question": f"Q{i}", "answer": str(i), "trace": f"<think>t{i}</think> \\boxed{{{i}}}"} for i in range(5)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "recipe.yaml").write_text(
        "name: again\nversion: 0.1.0\nsources:\n  - kind: traces\n    path: t.jsonl\n"
        "    fields: {problem: question, gold_answer: answer}\n    trace_field: trace\n"
        "stages:\n  - type: verify\n  - type: difficulty\noutput:\n  dir: out\n"
    )
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["run", "recipe.yaml"]).exit_code == 0
    res = CliRunner().invoke(app, ["run", "recipe.yaml", "--set", "version=0.1.1"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "out" / "again" / "0.1.1" / "manifest.json").read_text())
    assert all(s["cached"] for s in manifest["stages"] if s["stage"] != "source")
