"""verify -> difficulty -> select -> curriculum through the real runner and publisher."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import polars as pl
import pytest

from curate.recipe import load_recipe
from curate.runner import run_recipe

SUBJECTS = ["algebra", "geometry", "counting"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path) -> Path:
    rows = []
    for i in range(18):
        a = 3 * i + 1
        right = i % 5  # 0..4 of 4 traces correct
        gens = [
            f"<think>\n{'step ' * (20 + 10 * i + k)}\n</think>\n\nThe answer is \\boxed{{{a if k < right else a + 1}}}."
            for k in range(4)
        ]
        rows.append({"q": f"Problem {i}: compute {a}.", "answer": str(a), "subject": SUBJECTS[i % 3], "gens": gens})
    (tmp_path / "traces.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = tmp_path / "recipe.yaml"
    p.write_text(
        """name: dq
version: 0.1.0
license: mit
seed: 3
sources:
  - kind: traces
    path: traces.jsonl
    fields: {problem: q, gold_answer: answer}
    meta_fields: [subject]
    trace_field: gens
    teacher: t
stages:
  - type: verify
    num_proc: 0
  - type: difficulty
    methods:
      - {method: pass_rate, source: teacher, weight: 1.0}
      - {method: length, weight: 0.5}
    buckets: {n: 3}
    max_pass_rate: 0.9
    max_correct_per_problem: 2
  - type: select
    n: 6
    category: subject
  - type: curriculum
    order: easy_to_hard
output:
  dir: out
"""
    )
    return p


def test_published_train_split_is_in_curriculum_order(tmp_path):
    res = run_recipe(load_recipe(write(tmp_path)))
    vdir = tmp_path / "out" / "dq" / "0.1.0"
    train = datasets.load_dataset(str(vdir), split="train", cache_dir=str(tmp_path / "hf"))
    ranks = train["curriculum_rank"]
    assert ranks == list(range(len(ranks)))
    d = train["difficulty"]
    assert d == sorted(d)
    assert all(c for c in train["correct"])  # only correct traces train by default
    # 18 problems: 3 unsolved (0/4), 4 above the window (4/4) -> 11 left; select keeps 6, 2 per subject
    assert len(set(train["problem_id"])) == 6
    subjects = [json.loads(m)["subject"] for m in train["meta"]]
    per = {s: len({p for p, t in zip(train["problem_id"], subjects) if t == s}) for s in SUBJECTS}
    assert per == {s: 2 for s in SUBJECTS}
    assert max(pl.DataFrame({"p": train["problem_id"]}).group_by("p").len()["len"]) <= 2
    reasons = set(res.rejected["drop_reason"].to_list())
    assert {"unsolved", "pass_rate_above_window", "incorrect_trace", "not_selected"} <= reasons
    card = (vdir / "README.md").read_text()
    assert "curriculum order" in card
