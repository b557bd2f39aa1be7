"""Answer verification: extraction, normalisation + Math-Verify equivalence, timeouts in processes.

Public API (used by the ``verify`` stage, ``difficulty`` and ``curate eval``):

  VerifyConfig                       the options (the ``verify`` stage's YAML block)
  verify_frame(df, cfg, ctx)         adds pred_answer, verdict, correct
  check(gold, pred_text, cfg)        (pred_answer, verdict) for one item
  pass_at_k(n, c, k)                 unbiased pass@k
  problem_aggregates(df)             per problem: n_samples, n_correct, maj_answer, maj_correct, pass@k
"""

from __future__ import annotations

import threading
from typing import Optional

from .config import DEFAULT_EXTRACT, Rules, VerifyConfig
from .equiv import VERDICTS, Options
from .frame import verify_frame
from .metrics import pass_at_k, problem_aggregates


def check(
    gold: Optional[str],
    pred_text: Optional[str],
    cfg: VerifyConfig | None = None,
    *,
    problem: Optional[str] = None,
    finish_reason: Optional[str] = None,
) -> tuple[Optional[str], str]:
    """Verdict for one item: (pred_answer, verdict). Runs here with a CPU-time signal timeout on the
    main thread, or in one worker process elsewhere; either way within ``cfg.timeout_s`` CPU seconds
    (and once more with twice that when it times out)."""
    from .pool import run_tasks

    cfg = cfg or VerifyConfig()
    on_main = threading.current_thread() is threading.main_thread()
    res, _ = run_tasks(
        [(0, gold, problem, pred_text, None, finish_reason)],
        Options.from_config(cfg),
        timeout_s=cfg.timeout_s,
        num_proc=0 if on_main else 1,
        wall_limit_s=cfg.wall_limit_s,
    )
    return res[0]


__all__ = [
    "VerifyConfig",
    "Rules",
    "DEFAULT_EXTRACT",
    "VERDICTS",
    "verify_frame",
    "check",
    "pass_at_k",
    "problem_aggregates",
]
