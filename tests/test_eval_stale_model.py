"""A model retrained into the same folder is a different model: `curate eval` must sample it anew.

The failing scenario (issue 13): eval keyed its samples on {backend, model path}; retraining into the same
folder and evaluating again replayed the old samples and reported the old score without a word. Local
models and adapters are now identified by the content of their weight and tokenizer files.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import polars as pl  # noqa: E402
import yaml  # noqa: E402


def test_retrained_model_in_the_same_folder_is_sampled_again(tmp_path, monkeypatch):
    from curate.eval import run_eval
    from support.tiny import make_tokenizer, save_tiny

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    tok = make_tokenizer()
    model_dir = save_tiny(tmp_path / "student", tokenizer=tok, hidden=32, layers=1, heads=2, seed=0)
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps({"q": f"{i}+{i}=?", "a": str(2 * i)}) + "\n" for i in range(4)))
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "stale",
        "benchmark": {"kind": "file", "path": "bench.jsonl", "fields": {"problem": "q", "gold_answer": "a"}},
        "sampling": {"teacher": {"backend": "transformers", "model": str(model_dir), "device": "cpu"},
                     "n": 1, "temperature": 0.0, "max_tokens": 8, "user_template": "{problem}"},
        "verify": {"num_proc": 0},
        "metrics": {"pass_k": [1], "maj_k": [1], "n_boot": 100},
    }))
    first = pl.read_parquet(run_eval(recipe, output=tmp_path / "run1") / "samples.parquet")

    # "retrain": other weights, written into the very same folder
    shutil.rmtree(model_dir)
    save_tiny(model_dir, tokenizer=tok, hidden=32, layers=1, heads=2, seed=1)
    second = pl.read_parquet(run_eval(recipe, output=tmp_path / "run2") / "samples.parquet")
    assert set(first["request_hash"]).isdisjoint(set(second["request_hash"]))
    assert first["answer_text"].to_list() != second["answer_text"].to_list()  # greedy: new weights, new text

    # the same weights again (unchanged folder) are served from the durable log, not re-generated
    run3 = run_eval(recipe, output=tmp_path / "run3")
    third = pl.read_parquet(run3 / "samples.parquet")
    funnel = {r["stage"]: r for r in json.loads((run3 / "results.json").read_text())["funnel"]}
    assert funnel["sample"]["cached"] and funnel["verify"]["cached"]  # eval runs through the runner's cache
    assert third["request_hash"].to_list() == second["request_hash"].to_list()
    assert third["answer_text"].to_list() == second["answer_text"].to_list()


def test_recipe_sample_stage_recomputes_when_the_local_teacher_changes(tmp_path, monkeypatch):
    """The same for `curate run`: the sample stage's cache key carries the teacher's content."""
    from typer.testing import CliRunner

    from curate.cli import app
    from support.tiny import make_tokenizer, save_tiny

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    tok = make_tokenizer()
    teacher = save_tiny(tmp_path / "teacher", tokenizer=tok, hidden=32, layers=1, heads=2, seed=0)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"q": f"{i}+{i}=?", "a": str(2 * i)}) + "\n" for i in range(3)))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "name": "local-teacher", "version": "0.1.0",
        "sources": [{"kind": "file", "path": "p.jsonl", "fields": {"problem": "q", "gold_answer": "a"}}],
        "stages": [{"type": "sample", "teacher": {"backend": "transformers", "model": str(teacher), "device": "cpu"},
                    "n": 1, "temperature": 0.0, "max_tokens": 6, "user_template": "{problem}"}],
        "output": {"dir": "out"},
    }))
    assert CliRunner().invoke(app, ["run", "r.yaml"]).exit_code == 0
    shutil.rmtree(teacher)
    save_tiny(teacher, tokenizer=tok, hidden=32, layers=1, heads=2, seed=1)
    res = CliRunner().invoke(app, ["run", "r.yaml", "--set", "version=0.1.1"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "out" / "local-teacher" / "0.1.1" / "manifest.json").read_text())
    assert not next(s for s in manifest["stages"] if s["stage"] == "sample")["cached"]
