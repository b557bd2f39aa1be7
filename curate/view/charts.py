"""Small inline-SVG bar charts whose bars are links that filter the table (no script needed).

Every label and link goes through ``markupsafe.escape``; numbers are formatted by Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

W, BAR_H, GAP, LABEL_W = 470, 15, 3, 165


def _hbar(title: str, items: list[tuple[str, float, str, str]], chart_id: str) -> Markup:
    """Horizontal bars: (label, value, link, value text)."""
    if not items:
        return Markup("")
    vmax = max((v for _, v, _, _ in items), default=0) or 1
    h = len(items) * (BAR_H + GAP) + GAP
    parts = [f'<svg class="chart" id="{escape(chart_id)}" role="img" viewBox="0 0 {W} {h}" width="{W}" height="{h}">',
             f"<title>{escape(title)}</title>"]
    for i, (label, v, href, text) in enumerate(items):
        y = GAP + i * (BAR_H + GAP)
        bw = max(1.0, (W - LABEL_W - 120) * v / vmax) if v > 0 else 0.0
        parts.append(
            f'<a href="{escape(href)}" class="bar-link" data-label="{escape(label)}">'
            f'<text x="{LABEL_W - 6}" y="{y + BAR_H - 4}" text-anchor="end" class="lbl">{escape(label[:32])}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{bw:.1f}" height="{BAR_H}" class="bar"><title>{escape(label)}: {escape(text)}</title></rect>'
            f'<text x="{LABEL_W + bw + 4:.1f}" y="{y + BAR_H - 4}" class="val">{escape(text)}</text></a>')
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel_chart(manifest: dict[str, Any], link: Callable[..., str]) -> Markup:
    """Rows out of each stage; each dropped reason is its own bar linking to the rejected split."""
    items: list[tuple[str, float, str, str]] = []
    for st in manifest.get("funnel") or []:
        if not isinstance(st, dict):
            continue
        stage = str(st.get("stage", "?"))
        rows_out = st.get("rows_out") or 0
        items.append((stage, float(rows_out), link(split="rejected", dropped_by=stage), f"{rows_out:,}"))
        for reason, n in sorted((st.get("dropped") or {}).items(), key=lambda kv: -kv[1]):
            items.append((f"  - {reason}", float(n), link(split="rejected", drop_reason=str(reason)), f"-{n:,}"))
    return _hbar("Funnel (rows out per stage; dropped rows by reason)", items, "chart-funnel")


def flag_chart(counts: list[tuple[str, int]], link: Callable[..., str]) -> Markup:
    return _hbar("Flag counts", [(f, float(n), link(flag=f), f"{n:,}") for f, n in counts], "chart-flags")


def pass_chart(rows: list[tuple[str, float, int]], link: Callable[..., str]) -> Markup:
    return _hbar("Mean pass rate per difficulty bucket",
                 [(b, p, link(bucket=b), f"{p:.2f} ({n:,} rows)") for b, p, n in rows], "chart-pass")


def length_chart(hist: dict[str, Any] | None, link: Callable[..., str]) -> Markup:
    """Densities of reasoning length (log-spaced bins) for correct and not-correct rows; a bin links
    to that length range."""
    if not hist:
        return Markup("")
    edges, cor, oth = hist["edges"], hist["correct"], hist["other"]
    n = len(cor)
    tc, to = sum(cor) or 1, sum(oth) or 1
    dc = [c / tc for c in cor]
    do = [o / to for o in oth]
    vmax = max(dc + do) or 1
    h, pad = 150, 24
    bw = (W - 2 * pad) / n
    parts = [f'<svg class="chart" id="chart-length" role="img" viewBox="0 0 {W} {h + 40}" width="{W}" height="{h + 40}">',
             "<title>Reasoning length (characters, log scale): correct vs not correct</title>"]
    for i in range(n):
        x = pad + i * bw
        hc, ho = (h - 10) * dc[i] / vmax, (h - 10) * do[i] / vmax
        href = link(len_min=edges[i], len_max=edges[i + 1])
        tip = f"{edges[i]:,}-{edges[i + 1]:,} chars: {cor[i]:,} correct, {oth[i]:,} not correct"
        parts.append(
            f'<a href="{escape(href)}" class="bar-link" data-label="{edges[i]}-{edges[i + 1]}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.1f}" y="0" width="{bw:.1f}" height="{h}" class="hit"/>'
            f'<rect x="{x + 1:.1f}" y="{h - hc:.1f}" width="{bw / 2 - 1:.1f}" height="{hc:.1f}" class="bar ok"/>'
            f'<rect x="{x + bw / 2:.1f}" y="{h - ho:.1f}" width="{bw / 2 - 1:.1f}" height="{ho:.1f}" class="bar bad"/></a>')
    for i in range(0, n + 1, max(1, n // 6)):
        parts.append(f'<text x="{pad + i * bw:.1f}" y="{h + 14}" text-anchor="middle" class="val">{edges[i]:,}</text>')
    parts.append(f'<rect x="{pad}" y="{h + 22}" width="10" height="10" class="bar ok"/>'
                 f'<text x="{pad + 14}" y="{h + 31}" class="val">correct ({tc if sum(cor) else 0:,})</text>'
                 f'<rect x="{pad + 150}" y="{h + 22}" width="10" height="10" class="bar bad"/>'
                 f'<text x="{pad + 164}" y="{h + 31}" class="val">not correct ({to if sum(oth) else 0:,})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
