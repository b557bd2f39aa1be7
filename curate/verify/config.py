"""``VerifyConfig``: the options of answer verification (the ``verify`` stage's YAML block)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..context import StageConfig

Extractor = Literal[
    "choice", "final_answer", "boxed", "answer_tag", "answer", "hash", "whole", "math_verify", "last_number"
]

DEFAULT_EXTRACT: list[str] = [
    "choice", "final_answer", "boxed", "answer_tag", "answer", "hash", "whole", "math_verify", "last_number"
]


class Rules(BaseModel):
    """Switchable normalisations (all on by default). Names follow the graders they come from."""

    model_config = ConfigDict(extra="forbid")

    unescape: bool = True
    """over-escaped LaTeX (``\\\\frac``) -> ``\\frac``"""
    delimiters: bool = True
    """outer ``$..$``, ``\\(..\\)``, ``\\[..\\]``, whole-answer ``\\boxed{}``"""
    latex_spacing: bool = True
    """hendrycks: ``\\!``, ``\\left``/``\\right``, ``\\dfrac`` -> ``\\frac``, degree signs"""
    text: bool = True
    """NeMo-Skills: unwrap ``\\text{}``/``\\textbf{}``/``\\mathrm{}``"""
    trailing_backslash: bool = True
    approx: bool = True
    """NeMo-Skills: keep the exact part before ``\\approx``"""
    dollars: bool = True
    percent: bool = True
    units: bool = True
    """hendrycks/MARIO_EVAL/simple-evals: trailing unit words after a number"""
    thousands: bool = True
    mixed_numbers: bool = True
    """MARIO_EVAL: ``1\\frac12`` = 3/2"""
    fix_fracs: bool = True
    matrix_env: bool = True
    plain_math: bool = True
    """expression syntax written in plain text (``pi/2``, ``-1 + exp(16)``, ``2*sqrt(3)``, ``x**2``,
    ``3.2e5``, ``π^2``) rewritten to LaTeX (a tokenizer, no evaluation); ``log(x)`` is the natural log"""
    chinese: bool = True
    """a short Chinese answer stating one number (``共有6种方法。``, ``3 个``) -> the number;
    Chinese numerals (``十二`` = 12, ``三百零五`` = 305, ``两万`` = 20000)"""
    lhs: bool = True
    """hendrycks/MARIO_EVAL: ``x = 5`` / ``f(x) = 2x+3`` -> right-hand side"""
    number: bool = True
    """NeMo-Skills/verl: canonical decimal numbers (``033`` = ``33``, ``5.0`` = ``5``)"""
    time: bool = True
    """MARIO_EVAL: clock times ``20:34`` = ``08:34 P.M.`` = ``20:34:00``"""
    choice: bool = True
    """lighteval: multiple-choice letters (``(D) Alina`` gold = ``D``)"""
    numeric_tolerance: bool = True
    """MARIO_EVAL/Qwen2.5-Math ``numeric_equal``: relative tolerance ``rel_tol`` for numbers"""
    numeric_probe: bool = True
    """random-point identity testing when Math-Verify's ``simplify`` says no (same variables;
    positive and negative probe points), as numeric graders (MARIO_EVAL, Qwen2.5-Math) evaluate"""
    string_fallback: bool = True
    """text answers compared as words, case-insensitively (``North`` = ``north``); off: exact case.
    Identical normalised strings are always equal (whitespace is never significant)."""
    locale_numbers: bool = False
    """convention, off by default: locale digit grouping and decimal commas (``1.000.000``,
    ``1 234,5``, ``1,5``). ``1,5`` is also a two-item list, so it is read as 1.5 only when this is on.
    (A decimal comma with 2 or 4+ digits, ``2,75``, is read by ``thousands`` regardless.)"""
    unit_conversion: bool = False
    """convention, off by default: number + unit on both sides compared after converting to the
    same unit (``5 m`` = ``500 cm``, ``2 kg`` = ``2000 g``, ``1.5 h`` = ``90 min``); length, mass,
    time, volume, area"""
    unordered: Literal["auto", "always", "never"] = "auto"
    """bare comma lists: ``auto`` = unordered (Math-Verify's reading), matched item by item when
    the problem asks for all solutions, in order when it asks for an order ("in increasing order",
    "respectively"); ``always`` = unordered; ``never`` = always in order"""

    def enabled(self) -> frozenset[str]:
        return frozenset(k for k, v in self.model_dump().items() if v is True)


class VerifyConfig(StageConfig):
    """Answer verification: extraction, normalisation, Math-Verify equivalence, timeouts."""

    type: Literal["verify"] = "verify"
    extract: list[Extractor] = Field(default_factory=lambda: list(DEFAULT_EXTRACT))
    """extractors tried in this order; ``choice`` only fires on multiple-choice problems"""
    rules: Rules = Field(default_factory=Rules)
    timeout_s: float = Field(5.0, gt=0)
    """per-item budget in CPU seconds of the worker (verdict ``timeout``), so verdicts do not depend
    on the machine's load; a timed-out item is judged once more with twice the budget"""
    wall_limit_s: float | None = Field(None, gt=0)
    """wall-clock backstop per item, only for a worker that stops using CPU (None: 20 x timeout_s + 10)"""
    num_proc: int | None = Field(None, ge=0)
    """worker processes (None = the run's num_proc; 0 = in this process, signal timeout)"""
    mode: Literal["annotate", "filter"] = "annotate"
    """annotate: add columns; filter: non-correct rows go to the rejected split (reason = verdict)"""
    float_rounding: int = Field(6, ge=0, le=30)
    numeric_precision: int = Field(15, ge=1, le=100)
    rel_tol: float = Field(1e-6, ge=0, lt=1)
    """relative tolerance for numbers (rule ``numeric_tolerance``, with the shown-precision rule)"""
    strict: bool = True
    """Math-Verify strict mode: variables matter, sets are not tuples"""
    tail_chars: int = Field(4000, ge=100)
    """the regex fallbacks look at the last this-many characters of a long text"""
    max_answer_chars: int = Field(1000, ge=10)
    """longer extracted answers are compared as strings only, never parsed"""
    pass_k: list[int] = Field(default_factory=lambda: [1, 4, 8])
    """k values for the pass@k columns and stats"""

    @field_validator("extract")
    @classmethod
    def _nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("extract needs at least one extractor")
        if len(set(v)) != len(v):
            raise ValueError("extract lists an extractor twice")
        return v

    @field_validator("pass_k")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("pass_k values must be >= 1")
        return sorted(set(v))


__all__ = ["VerifyConfig", "Rules", "DEFAULT_EXTRACT"]
