"""The audit configuration: thresholds for every flag (the ``audit`` stage's YAML config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..context import StageConfig

#: Every flag the audit can set, in report order.
ALL_FLAGS: tuple[str, ...] = (
    "truncated",
    "unclosed_think",
    "missing_think",
    "empty_reasoning",
    "no_answer",
    "no_boxed",
    "repetition_loop",
    "language_mix",
    "length_outlier",
    "answer_mismatch",
    "after_answer",
)

FLAG_HELP: dict[str, str] = {
    "truncated": "finish_reason is 'length' (or verdict 'truncated'), or the <think> block never closes",
    "unclosed_think": "a <think> tag is opened and never closed",
    "missing_think": "think tags were expected (expect_think) but the completion has none",
    "empty_reasoning": "the reasoning is absent or shorter than min_reasoning_chars",
    "no_answer": "no final answer: empty answer_text, no pred_answer and no \\boxed{} at the end of the reasoning",
    "no_boxed": "no \\boxed{} in the answer_text nor in the tail of the reasoning",
    "repetition_loop": "a sentence/line repeated repeat_min_count+ times in the tail, a unit repeated back to back, or a highly compressible tail",
    "language_mix": "letters in a script other than the problem's (e.g. Han characters in an English trace)",
    "length_outlier": "reasoning length far from the dataset's median on a log scale (robust z-score)",
    "answer_mismatch": "verdict/correct disagree, or the last \\boxed{} of the reasoning differs from the answer's",
    "after_answer": "more than after_answer_max_chars of text after the final \\boxed{} answer, or letters in a script foreign to the problem there (token soup after the answer)",
}

DEFAULT_REFLECTION_MARKERS: tuple[str, ...] = (
    "wait",
    "hmm",
    "hold on",
    "actually",
    "let me check",
    "let me double-check",
    "let me double check",
    "double-check",
    "let me verify",
    "let me re-check",
    "let me recheck",
    "let me reconsider",
    "re-examine",
    "verify",
    "on second thought",
    "alternatively",
    "i made a mistake",
    "that's not right",
)


class AuditConfig(StageConfig):
    """Thresholds of the trace-quality audit. Every field has a working default."""

    type: Literal["audit"] = "audit"

    flags: list[str] | None = None
    """Flags to compute (default: all of ALL_FLAGS)."""
    tokenizer: str | None = None
    """A Hugging Face tokenizer name/path for ``reasoning_tokens``; default: a regex approximation
    (each CJK character, each digit, each letter run and each punctuation mark counts one)."""
    expect_think: bool = False
    """R1-style data: flag ``missing_think`` on completions without a <think> block, and
    ``no_answer`` on rows with nothing after the think block."""
    min_reasoning_chars: int = Field(20, ge=0)
    """``empty_reasoning`` below this many non-space characters."""
    tail_chars: int = Field(3000, ge=200)
    """How much of the end of the reasoning the repetition and boxed checks look at."""
    repeat_min_count: int = Field(8, ge=2)
    """``repetition_loop`` when one sentence/line (>= repeat_min_chars) occurs this often in the tail,
    or a unit (any text, up to 600 characters) repeats back to back this often in the tail."""
    repeat_min_chars: int = Field(12, ge=4)
    """Shortest sentence/line counted for repeats."""
    loop_min_chars: int = Field(160, ge=16)
    """A back-to-back loop must cover at least this many characters."""
    compress_ratio_max: float = Field(5.0, gt=1.0)
    """``repetition_loop`` when the tail (>= 1000 chars) compresses (zlib) better than this ratio."""
    lang_mix_min_chars: int = Field(8, ge=1)
    """``language_mix`` needs at least this many letters in a foreign script ..."""
    lang_mix_min_ratio: float = Field(0.002, ge=0.0, le=1.0)
    """... making at least this fraction of the reasoning's letters."""
    length_z_max: float = Field(3.5, gt=0)
    """``length_outlier`` when |robust z| of log(reasoning_tokens) exceeds this."""
    length_min_rows: int = Field(20, ge=3)
    """No ``length_outlier`` flags on frames smaller than this."""
    after_answer_max_chars: int = Field(1000, ge=0)
    """``after_answer`` when more than this many characters follow the final ``\\boxed{}``."""
    require_boxed: bool = True
    """Compute ``no_boxed`` (turn off for datasets whose answers are not boxed)."""
    reflection_markers: list[str] = Field(default_factory=lambda: list(DEFAULT_REFLECTION_MARKERS))
    """Phrases counted (case-insensitive, on word boundaries) for ``reflections_per_1k``."""
    examples_per_flag: int = Field(5, ge=0)
    """Worst examples shown per flag in the report."""
    example_chars: int = Field(4000, ge=200)
    """Trace text kept per example in the report (head and tail halves)."""

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, v: list[str] | None) -> list[str] | None:
        bad = [f for f in v or [] if f not in ALL_FLAGS]
        if bad:
            raise ValueError(f"unknown flag(s) {bad}; known: {', '.join(ALL_FLAGS)}")
        return v

    def enabled(self) -> tuple[str, ...]:
        if self.flags is None:
            return ALL_FLAGS
        return tuple(f for f in ALL_FLAGS if f in self.flags)
