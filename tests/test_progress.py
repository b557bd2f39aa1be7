"""What a run shows (issue 17): a start and an end line per stage, plain progress lines without a
terminal, and a funnel table that does not wrap at 80 columns in a log file."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from curate.stages.base import Context

ROOT = Path(__file__).resolve().parents[1]


def test_run_without_a_terminal_prints_stage_lines_and_an_unwrapped_funnel(tmp_path):
    env = {"CURATE_HOME": str(tmp_path / ".curate"), "PATH": "/usr/bin:/bin", "CURATE_PROGRESS_EVERY": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", str(ROOT / "recipes" / "quickstart.yaml"), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr.splitlines()
    stages = ["source", "verify", "dedup", "decontaminate", "difficulty", "curriculum", "audit"]
    for i, st in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {st}: "
        lines = [ln for ln in err if ln.startswith(tag)]
        assert len(lines) == 2, (st, lines)  # start and end
        assert re.search(r"\d+ -> \d+ rows.*\d\.\d\d s", lines[1]), lines[1]
    assert any(re.match(r"\[5/7\] difficulty: 156 -> \d+ rows, dropped \d+ \(max_correct_per_problem", ln) for ln in err)
    assert any(re.match(r"  verify: \d+/168 rows \(", ln) for ln in err)  # a plain progress line
    assert any(re.match(r"  dedup: MinHash: \d+/41 rows \(", ln) for ln in err)
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("│")]
    assert len(table) == len(stages)  # one line per stage: nothing wrapped
    assert any("max_correct_per_problem" in ln and "unsolved" in ln for ln in table)
    # four traces per problem (one problem has 8: an exact copy merged at load): pass@k for k <= 4 only
    assert "pass@4=" in proc.stdout and "pass@8" not in proc.stdout

    card = (tmp_path / "o" / "quickstart" / "0.1.0" / "README.md").read_text()
    assert "| gsm8k_test | 160 | 4 | 0 |" in card  # rows dropped for the benchmark = the funnel's 4
    # served from the cache: the end lines say so
    proc = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", str(ROOT / "recipes" / "quickstart.yaml"), "--output", str(tmp_path / "o2")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0
    assert sum(ln.endswith("cached") for ln in proc.stderr.splitlines()) == len(stages) - 1


def test_progress_without_a_terminal_logs_plain_lines(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CURATE_PROGRESS_EVERY", "0")
    ctx = Context.for_test(tmp_path)
    with caplog.at_level(logging.INFO, logger="curate"):
        with ctx.progress(3000, "dedup") as bar:
            for _ in range(3):
                bar.advance(1000)
    msgs = [r.getMessage() for r in caplog.records]
    assert "  dedup: 3,000/3,000 rows" in " ".join(msgs) and all("rows/s" in m for m in msgs)


def test_cli_version_train_help_audit_output_and_cache(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from curate import __version__
    from curate.cli import app

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.setenv("COLUMNS", "200")
    r = CliRunner()
    assert r.invoke(app, ["--version"]).output.strip() == f"curate {__version__}"
    assert "pip install 'curate[train]'" in r.invoke(app, ["train", "--help"]).output
    # audit takes --output like run (and still --out)
    traces = tmp_path / "t.jsonl"
    traces.write_text(json.dumps({"problem": "p", "reasoning": "We add 1 and 1 to get 2.", "answer_text": "\\boxed{2}"}) + "\n")
    res = r.invoke(app, ["audit", str(traces), "--output", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "audit" / "report.html").is_file()
    # cache ls / clear after a run
    res = r.invoke(app, ["run", str(ROOT / "recipes" / "quickstart.yaml"), "--output", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["cache", "ls", "quickstart"])
    assert res.exit_code == 0 and "7 entries" in res.output and "verify" in res.output and "source" in res.output and "KB" in res.output
    res = r.invoke(app, ["cache", "clear", str(ROOT / "recipes" / "quickstart.yaml")])
    assert res.exit_code == 0 and "removed" in res.output
    assert "no cache entries" in r.invoke(app, ["cache", "ls", "quickstart"]).output
    assert r.invoke(app, ["cache", "clear", "nope"]).exit_code == 2


def test_warnings_reach_the_terminal_and_the_card(tmp_path, monkeypatch):
    """A declared trace format that does not fit (plain CoT declared as think) warns under the funnel
    and in the dataset card, instead of a dataset where every reasoning is silently empty."""
    from typer.testing import CliRunner

    from curate.cli import app

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.setenv("COLUMNS", "250")
    plain = "We add 2 and 2.\n\nTwo plus two is four.\n\nSo the answer is $\\boxed{4}$."
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"problem": f"What is 2+2? ({i})", "gold": "4", "trace": plain}) + "\n"
                                              for i in range(4)))
    (tmp_path / "r.yaml").write_text(
        "name: w\nversion: 0.1.0\nlicense: mit\nsources:\n  - kind: traces\n    path: t.jsonl\n"
        "    fields: {gold_answer: gold}\n    trace_field: trace\n    trace_format: think\n"
        "stages:\n  - type: verify\noutput:\n  dir: out\n")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--output", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "warning source: t: trace_format: think, but 100% of the traces have no <think> tags" in res.output
    card = (tmp_path / "o" / "w" / "0.1.0" / "README.md").read_text()
    assert "## Warnings" in card and "trace_format: plain" in card
