"""The judge's options: the parts of VerifyConfig one sample's verdict depends on."""

from __future__ import annotations

from dataclasses import dataclass, fields

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
        derived = {"extract": tuple(cfg.extract), "rules": cfg.rules.enabled(), "unordered": cfg.rules.unordered}
        same = {f.name: getattr(cfg, f.name) for f in fields(cls) if f.name not in derived}  # same-named fields
        return cls(**derived, **same)
