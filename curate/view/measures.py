"""The measure behind each audit flag of one row, recomputed with ``curate.audit.flags`` (the same
code and thresholds as the audit stage, so the trace page explains the stored flags)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..audit.config import ALL_FLAGS, FLAG_HELP, AuditConfig
from ..audit.flags import flag_exprs, length_z, measure

_TEXT = ("reasoning", "answer_text", "problem", "finish_reason", "verdict", "pred_answer")


def audit_config(manifest: dict[str, Any]) -> AuditConfig:
    """The version's audit config (from its recipe in manifest.json), else the defaults."""
    for st in (manifest.get("recipe") or {}).get("stages") or []:
        if isinstance(st, dict) and st.get("type") == "audit":
            try:
                return AuditConfig(**st)
            except Exception:  # noqa: BLE001 - an older/newer recipe: fall back to the defaults
                break
    return AuditConfig()


def flag_measures(row: dict[str, Any], cfg: AuditConfig, length_ref: tuple[float, float] | None) -> list[dict[str, Any]]:
    """One entry per enabled flag: ``flag``, ``stored`` (in the row's ``flags``; None when the row has
    no flags column), ``now`` (recomputed), ``measure`` (the numbers that decide it) and ``help``."""
    data: dict[str, Any] = {c: [None if row.get(c) is None else str(row.get(c))] for c in _TEXT}
    data["correct"] = pl.Series([row.get("correct")], dtype=pl.Boolean)
    df = pl.DataFrame(data)
    m = measure(df, cfg)
    tokens = m["reasoning_tokens"].to_numpy()
    z = length_z(tokens, length_ref)
    z[tokens == 0] = 0.0
    m = m.with_columns(pl.Series("audit_length_z", np.round(z, 3), dtype=pl.Float64))
    exprs = flag_exprs(m, cfg)
    enabled = cfg.enabled()
    bits = m.select([exprs[f].fill_null(False).alias(f) for f in enabled]).row(0, named=True)
    v = m.row(0, named=True)
    stored_flags = row.get("flags")
    ref = "no reference (fewer than 3 rows with reasoning_tokens)" if length_ref is None else \
        f"median log-tokens {length_ref[0]:.3f}, MAD {length_ref[1]:.3f}"
    explain = {
        "truncated": f"finish_reason={row.get('finish_reason')!s}, verdict={row.get('verdict')!s}, "
                     f"<think> opened {v['_open']}x / closed {v['_close']}x",
        "unclosed_think": f"<think> opened {v['_open']}x, </think> {v['_close']}x",
        "missing_think": f"expect_think={cfg.expect_think}, reasoning chars={v['audit_chars']}",
        "empty_reasoning": f"reasoning chars={v['audit_chars']} (needs {cfg.min_reasoning_chars} non-space)",
        "no_answer": f"answer_text blank={not (row.get('answer_text') or '').strip()}, "
                     f"pred_answer={row.get('pred_answer')!s}, boxed in tail={v['_boxed_tail']}, answer words={v['_answer_words']}",
        "no_boxed": f"require_boxed={cfg.require_boxed}, boxed in answer={v['_boxed_ans']}, boxed in tail={v['_boxed_tail']}",
        "repetition_loop": f"most repeats={v['audit_repeat']} (flag at {cfg.repeat_min_count}), "
                           f"tail compression ratio={v['audit_compress']} (flag at {cfg.compress_ratio_max})",
        "language_mix": f"foreign-script letters={v['audit_foreign']} of {v['audit_letters']} "
                        f"(flag at {cfg.lang_mix_min_chars} and {cfg.lang_mix_min_ratio:.3%})",
        "length_outlier": f"reasoning tokens={v['reasoning_tokens']}, robust z={v['audit_length_z']} "
                          f"(flag above {cfg.length_z_max}; {ref})",
        "after_answer": f"chars after the final boxed answer={v.get('audit_after_chars')} "
                        f"(flag above {getattr(cfg, 'after_answer_max_chars', '?')}), foreign-script letters there="
                        f"{v.get('audit_after_foreign')} (flag at {cfg.lang_mix_min_chars})",
        "answer_mismatch": f"last boxed in reasoning={v['_last_tail']!s}, in answer={v['_last_ans']!s}, "
                           f"verdict={row.get('verdict')!s}, correct={row.get('correct')!s}",
    }
    out = []
    for f in ALL_FLAGS:
        if f not in enabled:
            continue
        out.append({
            "flag": f,
            "stored": None if stored_flags is None else f in list(stored_flags),
            "now": bool(bits[f]),
            # a flag added to the audit later than this page: show every audit_* measure of the row
            "measure": explain.get(f) or ", ".join(f"{k}={x}" for k, x in v.items() if k.startswith("audit_")),
            "help": FLAG_HELP.get(f, ""),
        })
    return out
