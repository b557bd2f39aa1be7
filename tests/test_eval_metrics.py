"""curate.eval metrics, reports and compare: estimators on known counts, maj@k ties, bootstrap coverage."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.errors import SourceError
from curate.eval import compare_runs
from curate.eval.metrics import (
    bootstrap_ci,
    majority_score,
    paired_bootstrap_diff,
    per_problem,
    summarize,
)
from curate.verify import pass_at_k
from curate.eval.report import PROBLEMS, RESULTS_JSON, RESULTS_MD, load_run, render_markdown, write_results


def comb_pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c correct) that hold at least one correct sample."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 16])
def test_pass_at_k_is_the_unbiased_estimator(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            want = comb_pass_at_k(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
            if n <= 8:
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(200, 3, 100) == pytest.approx(comb_pass_at_k(200, 3, 100), rel=1e-9)


def _samples(spec: list[list[tuple[str | None, bool]]], **extra_cols) -> pl.DataFrame:
    rows = []
    for p, votes in enumerate(spec):
        for i, (ans, ok) in enumerate(votes):
            rows.append(
                {
                    "problem_id": f"p{p}",
                    "sample_index": i,
                    "pred_answer": ans,
                    "correct": ok,
                    "finish_reason": "stop",
                    "completion_tokens": 10,
                    "meta": json.dumps({"level": p % 2}),
                }
            )
    return pl.DataFrame(rows)


def test_per_problem_pass_at_k_on_known_counts():
    counts = [(8, 0), (8, 1), (8, 3), (8, 8), (4, 2)]
    spec = [[("1" if i < c else f"w{i}", i < c) for i in range(n)] for n, c in counts]
    pp = per_problem(_samples(spec), ks=[1, 2, 4, 8])
    assert pp["n_correct"].to_list() == [c for _, c in counts]
    assert pp["pass@1"].to_list() == pytest.approx([c / n for n, c in counts])
    for k in (2, 4):
        assert pp[f"pass@{k}"].to_list() == pytest.approx([comb_pass_at_k(n, c, k) for n, c in counts])
    # the 4-sample problem has no pass@8; the benchmark mean leaves it out and says so
    assert math.isnan(pp["pass@8"][4])
    s = summarize(pp, n_boot=200)
    assert s["metrics"]["pass@8"]["n_problems_lt_k"] == 1
    assert s["metrics"]["pass@8"]["value"] == pytest.approx(np.mean([comb_pass_at_k(8, c, 8) for _, c in counts[:4]]))
    assert s["metrics"]["pass@1"]["value"] == pytest.approx(np.mean([c / n for n, c in counts]))


def test_majority_vote_and_ties():
    # clear majority, right / wrong
    assert majority_score(["4", "4", "5"], [True, True, False])[0] == 1.0
    assert majority_score(["5", "5", "4"], [False, False, True])[0] == 0.0
    # 2-2 tie between a right and a wrong answer: expected score of a random tie break
    assert majority_score(["4", "5", "4", "5"], [True, False, True, False]) == (0.5, "4", 2)
    # 4-way tie with one right answer
    assert majority_score(["a", "b", "c", "d"], [False, True, False, False])[0] == 0.25
    # tie between two wrong answers
    assert majority_score(["a", "b", "4"], [False, False, True])[0] == pytest.approx(1 / 3)
    # correct answers spelled differently vote together (the verifier says both equal the gold)
    assert majority_score(["1/2", "0.5", "3", "3"], [True, True, False, False])[0] == 0.5
    assert majority_score(["1/2", "0.5", "\\frac12", "3", "3"], [True] * 3 + [False] * 2)[0] == 1.0
    # samples without an answer do not vote; nobody voting scores 0
    assert majority_score([None, "", "4"], [False, False, True])[0] == 1.0
    assert majority_score([None, None], [False, False]) == (0.0, None, 0)
    # whitespace does not split a vote
    assert majority_score([" 7", "7 ", "8"], [False, False, True])[0] == 0.0


def test_maj_at_k_uses_the_first_k_samples():
    spec = [
        [("1", True), ("2", False), ("2", False), ("1", True)],  # maj@2 tie -> .5; maj@4 tie -> .5
        [("9", False), ("9", False), ("3", True), ("3", True), ("3", True)],  # maj@2 0, maj@5 1
    ]
    pp = per_problem(_samples(spec), ks=[1], maj_ks=[2, 4])
    assert pp["maj@2"].to_list() == [0.5, 0.0]
    assert pp["maj@4"].to_list() == [0.5, 0.5]
    pp5 = per_problem(_samples(spec), maj_ks=[5])
    assert math.isnan(pp5["maj@5"][0]) and pp5["maj@5"][1] == 1.0


def test_summary_tokens_truncation_and_breakdown():
    rows = []
    for p in range(4):
        for i in range(2):
            rows.append(
                {
                    "problem_id": f"p{p}",
                    "sample_index": i,
                    "correct": p < 2,
                    "pred_answer": "x",
                    "finish_reason": "length" if (p == 3 and i == 0) else "stop",
                    "completion_tokens": 100 * (p + 1),
                    "meta": json.dumps({"subject": "Algebra" if p % 2 == 0 else "Geometry", "level": 1}),
                }
            )
    pp = per_problem(pl.DataFrame(rows), ks=[1], breakdown=["subject", "level", "absent"])
    s = summarize(pp, n_boot=200, breakdown=["subject", "level", "absent"])
    assert s["truncated_rate"] == pytest.approx(1 / 8)
    assert s["mean_completion_tokens"] == pytest.approx(250.0)
    by = {g["subject"]: g for g in s["breakdown"]["subject"]}
    assert by["Algebra"]["pass@1"] == 0.5 and by["Geometry"]["pass@1"] == 0.5
    assert by["Algebra"]["n_problems"] == 2
    assert "absent" not in s["breakdown"]
    md = render_markdown({"name": "t", "summary": s})
    assert "## By subject (%)" in md and "| Algebra | 2 | 50.0 |" in md


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.random(30)
    big = rng.random(3000)
    lo_s, hi_s = bootstrap_ci(small, n_boot=2000)
    lo_b, hi_b = bootstrap_ci(big, n_boot=2000)
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def _simulate_runs(rng, n_problems, n_samples, p_a, p_b):
    c_a = rng.binomial(n_samples, p_a)
    c_b = rng.binomial(n_samples, p_b)
    return c_a / n_samples, c_b / n_samples


def test_paired_bootstrap_covers_the_true_difference():
    """Coverage of the 95% interval over repeated synthetic experiments is close to 95%."""
    rng = np.random.default_rng(0)
    n_problems, n_samples, reps, hits = 150, 4, 150, 0
    true_delta = 0.08

    def draw(size):  # problems from a population; B is better by about true_delta (clipped to [0, 1])
        base = rng.beta(2, 2, size)
        return base, np.clip(base + rng.normal(true_delta, 0.05, size), 0, 1)

    big_a, big_b = draw(1_000_000)
    true_pop = float(np.mean(big_b - big_a))  # the population difference the interval should cover
    widths = []
    for r in range(reps):
        p_a, p_b = draw(n_problems)
        a, b = _simulate_runs(rng, n_problems, n_samples, p_a, p_b)
        res = paired_bootstrap_diff(a, b, n_boot=1000, seed=r)
        widths.append(res["hi"] - res["lo"])
        hits += res["lo"] <= true_pop <= res["hi"]
    coverage = hits / reps
    assert 0.88 <= coverage <= 0.995, coverage
    base = p_a
    # pairing matters: the unpaired interval would be much wider than the paired one
    a, b = _simulate_runs(rng, n_problems, n_samples, base, np.clip(base + true_delta, 0, 1))
    lo_a, hi_a = bootstrap_ci(a, n_boot=1000)
    assert np.mean(widths) < 2 * (hi_a - lo_a)


def _write_run(run_dir: Path, name: str, per_sample_correct: dict[str, list[bool]]) -> None:
    rows = []
    for pid, oks in per_sample_correct.items():
        for i, ok in enumerate(oks):
            rows.append({"problem_id": pid, "sample_index": i, "correct": ok, "pred_answer": "1" if ok else "2",
                         "completion_tokens": 50, "finish_reason": "stop"})
    pp = per_problem(pl.DataFrame(rows), ks=[1, 2], maj_ks=[4])
    run_dir.mkdir(parents=True)
    pp.write_parquet(run_dir / PROBLEMS)
    write_results(run_dir, {"name": name, "summary": summarize(pp, n_boot=200)})


def test_compare_runs_interval_covers_the_true_difference(tmp_path):
    # one fixed synthetic experiment (a 95% interval misses 1 time in 20 by design; the coverage
    # rate itself is checked over 150 experiments in test_paired_bootstrap_covers_the_true_difference)
    rng = np.random.default_rng(0)
    n_problems, n = 400, 4
    p = rng.beta(1.5, 1.5, n_problems)
    delta = 0.10
    q = np.clip(p + delta, 0, 1)
    true_diff = float(np.mean(q - p))  # the difference of the per-problem success probabilities
    run_a = {f"q{i}": list(rng.random(n) < p[i]) for i in range(n_problems)}
    run_b = {f"q{i}": list(rng.random(n) < q[i]) for i in range(n_problems)}
    run_b["only-b"] = [True] * n
    _write_run(tmp_path / "a", "before", run_a)
    _write_run(tmp_path / "b", "after", run_b)
    md = compare_runs(tmp_path / "a", tmp_path / "b", n_boot=2000, seed=3)
    row = next(line for line in md.splitlines() if line.startswith("| pass@1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    lo, hi = (float(x) / 100 for x in cells[4].strip("[]").split(","))
    assert lo <= true_diff <= hi, (lo, true_diff, hi)
    assert lo > 0  # a 10-point gain on 400 problems is detected
    obs = float(cells[3]) / 100
    pa = np.mean([np.mean(v) for v in run_a.values()])
    pb = np.mean([np.mean(v) for k, v in run_b.items() if k != "only-b"])
    assert obs == pytest.approx(pb - pa, abs=6e-4)
    assert "Paired over 400 common problems; 0 only in A, 1 only in B" in md
    assert "| maj@4 |" in md and "| pass@2 |" in md and "mean completion tokens" in md
    # A against itself: zero difference, zero-width interval
    same = compare_runs(tmp_path / "a", tmp_path / "a", n_boot=500)
    row = next(line for line in same.splitlines() if line.startswith("| pass@1 |"))
    assert "| +0.0 | [0.0, 0.0] |" in row


def test_compare_runs_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match=r"nope: not an eval run folder") as e:
        compare_runs(tmp_path / "nope", tmp_path / "nope")
    assert "\n" not in str(e.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / RESULTS_JSON).write_text("{}")
    with pytest.raises(SourceError, match="needs results.json and problems.parquet"):
        load_run(tmp_path / "half")
    pl.DataFrame({"problem_id": ["x"], "n_samples": [1]}).write_parquet(tmp_path / "half" / PROBLEMS)
    with pytest.raises(SourceError, match="field 'summary' is missing"):
        load_run(tmp_path / "half")
    (tmp_path / "half" / RESULTS_JSON).write_text('{"summary": {}}')
    with pytest.raises(SourceError, match=r"problems.parquet: column 'pass@1' is missing"):
        load_run(tmp_path / "half")
    _write_run(tmp_path / "x", "x", {"a": [True]})
    _write_run(tmp_path / "y", "y", {"b": [True]})
    with pytest.raises(SourceError, match="no problem_id in common"):
        compare_runs(tmp_path / "x", tmp_path / "y")
    assert (tmp_path / "x" / RESULTS_MD).is_file()
