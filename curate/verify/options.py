"""The judge's options: the parts of VerifyConfig one sample's verdict depends on."""

from __future__ import annotations

from dataclasses import dataclass

from .config import VerifyConfig


@dataclass(frozen=True)
class Options:
    """The parts of VerifyConfig the judge needs (small, picklable, hashable rules)."""

    extract: tuple[str, ...]
    rules: frozenset[str]
    unordered: str
    float_rounding: int
    numeric_precision: int
    rel_tol: float
    strict: bool
    tail_chars: int
    max_answer_chars: int

    @classmethod
    def from_config(cls, cfg: VerifyConfig) -> "Options":
        return cls(
            extract=tuple(cfg.extract),
            rules=cfg.rules.enabled(),
            unordered=cfg.rules.unordered,
            float_rounding=cfg.float_rounding,
            numeric_precision=cfg.numeric_precision,
            rel_tol=cfg.rel_tol,
            strict=cfg.strict,
            tail_chars=cfg.tail_chars,
            max_answer_chars=cfg.max_answer_chars,
        )
