"""Eval run folder: results.json + results.md (+ the parquet frames written by ``run``).

Layout of one run (``<output.dir>/<name>/<run id>/``)::

    results.json     summary metrics with bootstrap CIs, breakdowns, the resolved recipe, versions
    results.md       the same, for humans
    samples.parquet  one row per sample (prompt, reasoning, answer_text, pred_answer, verdict, ...)
    problems.parquet one row per problem (n_samples, n_correct, pass@k, maj@k, breakdown fields)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import SourceError

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SAMPLES = "samples.parquet"
PROBLEMS = "problems.parquet"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.{digits}f}"


def fmt_num(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    level = int(round(100 * s.get("ci_level", 0.95)))
    out = [f"# Eval: {results.get('name', '?')}", ""]
    bench = results.get("benchmark", {})
    model = results.get("model", {})
    out.append(f"- benchmark: `{bench.get('id', '?')}` ({s['n_problems']} problems, {s['n_samples']} samples)")
    adapter = f" + LoRA `{model['adapter']}`" if model.get("adapter") else ""
    out.append(f"- model: `{model.get('id', '?')}`{adapter} (backend {model.get('backend', '?')}, n={model.get('n', '?')}, "
               f"temperature={model.get('temperature', '?')})")
    if results.get("created"):
        out.append(f"- created: {results['created']}")
    out += ["", "## Scores (%)", ""]
    rows = []
    for name, m in s["metrics"].items():
        ci = f"[{fmt_pct(m['ci_low'])}, {fmt_pct(m['ci_high'])}]"
        note = f" ({m['n_problems_lt_k']} problems with n<k left out)" if m.get("n_problems_lt_k") else ""
        rows.append([name, fmt_pct(m["value"]), ci + note])
    out.append(_md_table(["metric", "value", f"{level}% CI (bootstrap over problems)"], rows))
    out += ["", "## Generation", ""]
    gen = [["mean completion tokens", fmt_num(s.get("mean_completion_tokens"))]]
    if s.get("mean_reasoning_tokens") is not None:
        gen.append(["mean reasoning tokens (est.)", fmt_num(s.get("mean_reasoning_tokens"))])
    gen.append(["truncation rate (%)", fmt_pct(s.get("truncated_rate"))])
    if results.get("verdicts"):
        gen.append(["verdicts", ", ".join(f"{k}: {v}" for k, v in sorted(results["verdicts"].items()))])
    out.append(_md_table(["", ""], gen))
    for field, groups in (s.get("breakdown") or {}).items():
        if not groups:
            continue
        mcols = [c for c in groups[0] if c.startswith(("pass@", "maj@"))]
        out += ["", f"## By {field} (%)", ""]
        out.append(
            _md_table(
                [field, "problems"] + mcols,
                [[str(g[field]), str(g["n_problems"])] + [fmt_pct(g[m]) for m in mcols] for g in groups],
            )
        )
    out.append("")
    return "\n".join(out)


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULTS_JSON).write_text(json.dumps(results, indent=2, default=str) + "\n")
    (run_dir / RESULTS_MD).write_text(render_markdown(results))


def load_run(run_dir: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The results.json and the per-problem frame of an eval run folder (one-line errors)."""
    run_dir = Path(run_dir)
    rj = run_dir / RESULTS_JSON
    pq = run_dir / PROBLEMS
    if not run_dir.is_dir():
        raise SourceError(f"{run_dir}: not an eval run folder (no such directory)")
    if not rj.is_file() or not pq.is_file():
        raise SourceError(f"{run_dir}: not an eval run folder (needs {RESULTS_JSON} and {PROBLEMS})")
    try:
        results = json.loads(rj.read_text())
    except ValueError as e:
        raise SourceError(f"{rj}: invalid JSON ({e})") from None
    if not isinstance(results, dict) or "summary" not in results:
        raise SourceError(f"{rj}: field 'summary' is missing")
    try:
        problems = pl.read_parquet(pq)
    except Exception as e:  # noqa: BLE001 - any parquet failure is a bad input file
        raise SourceError(f"{pq}: unreadable parquet ({e.__class__.__name__}: {e})") from None
    for col in ("problem_id", "n_samples", "pass@1"):
        if col not in problems.columns:
            raise SourceError(f"{pq}: column '{col}' is missing")
    return results, problems
