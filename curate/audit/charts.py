"""Charts for the audit report: matplotlib figures rendered to inline SVG strings (no JS, no CDN)."""

from __future__ import annotations

import io
import re
from typing import Any

_PALETTE = {"all": "#6c7a89", "correct": "#2e8b57", "incorrect": "#c0392b", "bar": "#3b6ea5", "drop": "#e67e22"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    # inline: drop the XML prolog/doctype and comments; keep the <svg> element only
    start = text.find("<svg")
    text = re.sub(r"<!--.*?-->", "", text[start:], flags=re.S)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return text.strip()


def _fig(w: float = 7.0, h: float = 3.2):
    plt = _plt()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "curate-audit"}):
        fig, ax = plt.subplots(figsize=(w, h))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def render(fig: Any) -> str:
    plt = _plt()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "curate-audit"}):
        return _svg(fig)


def funnel_chart(funnel: list[dict]) -> str | None:
    rows = [f for f in funnel if isinstance(f.get("rows_out"), (int, float))]
    if not rows:
        return None
    fig, ax = _fig(7.0, 0.45 * len(rows) + 1.0)
    labels = [r["stage"] for r in rows][::-1]
    outs = [r["rows_out"] for r in rows][::-1]
    drops = [(r["rows_in"] or 0) - r["rows_out"] if isinstance(r.get("rows_in"), (int, float)) else 0
             for r in rows][::-1]
    ax.barh(labels, outs, color=_PALETTE["bar"], label="rows out")
    ax.barh(labels, drops, left=outs, color=_PALETTE["drop"], label="dropped")
    for y, (o, d) in enumerate(zip(outs, drops)):
        ax.text(o + d, y, f" {o:,}" + (f" (-{d:,})" if d else ""), va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title("Funnel: rows kept per stage")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8, frameon=False)
    return render(fig)


def length_chart(hist: dict[str, Any]) -> str | None:
    edges = hist.get("edges") or []
    if len(edges) < 2 or not sum(hist.get("all") or []):
        return None
    fig, ax = _fig()
    width = edges[1] - edges[0]
    lefts = edges[:-1]
    if "correct" in hist and (sum(hist["correct"]) or sum(hist["incorrect"])):
        # densities (share of each group per bin): the groups differ in size, counts would make the
        # smaller one (usually the incorrect traces) a flat line
        dens = hist.get("density") or {k: [x / max(1, sum(hist[k])) for x in hist[k]] for k in ("correct", "incorrect")}
        for k in ("correct", "incorrect"):
            if sum(hist[k]):
                ax.bar(lefts, dens[k], width=width, align="edge", alpha=0.55, color=_PALETTE[k],
                       label=f"{k} ({sum(hist[k]):,} rows)")
        ax.legend(fontsize=8, frameon=False)
        ax.set_ylabel("share of rows")
    else:
        ax.bar(lefts, hist["all"], width=width, align="edge", color=_PALETTE["all"], label="all")
        ax.set_ylabel("rows")
    ax.set_xlabel("reasoning tokens (last bin includes the tail above p99.5)")
    ax.set_title("Reasoning length: correct vs incorrect")
    return render(fig)


def difficulty_chart(hist: dict[str, Any] | None) -> str | None:
    if not hist:
        return None
    series = [k for k in ("pass_rate", "difficulty") if k in hist]
    if not series:
        return None
    plt = _plt()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "curate-audit"}):
        fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.0), squeeze=False)
    edges = hist["edges"]
    width = edges[1] - edges[0]
    titles = {"pass_rate": ("Pass rate per problem", "pass rate (share of correct samples)"),
              "difficulty": ("Difficulty per problem", "difficulty (0 easy - 1 hard)")}
    for ax, k in zip(axes[0], series):  # separate panels: two scales, not one shared histogram
        ax.spines[["top", "right"]].set_visible(False)
        ax.bar(edges[:-1], hist[k], width=width, align="edge",
               color=_PALETTE["bar"] if k == "pass_rate" else _PALETTE["drop"])
        ax.set_title(titles[k][0], fontsize=10)
        ax.set_xlabel(titles[k][1], fontsize=8)
        ax.set_ylabel("problems")
    return render(fig)


def flag_chart(flags: dict[str, dict]) -> str | None:
    items = [(k, v["count"]) for k, v in flags.items()]
    if not items:
        return None
    fig, ax = _fig(7.0, 0.35 * len(items) + 1.0)
    labels = [k for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(labels, vals, color=_PALETTE["incorrect"])
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("rows flagged")
    ax.xaxis.set_major_locator(_plt().MaxNLocator(integer=True))
    ax.set_title("Flag counts")
    return render(fig)
