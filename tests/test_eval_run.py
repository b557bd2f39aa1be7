"""`curate eval` end to end: a local benchmark, the real openai client against the loopback server
with scripted answers, real verification, the run folder, compare, presets and one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from curate.errors import RecipeError, SourceError, VersionExistsError
from curate.eval import compare_runs, run_eval
from curate.eval.config import EvalRecipe
from curate.eval.report import PROBLEMS, RESULTS_JSON, RESULTS_MD, SAMPLES
from curate.eval.run import benchmark_id, breakdown_fields
from curate.presets import PRESETS
from curate.testing.openai_server import OpenAIServer, Reply
from curate.yamlio import load_yaml_model

REPO = Path(__file__).resolve().parents[1]

# question -> (gold, subject, level, the answers of samples 0..3; None = truncated without an answer)
BENCH = {
    "What is 17 + 25?": ("42", "arith", 1, ["42", "42", "42", "42"]),  # c=4
    "What is 9 * 8?": ("72", "arith", 1, ["7", "7", "7", "7"]),  # c=0
    "What is 144 / 12?": ("12", "arith", 2, ["12", "1", "12", "1"]),  # c=2, 2-2 tie
    "Solve 3x + 5 = 20.": ("5", "algebra", 2, ["3", "4", "5", "6"]),  # c=1, 4-way tie
    "What is 1/2 + 1/3?": ("\\frac{5}{6}", "algebra", 3, ["\\frac{5}{6}", "5/6", "1/6", "1/6"]),  # c=2, tie
    "How many divisors does 36 have?": ("9", "nt", 3, ["9", None, "9", "8"]),  # c=2, one truncated
}
GOLD = {q: g for q, (g, *_) in BENCH.items()}
GOLD.update({r["question"]: r["final"] for r in map(json.loads, (REPO / "recipes/data/eval-tiny.jsonl").open())})
CORRECT = {q: [a is not None and a in (g, "5/6") for a in ans] for q, (g, _, _, ans) in BENCH.items()}
# maj@4 / maj@2 by the documented rule (ties: share of tied answers that are right)
MAJ4 = {"What is 17 + 25?": 1, "What is 9 * 8?": 0, "What is 144 / 12?": 0.5, "Solve 3x + 5 = 20.": 0.25,
        "What is 1/2 + 1/3?": 0.5, "How many divisors does 36 have?": 1}
MAJ2 = {"What is 17 + 25?": 1, "What is 9 * 8?": 0, "What is 144 / 12?": 0.5, "Solve 3x + 5 = 20.": 0,
        "What is 1/2 + 1/3?": 1, "How many divisors does 36 have?": 1}


def script(messages, params, index):
    q = messages[-1]["content"].split("\n")[0]
    if params["model"] == "after":  # the distilled student: always right
        return Reply(content=f"<think>\nI compute it carefully.\n</think>\n\n\\boxed{{{GOLD[q]}}}")
    a = BENCH[q][3][index]
    if a is None:
        return Reply(content="<think>\nlet me think " + "and think " * 30, finish_reason="length")
    return Reply(content=f"<think>\nLet me solve: {q}\nStep one, step two.\n</think>\n\nSo the answer is \\boxed{{{a}}}.")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDENT_API_KEY", "sk-test")
    rows = [{"question": q, "final": g, "topic": s, "difficulty": lv} for q, (g, s, lv, _) in BENCH.items()]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with OpenAIServer(script=script) as srv:
        yield tmp_path, srv


def write_recipe(tmp_path: Path, srv, **over) -> Path:
    bench = over.pop("benchmark", {"kind": "file", "path": "bench.jsonl", "fields": {"problem": "question",
                                   "gold_answer": "final"}, "meta_fields": ["topic", "difficulty"]})
    recipe = {
        "name": "tiny",
        "benchmark": bench,
        "sampling": {
            "teacher": {"backend": "openai", "model": "before", "base_url": srv.base_url,
                        "api_key_env": "STUDENT_API_KEY", "max_retries": 0},
            "n": 4,
            "temperature": 0.7,
            "max_tokens": 64,
        },
        "verify": {"num_proc": 0},
        "metrics": {"pass_k": [1, 2, 4], "maj_k": [2, 4], "n_boot": 500},
        **over,
    }
    import yaml

    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def unbiased(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_eval_run_scores_match_the_estimators(env):
    tmp_path, srv = env
    run = run_eval(write_recipe(tmp_path, srv), output=tmp_path / "before")
    assert run == tmp_path / "before"
    for f in (RESULTS_JSON, RESULTS_MD, SAMPLES, PROBLEMS):
        assert (run / f).is_file()
    res = json.loads((run / RESULTS_JSON).read_text())
    s = res["summary"]
    assert s["n_problems"] == 6 and s["n_samples"] == 24
    counts = {q: sum(ok) for q, ok in CORRECT.items()}
    m = s["metrics"]
    assert m["pass@1"]["value"] == pytest.approx(sum(c / 4 for c in counts.values()) / 6)
    for k in (2, 4):
        assert m[f"pass@{k}"]["value"] == pytest.approx(sum(unbiased(4, c, k) for c in counts.values()) / 6)
    assert m["maj@4"]["value"] == pytest.approx(sum(MAJ4.values()) / 6)
    assert m["maj@2"]["value"] == pytest.approx(sum(MAJ2.values()) / 6)
    assert m["pass@1"]["ci_low"] <= m["pass@1"]["value"] <= m["pass@1"]["ci_high"]
    assert s["truncated_rate"] == pytest.approx(1 / 24)
    assert 0 < s["mean_reasoning_tokens"] < s["mean_completion_tokens"]
    assert res["verdicts"]["correct"] == sum(counts.values()) and res["verdicts"]["truncated"] == 1

    # per problem, against the verifier's own verdicts and the script's plan
    samples = pl.read_parquet(run / SAMPLES)
    problems = pl.read_parquet(run / PROBLEMS).join(
        samples.group_by("problem_id").agg(pl.col("problem").first()), on="problem_id"
    )
    for row in problems.iter_rows(named=True):
        q = row["problem"]
        assert row["n_correct"] == counts[q], q
        assert row["pass@2"] == pytest.approx(unbiased(4, counts[q], 2))
        assert row["maj@4"] == pytest.approx(MAJ4[q]), q
        assert row["topic"] == BENCH[q][1]
    by_topic = {g["topic"]: g for g in s["breakdown"]["topic"]}
    assert by_topic["arith"]["n_problems"] == 3
    assert by_topic["arith"]["pass@1"] == pytest.approx((4 + 0 + 2) / 12)
    assert {g["difficulty"] for g in s["breakdown"]["difficulty"]} == {"1", "2", "3"}

    # the model was sampled through curate.sampling with the recipe's parameters
    log = srv.requests()
    assert len(log) == 6 and all(r.status == 200 for r in log)
    assert {r.body["model"] for r in log} == {"before"} and {r.body["n"] for r in log} == {4}
    assert {r.body["temperature"] for r in log} == {0.7}
    md = (run / RESULTS_MD).read_text()
    assert "| pass@4 |" in md and "## By topic (%)" in md and "truncation rate" in md
    assert res["recipe"]["sampling"]["teacher"]["api_key_env"] == "STUDENT_API_KEY"
    assert "sk-test" not in (run / RESULTS_JSON).read_text()


def test_eval_resume_compare_and_immutable_runs(env):
    tmp_path, srv = env
    recipe = write_recipe(tmp_path, srv)
    before = run_eval(recipe, output=tmp_path / "before")
    n_req = srv.count()
    again = run_eval(recipe, output=tmp_path / "again")  # served from the durable sampling log
    assert srv.count() == n_req
    assert json.loads((again / RESULTS_JSON).read_text())["summary"]["metrics"] == json.loads(
        (before / RESULTS_JSON).read_text()
    )["summary"]["metrics"]
    with pytest.raises(VersionExistsError, match="already exists"):
        run_eval(recipe, output=before)
    after = run_eval(recipe, ["sampling.teacher.model=after"], output=tmp_path / "after")
    assert srv.count() == n_req + 6
    res_after = json.loads((after / RESULTS_JSON).read_text())
    assert res_after["summary"]["metrics"]["pass@1"]["value"] == 1.0
    md = compare_runs(before, after, n_boot=2000)
    row = next(line for line in md.splitlines() if line.startswith("| pass@1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    p_before = json.loads((before / RESULTS_JSON).read_text())["summary"]["metrics"]["pass@1"]["value"]
    assert float(cells[3]) == pytest.approx(100 * (1 - p_before), abs=0.05)
    lo, hi = (float(x) for x in cells[4].strip("[]").split(","))
    assert 0 < lo <= 100 * (1 - p_before) <= hi
    assert "Paired over 6 common problems" in md
    # default run folder: <output.dir>/<name>/<UTC stamp>, never overwritten
    r1 = run_eval(write_recipe(tmp_path, srv, output={"dir": str(tmp_path / "runs")}))
    r2 = run_eval(tmp_path / "eval.yaml")
    assert r1.parent == r2.parent == tmp_path / "runs" / "tiny" and r1 != r2


def test_example_recipe_runs_against_the_loopback_server(env, tmp_path):
    _, srv = env
    recipe = REPO / "recipes" / "eval-local.yaml"
    run = run_eval(
        recipe,
        [f"sampling.teacher.base_url={srv.base_url}", "sampling.teacher.model=after", "metrics.n_boot=200",
         "verify.num_proc=0"],
        output=tmp_path / "example",
    )
    res = json.loads((run / RESULTS_JSON).read_text())
    assert res["summary"]["n_problems"] == 8 and res["summary"]["n_samples"] == 32
    assert set(res["summary"]["breakdown"]) == {"topic", "difficulty"}


def _bad_field_script(messages, params, index):  # pragma: no cover - never reached
    raise AssertionError("no request should be sent")


def test_missing_benchmark_field_is_a_one_line_error(env):
    tmp_path, srv = env
    bad = {"kind": "file", "path": "bench.jsonl", "fields": {"problem": "prompt_text", "gold_answer": "final"}}
    with pytest.raises(SourceError) as e:
        run_eval(write_recipe(tmp_path, srv, benchmark=bad), output=tmp_path / "x")
    msg = str(e.value)
    assert "\n" not in msg and "bench.jsonl" in msg and "'prompt_text'" in msg
    bad = {"kind": "file", "path": "bench.jsonl", "fields": {"problem": "question"}, "meta_fields": ["subject"]}
    with pytest.raises(SourceError, match=r"bench.jsonl: meta field 'subject' not found"):
        run_eval(write_recipe(tmp_path, srv, benchmark=bad), output=tmp_path / "x")
    with pytest.raises(SourceError, match=r"missing.jsonl: no such file"):
        run_eval(write_recipe(tmp_path, srv, benchmark={"path": "missing.jsonl"}), output=tmp_path / "x")
    assert srv.count() == 0 and not (tmp_path / "x").exists()


def test_recipe_errors_name_the_file_line_and_field(env):
    tmp_path, srv = env
    path = write_recipe(tmp_path, srv)
    text = path.read_text()
    path.write_text(text.replace("  pass_k:", "  pass_kk:"))
    with pytest.raises(RecipeError, match=r"eval.yaml:\d+: metrics.pass_kk: unknown key"):
        run_eval(path)
    path.write_text(text)
    with pytest.raises(RecipeError, match=r"eval.yaml:\d+: metrics: .*k=8 needs at least 8 samples"):
        run_eval(path, ["metrics.pass_k=[1, 8]"])
    with pytest.raises(RecipeError, match=r"eval.yaml:\d+: benchmark: .*unknown benchmark preset 'gsm9k'"):
        run_eval(path, ["benchmark=gsm9k"])


def _mirror(root: Path, name: str, rows: list[dict]) -> None:
    """A local copy of a preset's hub repo, laid out like the hub (README configs + data files)."""
    pre = PRESETS[name]
    repo = root / pre.path
    sub = f"{pre.config}/" if pre.config else ""
    (repo / sub).mkdir(parents=True, exist_ok=True)
    (repo / f"{sub}{pre.split}-00000-of-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = pre.config or "default"
    (repo / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {cfg}\n  data_files:\n  - split: {pre.split}\n    path: {sub}{pre.split}-*\n---\n"
    )


def test_presets_resolve_through_the_hub_loader(env, monkeypatch):
    tmp_path, srv = env
    _mirror(tmp_path, "gsm8k", [{"question": "What is 17 + 25?", "answer": "17 + 25 = 42\n#### 42"},
                                {"question": "What is 9 * 8?", "answer": "9 * 8 = 72\n#### 72"}])
    _mirror(tmp_path, "math500", [{"problem": "What is 144 / 12?", "answer": "12", "subject": "Prealgebra",
                                   "level": 1, "unique_id": "a"},
                                  {"problem": "Solve 3x + 5 = 20.", "answer": "5", "subject": "Algebra",
                                   "level": 2, "unique_id": "b"}])
    _mirror(tmp_path, "aime24", [{"id": 1, "problem": "What is 1/2 + 1/3?", "answer": "\\frac{5}{6}"}])
    _mirror(tmp_path, "aime25", [{"id": "1", "problem": "How many divisors does 36 have?", "answer": "9"}])
    monkeypatch.chdir(tmp_path)  # datasets resolves a hub id to the local folder of that name first
    expect = {"gsm8k": ["42", "72"], "math500": ["12", "5"], "aime24": ["\\frac{5}{6}"], "aime25": ["9"]}
    for name in PRESETS:
        recipe_path = write_recipe(tmp_path, srv, benchmark=name, name=f"p-{name}")
        recipe = load_yaml_model(recipe_path, EvalRecipe)
        assert PRESETS[name].path in benchmark_id(recipe)
        run = run_eval(recipe_path, ["sampling.teacher.model=after", "metrics.pass_k=[1]", "metrics.maj_k=[]"],
                       output=tmp_path / f"run-{name}")
        samples = pl.read_parquet(run / SAMPLES)
        golds = samples.group_by("problem_id", maintain_order=True).agg(pl.col("gold_answer").first())
        assert golds["gold_answer"].to_list() == expect[name], name
        res = json.loads((run / RESULTS_JSON).read_text())
        assert res["summary"]["metrics"]["pass@1"]["value"] == 1.0, name
        if name == "math500":
            assert breakdown_fields(recipe) == ["subject", "level"]
            assert {g["subject"] for g in res["summary"]["breakdown"]["subject"]} == {"Prealgebra", "Algebra"}


def test_cli_eval_and_compare(env):
    from typer.testing import CliRunner

    from curate.cli import app

    tmp_path, srv = env
    recipe = write_recipe(tmp_path, srv)
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(recipe), "--output", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "pass@1" in r.output and (tmp_path / "a" / RESULTS_JSON).is_file()
    r = runner.invoke(app, ["eval", str(recipe), "--output", str(tmp_path / "b"), "--set", "sampling.teacher.model=after"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 0 and "Paired over 6 common problems" in r.output
    r = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "nope")])
    assert r.exit_code == 2 and "nope: not an eval run folder" in r.output
    assert "Traceback" not in r.output


def test_importing_the_eval_config_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, curate.eval.config, curate.eval.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
