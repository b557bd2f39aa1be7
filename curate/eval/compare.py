"""``curate eval compare RUN_A RUN_B``: side-by-side scores, deltas (B - A) and paired bootstrap CIs.

Pairing is over problems: both runs are aligned on ``problem_id`` and the bootstrap resamples the
same problems for A and B, so the between-problem variance (most of it) cancels. Only problems
present in both runs are compared; the table says how many were left out of each.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import SourceError
from .metrics import metric_columns, paired_bootstrap_diff
from .report import fmt_num, fmt_pct, load_run


def paired_table(
    problems_a: pl.DataFrame, problems_b: pl.DataFrame, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[list[dict], int]:
    """Per metric: A, B, delta and paired bootstrap CI over common problems; and the common count."""
    mets_a, mets_b = metric_columns(problems_a), metric_columns(problems_b)
    mets = [m for m in mets_a if m in mets_b]
    joined = problems_a.select(["problem_id", *mets]).join(
        problems_b.select(["problem_id", *mets]), on="problem_id", how="inner", suffix="__b"
    )
    rows = []
    for m in mets:
        pair = joined.select(pl.col(m).fill_nan(None), pl.col(f"{m}__b").fill_nan(None)).drop_nulls()
        a = pair[m].to_numpy()
        b = pair[f"{m}__b"].to_numpy()
        res = paired_bootstrap_diff(a, b, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            {
                "metric": m,
                "a": float(a.mean()) if a.size else None,
                "b": float(b.mean()) if b.size else None,
                "n_problems": int(a.size),
                **res,
            }
        )
    return rows, joined.height


def compare_runs(run_a: Path, run_b: Path, *, n_boot: int = 10000, seed: int = 0) -> str:
    """A markdown table comparing two eval runs (B minus A), with paired bootstrap 95% intervals."""
    res_a, prob_a = load_run(Path(run_a))
    res_b, prob_b = load_run(Path(run_b))
    rows, n_common = paired_table(prob_a, prob_b, n_boot=n_boot, seed=seed)
    if n_common == 0:
        raise SourceError(f"{run_a} and {run_b}: no problem_id in common, nothing to compare")
    name_a = res_a.get("name", Path(run_a).name)
    name_b = res_b.get("name", Path(run_b).name)
    lines = [
        f"# Eval compare: A = `{run_a}` ({name_a}), B = `{run_b}` ({name_b})",
        "",
        f"Paired over {n_common} common problems; {prob_a.height - n_common} only in A, "
        f"{prob_b.height - n_common} only in B. Scores in %, delta = B - A, 95% CI: paired bootstrap "
        f"over problems ({n_boot} resamples, seed {seed}).",
        "",
        "| metric | A | B | delta | 95% CI of delta | P(delta <= 0) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sign = "+" if r["diff"] >= 0 else ""
        lines.append(
            f"| {r['metric']} | {fmt_pct(r['a'])} | {fmt_pct(r['b'])} | {sign}{fmt_pct(r['diff'])} | "
            f"[{fmt_pct(r['lo'])}, {fmt_pct(r['hi'])}] | {r['p_le_0']:.3f} |"
        )
    sa, sb = res_a["summary"], res_b["summary"]
    for key, label, fmt in (
        ("mean_completion_tokens", "mean completion tokens", fmt_num),
        ("mean_reasoning_tokens", "mean reasoning tokens", fmt_num),
        ("truncated_rate", "truncation rate (%)", fmt_pct),
    ):
        va, vb = sa.get(key), sb.get(key)
        if va is None and vb is None:
            continue
        delta = None if va is None or vb is None else vb - va
        sign = "+" if delta is not None and delta >= 0 else ""
        lines.append(f"| {label} (all problems) | {fmt(va)} | {fmt(vb)} | {sign}{fmt(delta)} | | |")
    lines.append("")
    return "\n".join(lines)
