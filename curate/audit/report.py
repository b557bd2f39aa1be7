"""The audit report: ``<out>/audit/report.html`` (one self-contained file: inline CSS and SVG charts,
no scripts, no network) and ``<out>/audit/summary.json`` with the same numbers.

HTML is rendered with jinja2 with autoescaping on: every trace, problem and answer string is
untrusted and is escaped. A Content-Security-Policy meta tag forbids scripts and remote loads
as a second line of defence.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import charts
from .config import FLAG_HELP, AuditConfig
from .flags import length_stats, length_z, measure, severity
from .frames import ROW, TEXT, Frame, audited, columns, fetch_rows, map_rows
from .summary import summarize

_ID_COLS = ("sample_id", "problem_id", "source", "sample_index", "finish_reason", "verdict", "pred_answer",
            "gold_answer", "difficulty_bucket")


def _clip(text: str | None, n: int) -> tuple[str, bool]:
    if text is None:
        return "", False
    if len(text) <= n:
        return text, False
    half = n // 2
    return text[:half] + f"\n\n[... {len(text) - 2 * half:,} characters omitted ...]\n\n" + text[-half:], True


def _measures(r: dict) -> dict[str, Any]:
    """The row's informative measures (the uninformative 0/1 values left out)."""
    out: dict[str, Any] = {}
    if (r.get("audit_repeat") or 0) > 1:
        out["most repeats of one unit (tail)"] = r["audit_repeat"]
    if (r.get("audit_compress") or 0) > 0:
        out["tail compression ratio"] = r["audit_compress"]
    if r.get("audit_foreign"):
        out["foreign-script letters"] = f"{r['audit_foreign']} of {r.get('audit_letters') or 0}"
    if r.get("audit_length_z"):
        out["length robust z"] = r["audit_length_z"]
    return out


_MEASURES = ("audit_chars", "audit_repeat", "audit_compress", "audit_foreign", "audit_letters", "audit_after_chars")
_CANDIDATES = 2000
#: what :func:`summarize` reads besides the audit columns (all optional; no text)
SUMMARY_COLUMNS = ("correct", "verdict", "source", "difficulty_bucket", "difficulty", "problem_id", "pass_rate")


def _with_text(df: pl.DataFrame, source: Frame) -> pl.DataFrame:
    """``df`` (rows ``__row``) with the traces and id columns it lacks, read for its rows only."""
    need = [c for c in (*TEXT, *_ID_COLS) if c not in df.columns]
    if not need or df.height == 0:
        return df
    got = fetch_rows(source, df[ROW].to_list(), need)
    return df.join(got, on=ROW, how="left", maintain_order="left")


