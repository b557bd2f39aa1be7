"""The data contract: every column name that stages exchange, its polars dtype, and the verdict vocabulary.

Stages import their column names from here (never spell them twice). Groups, in pipeline order:

* problem rows (sources): ``PROBLEM_SCHEMA``
* sample rows (``sample`` stage or a ``traces`` source): ``SAMPLE_SCHEMA`` (+ ``KD_SCHEMA`` for offline KD)
* ``verify``: ``VERIFY_SCHEMA``; verdicts ``VERDICTS``
* ``difficulty``: ``DIFFICULTY_SCHEMA``; ``curriculum``: ``CURRICULUM_SCHEMA``; ``audit``: ``AUDIT_SCHEMA``
* dropped rows: ``DROP_REASON`` (set by a stage), ``DROPPED_BY`` (set by the runner: the stage label)
* training columns written by publish: ``messages`` or ``prompt``/``completion``

``sample_id`` has one scheme, :func:`sample_id`: 16 hex digits of sha256 over the row's origin (the request
hash of a sampled row, ``trace:<problem_id>`` for an existing trace) and its sample index.
"""

from __future__ import annotations

import hashlib

import polars as pl

ROW_ID = "__rid"
"""Hidden Int64 row id the runner adds to every row (its position in the sources' order): stages keep it;
the runner joins a global stage's output back onto the full rows by it and removes it before publishing."""

ROW_POS = "__pos"
"""Hidden Int64: the row's position in the order a reordering stage gave (curriculum); published in that order."""

MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))

PROBLEM_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.Utf8,  # stable hash of the normalised problem text
    "problem": pl.Utf8,
    "gold_answer": pl.Utf8,
    "source": pl.Utf8,
    "source_index": pl.Int64,
    "meta": pl.Utf8,  # JSON text
}
PROBLEM_COLUMNS: tuple[str, ...] = tuple(PROBLEM_SCHEMA)

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "problem_id": pl.Utf8,
    "sample_index": pl.Int64,
    "teacher": pl.Utf8,
    "prompt": MESSAGES,
    "reasoning": pl.Utf8,
    "answer_text": pl.Utf8,
    "finish_reason": pl.Utf8,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "request_hash": pl.Utf8,
    "error": pl.Utf8,
}
SAMPLE_COLUMNS: tuple[str, ...] = tuple(SAMPLE_SCHEMA)

KD_SCHEMA: dict[str, pl.DataType] = {
    "token_ids": pl.List(pl.Int64),
    "topk_ids": pl.List(pl.List(pl.Int64)),
    "topk_logprobs": pl.List(pl.List(pl.Float32)),  # raw T=1 teacher log-probabilities
    "tokenizer": pl.Utf8,  # <name>@<vocabulary hash>
}
KD_COLUMNS: tuple[str, ...] = tuple(KD_SCHEMA)

VERDICTS: tuple[str, ...] = ("correct", "incorrect", "no_answer", "unparseable", "truncated", "timeout", "no_gold")
VERIFY_SCHEMA: dict[str, pl.DataType] = {
    "pred_answer": pl.Utf8,
    "verdict": pl.Utf8,  # one of VERDICTS
    "correct": pl.Boolean,
    "n_correct": pl.Int64,  # per problem, broadcast to its rows
    "maj_answer": pl.Utf8,
    "maj_score": pl.Float64,
    "maj_correct": pl.Boolean,
}

DIFFICULTY_SCHEMA: dict[str, pl.DataType] = {
    "n_samples": pl.Int64,
    "pass_rate": pl.Float64,
    "pass_rate_low": pl.Float64,  # Wilson interval
    "pass_rate_high": pl.Float64,
    "difficulty": pl.Float64,  # in [0, 1]
    "difficulty_bucket": pl.Utf8,
}
CURRICULUM_SCHEMA: dict[str, pl.DataType] = {"curriculum_rank": pl.Int64, "curriculum_stage": pl.Int32}
AUDIT_SCHEMA: dict[str, pl.DataType] = {"flags": pl.List(pl.Utf8)}

DROP_REASON = "drop_reason"
DROPPED_BY = "dropped_by"
TRAINING_COLUMNS: tuple[str, ...] = ("messages", "prompt", "completion")


def sample_id(origin: str, index: int) -> str:
    """The one ``sample_id`` scheme (see the module doc)."""
    return hashlib.sha256(f"{origin}:{index}".encode()).hexdigest()[:16]


def trace_origin(problem_id: str) -> str:
    """The origin of an existing trace (a ``traces`` source) for :func:`sample_id`."""
    return f"trace:{problem_id}"