def _candidates(df: pl.DataFrame, cfg: AuditConfig, counts: dict[str, int], source: Frame) -> pl.DataFrame:
    """The flagged rows to rank, with their ``audit_*`` measures. When the frame carries only the
    flags (the stage's output), the measures are recomputed once for the union of at most
    ``_CANDIDATES`` rows per flag (the longest traces and an even spread of the rest), from their
    traces read slice by slice (only the measures kept)."""
    flagged = df.filter(pl.col("flags").list.len() > 0)
    if "audit_repeat" in df.columns:
        return flagged
    keep: set[int] = set()
    for flag, n in counts.items():
        if not n:
            continue
        rows = flagged.filter(pl.col("flags").list.contains(flag)).sort("reasoning_tokens", descending=True)
        keep.update(rows[ROW].gather_every(max(1, rows.height // _CANDIDATES)).to_list())
    sub = flagged.filter(pl.col(ROW).is_in(sorted(keep)))
    parts = map_rows(source, sorted(keep), TEXT, lambda b: measure(b, cfg).select(ROW, *_MEASURES))
    m = pl.concat(parts) if parts else None
    if m is None:
        return sub.with_columns(pl.lit(None, pl.Int64).alias(c) for c in _MEASURES)
    return sub.join(m.with_columns(pl.col(ROW).cast(sub.schema[ROW])), on=ROW, how="left", maintain_order="left")


def worst_examples(df: pl.DataFrame, cfg: AuditConfig, counts: dict[str, int],
                   source: Frame | None = None) -> dict[str, list[dict]]:
    """Up to ``cfg.examples_per_flag`` rows per flag, worst first. ``df``: the audit columns of every
    row (``__row``: its position, added when absent); ``source``: the frame the traces and ids of
    the few rows ranked and shown are read from (default: ``df``)."""
    k = cfg.examples_per_flag
    if k == 0 or df.height == 0 or not any(counts.values()):
        return {}
    if ROW not in df.columns:
        df = df.with_row_index(ROW)
    source = df if source is None else source
    stats = length_stats(df["reasoning_tokens"].to_numpy()) if df.height >= cfg.length_min_rows else None
    cand = _candidates(df, cfg, counts, source)
    if "audit_length_z" not in cand.columns:
        cand = cand.with_columns(pl.Series("audit_length_z", np.round(length_z(cand["reasoning_tokens"].to_numpy(),
                                                                                 stats), 3)))
    tops: dict[str, pl.DataFrame] = {}
    shown: set[int] = set()  # a row with several flags is shown once (under its first flag); its flags are listed
    for flag, n in counts.items():
        if not n:
            continue
        sub = cand.filter(pl.col("flags").list.contains(flag) & ~pl.col(ROW).is_in(sorted(shown)))
        top = sub.with_columns(severity(sub, flag).alias("__sev")).sort("__sev", descending=True).head(k)
        shown.update(top[ROW].to_list())
        tops[flag] = top
    text = _with_text(pl.concat(list(tops.values()), how="diagonal_relaxed"), source) if tops else None
    out: dict[str, list[dict]] = {}
    for flag, top in tops.items():
        if text is not None and any(c not in top.columns for c in (*TEXT, *_ID_COLS) if c in text.columns):
            top = top.join(text.select(ROW, *[c for c in text.columns if c not in top.columns]), on=ROW,
                           how="left", maintain_order="left")
        rows = []
        for r in top.iter_rows(named=True):
            reasoning, cut = _clip(r.get("reasoning"), cfg.example_chars)
            answer, _ = _clip(r.get("answer_text"), 2000)
            problem, _ = _clip(r.get("problem"), 2000)
            rows.append({
                "row": int(r[ROW]),
                "severity": round(float(r["__sev"]), 3),
                "flags": list(r.get("flags") or []),
                "ids": {c: r[c] for c in _ID_COLS if c in r and r[c] is not None},
                "reasoning_tokens": int(r.get("reasoning_tokens") or 0),
                "reflections_per_1k": r.get("reflections_per_1k"),
                "measures": _measures(r),
                "problem": problem,
                "reasoning": reasoning,
                "reasoning_clipped": cut,
                "answer_text": answer,
            })
        out[flag] = rows
    return out


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f6f8}td.l,th.l{text-align:left}td.l{overflow-wrap:anywhere;min-width:8em;max-width:42em}.muted{color:#777}.chart svg{max-width:100%;height:auto}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:9em}
.card b{display:block;font-size:1.4em}pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;border:1px solid #eee;padding:.6em;max-height:32em;overflow:auto;font-size:12px}
details{margin:.3em 0 .8em}summary{cursor:pointer}.flag{display:inline-block;background:#fdecea;color:#922;border-radius:3px;padding:0 5px;margin:1px;font-size:12px}
.ex{border-left:3px solid #c0392b;padding-left:.8em;margin:.8em 0}
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="muted">Trace-quality audit by curate. Token counts: {{ s.token_count_method }}{% if s.token_count_method == "approx-regex" %} (one per CJK character, digit, letter run and symbol; see docs/audit.md){% endif %}.</p>

<div class="cards">
<div class="card">rows<b>{{ "{:,}".format(s.rows) }}</b></div>
<div class="card">flagged rows<b>{{ "{:,}".format(s.rows_flagged) }}</b>{{ pct(s.rows_flagged, s.rows) }}</div>
{% if s.correct_rate is not none %}<div class="card">correct<b>{{ "%.1f%%"|format(100 * s.correct_rate) }}</b></div>{% endif %}
<div class="card">median reasoning tokens<b>{{ num(s.reasoning_tokens.p50) }}</b></div>
<div class="card">reflections / 1k tokens (mean)<b>{{ num(s.reflections_per_1k.mean) }}</b></div>
{% if s.rejected.rows %}<div class="card">rejected rows<b>{{ "{:,}".format(s.rejected.rows) }}</b></div>{% endif %}
</div>

{% if s.funnel %}
<h2 id="funnel">Funnel</h2>
{% if charts.funnel %}<div class="chart" id="chart-funnel">{{ charts.funnel|safe }}</div>{% endif %}
<table><tr><th class="l">stage</th><th>rows in</th><th>rows out</th><th class="l">dropped</th><th>seconds</th></tr>
{% for f in s.funnel %}<tr><td class="l">{{ f.stage }}</td><td>{{ num(f.rows_in) }}</td><td>{{ num(f.rows_out) }}</td>
<td class="l">{% for k, v in f.dropped.items() %}{{ k }}: {{ num(v) }}{% if not loop.last %}, {% endif %}{% endfor %}</td><td>{{ num(f.seconds) }}</td></tr>
{% endfor %}</table>
{% endif %}

{% if s.contamination %}
<h2 id="contamination">Contamination</h2>
<table><tr><th class="l">benchmark</th><th>checked</th><th>contaminated</th><th class="l">by method</th><th class="l">examples</th></tr>
{% for b, c in s.contamination.items() %}<tr><td class="l">{{ b }}</td><td>{{ num(c.checked) }}</td><td>{{ num(c.contaminated) }}</td>
<td class="l">{% for k, v in c.method_counts.items() %}{{ k }}: {{ num(v) }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="l">{% if c.examples %}<details><summary>{{ c.examples|length }} shown</summary><pre>{% for e in c.examples %}{% if e is mapping %}{% for k, v in e.items() %}{{ k }}: {{ v }}
{% endfor %}{% else %}{{ e }}
{% endif %}
{% endfor %}</pre></details>{% endif %}</td></tr>
{% endfor %}</table>
{% endif %}

<h2 id="flags">Flags</h2>
{% if charts.flags %}<div class="chart" id="chart-flags">{{ charts.flags|safe }}</div>{% endif %}
<table><tr><th class="l">flag</th><th>rows</th><th>rate</th><th class="l">meaning</th></tr>
{% for f, c in s.flags.items() %}<tr><td class="l"><a href="#ex-{{ f }}">{{ f }}</a></td><td>{{ "{:,}".format(c.count) }}</td><td>{{ pct(c.count, s.rows) }}</td><td class="l">{{ help.get(f, "") }}</td></tr>
{% endfor %}</table>

<h2 id="length">Reasoning length</h2>
{% if charts.length %}<div class="chart" id="chart-length">{{ charts.length|safe }}</div>{% endif %}
<table><tr><th class="l">rows</th><th>n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>
{% for name, d in [("all", s.reasoning_tokens)] + (s.reasoning_tokens_by_correct.items()|list) %}<tr><td class="l">{{ name }}</td><td>{{ num(d.n) }}</td><td>{{ num(d.mean) }}</td><td>{{ num(d.p10) }}</td><td>{{ num(d.p50) }}</td><td>{{ num(d.p90) }}</td><td>{{ num(d.p99) }}</td><td>{{ num(d.max) }}</td></tr>
{% endfor %}</table>

{% if charts.difficulty %}
<h2 id="difficulty">Pass rate and difficulty</h2>
<div class="chart" id="chart-difficulty">{{ charts.difficulty|safe }}</div>
<p class="muted">{{ s.difficulty_histogram.problems }} problems{% if s.difficulty_histogram.pass_rate_mean is not none %}; mean pass rate {{ num(s.difficulty_histogram.pass_rate_mean) }}{% endif %}.</p>
{% endif %}

{% for key, title_ in [("by_source", "By source"), ("by_difficulty", "By difficulty bucket")] %}{% if s[key] %}
<h2 id="{{ key }}">{{ title_ }}</h2>
<table><tr><th class="l">{{ "source" if key == "by_source" else "difficulty bucket" }}</th><th>rows</th><th>correct</th><th>mean tokens</th><th>median tokens</th><th>reflections/1k</th><th>flagged</th><th class="l">flags</th></tr>
{% for g in s[key] %}<tr><td class="l">{{ g.source if key == "by_source" else g.difficulty_bucket }}</td><td>{{ "{:,}".format(g.rows) }}</td><td>{{ pctf(g.correct_rate) }}</td><td>{{ num(g.tokens_mean) }}</td><td>{{ num(g.tokens_p50) }}</td><td>{{ num(g.reflections_per_1k) }}</td><td>{{ pctf(g.flagged_rate) }}</td>
<td class="l">{% for f, n in g.flags.items() %}{{ f }}: {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
{% endif %}{% endfor %}

{% if s.rejected.rows %}
<h2 id="rejected">Rejected rows</h2>
<table><tr><th class="l">stage / reason</th><th>rows</th>{% if s.rejected.get("flags_by_reason") %}<th class="l">flags</th>{% endif %}</tr>
{% for k, v in s.rejected.by_reason.items() %}<tr><td class="l">{{ k }}</td><td>{{ "{:,}".format(v) }}</td>{% if s.rejected.get("flags_by_reason") %}<td class="l">{% for f, n in (s.rejected.get("flags_by_reason", {}).get(k) or {}).items() %}{{ f }}: {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td>{% endif %}</tr>{% endfor %}
</table>
{% if s.rejected.get("audited_rows") %}
<h3 id="rejected-flags">Flags in rejected rows</h3>
<p class="muted">{{ "{:,}".format(s.rejected.audited_rows) }} rejected traces audited with the same thresholds; {{ "{:,}".format(s.rejected.rows_flagged) }} flagged.</p>
<table><tr><th class="l">flag</th><th>rows</th></tr>
{% for f, n in s.rejected.flag_counts.items() %}<tr><td class="l">{{ f }}</td><td>{{ "{:,}".format(n) }}</td></tr>{% endfor %}
</table>
{% endif %}
{% endif %}

<h2 id="examples">Worst examples per flag</h2>
{% if not examples %}<p class="muted">No flagged rows.</p>{% endif %}
{% for flag, rows in examples.items() %}
<h3 id="ex-{{ flag }}">{{ flag }} <span class="muted">({{ "{:,}".format(s.flags[flag].count) }} rows; worst {{ rows|length }})</span></h3>
{% for r in rows %}<div class="ex">
<div>row {{ r.row }}{% for k, v in r.ids.items() %} · {{ k }}: <code>{{ v }}</code>{% endfor %} · {{ "{:,}".format(r.reasoning_tokens) }} tokens</div>
<div>{% for f in r.flags %}<span class="flag">{{ f }}</span>{% endfor %}
<span class="muted">{% for k, v in r.measures.items() %}{% if v is not none %}{{ k }}: {{ v }}; {% endif %}{% endfor %}</span></div>
{% if r.problem %}<details><summary>problem</summary><pre>{{ r.problem }}</pre></details>{% endif %}
<details><summary>reasoning{% if r.reasoning_clipped %} (head and tail){% endif %}</summary><pre class="trace">{{ r.reasoning }}</pre></details>
{% if r.answer_text %}<details><summary>answer</summary><pre class="trace">{{ r.answer_text }}</pre></details>{% endif %}
</div>{% endfor %}
{% endfor %}

<h2 id="thresholds">Thresholds</h2>
<pre>{{ thresholds }}</pre>
</body>
</html>
"""


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "–"


def _pctf(x: float | None) -> str:
    return "–" if x is None else f"{100.0 * x:.1f}%"


def render_html(summary: dict[str, Any], examples: dict[str, list[dict]], title: str) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tmpl = env.from_string(_TEMPLATE)
    svg = {
        "funnel": charts.funnel_chart(summary["funnel"]),
        "length": charts.length_chart(summary["length_histogram"]),
        "difficulty": charts.difficulty_chart(summary["difficulty_histogram"]),
        "flags": charts.flag_chart(summary["flags"]),
    }
    return tmpl.render(
        s=summary, examples=examples, charts=svg, title=title, help=FLAG_HELP,
        num=_num, pct=_pct, pctf=_pctf,
        thresholds=json.dumps(summary["thresholds"], indent=1, sort_keys=True),
    )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_report(out_dir: Path, train: pl.DataFrame | pl.LazyFrame, rejected: pl.DataFrame | pl.LazyFrame | None = None,
                 manifest: dict | None = None, config: AuditConfig | None = None) -> dict:
    """Audit ``train`` (flags computed when absent) and write ``out_dir/audit/report.html`` and
    ``out_dir/audit/summary.json``. Returns the summary dict.

    ``train``/``rejected``: DataFrames, or LazyFrames (e.g. ``pl.scan_parquet`` over a version's split
    files) for bounded memory: only the audit and summary columns of every row are collected, flags
    absent are computed from the traces in batches, and the traces are read back only for the few
    rows ranked and shown as examples. Same report either way."""
    cfg = config or AuditConfig()
    have = columns(train)
    keep = [*SUMMARY_COLUMNS, *_MEASURES, "audit_length_z"]
    narrow = audited(train, cfg, keep, problem_key="problem_id" not in have)
    summary = summarize(narrow, cfg, rejected=rejected, manifest=manifest)
    examples = worst_examples(narrow, cfg, {f: c["count"] for f, c in summary["flags"].items()},
                              source=train)
    summary["examples"] = {f: [{"row": r["row"], "severity": r["severity"], **r["ids"]} for r in rows]
                           for f, rows in examples.items()}
    m = manifest or {}
    recipe = m.get("recipe") if isinstance(m.get("recipe"), dict) else {}
    name = m.get("name") or recipe.get("name")
    title = "Audit: " + " ".join(str(x) for x in (name, m.get("version")) if x) if name else "Audit report"
    out = Path(out_dir) / "audit"
    _atomic_write(out / "report.html", render_html(summary, examples, title))
    _atomic_write(out / "summary.json", json.dumps(summary, indent=1, default=str, ensure_ascii=False) + "\n")
    return summary
