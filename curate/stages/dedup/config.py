"""The ``dedup`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..base import StageConfig


class DedupConfig(StageConfig):
    type: Literal["dedup"] = "dedup"
    field: str = "problem"
    """Text to compare: problem | reasoning | both (problem + reasoning) | any text column."""
    scope: Literal["problem", "sample"] | None = None
    """problem: units are problems (a duplicate takes all its samples); sample: each row.
    Default: problem when field is problem, else sample."""
    method: Literal["exact", "minhash"] = "minhash"
    shingle: Literal["word", "char"] = "word"
    ngram: int | None = Field(None, ge=1, le=64)
    """Shingle size. Default: 2 for field problem (short texts), else 5."""
    num_perm: int = Field(128, ge=16, le=1024)
    threshold: float | None = Field(None, gt=0.0, le=1.0)
    """Jaccard similarity of the shingle sets that makes a near duplicate. Default: 0.6 for field
    problem (word 2-grams), else 0.8."""
    keep: Literal["first", "most_correct", "shortest", "longest"] = "first"
    verify: Literal["exact", "minhash"] = "exact"
    """How LSH candidates are confirmed: exact Jaccard of shingle sets, or the signature estimate."""
    lsh_threshold: float | None = Field(None, gt=0.0, le=1.0)
    """Threshold the LSH bands are tuned for (default threshold - 0.1: favour recall, verify after)."""
    lsh_weights: tuple[float, float] = (0.1, 0.9)
    """datasketch's (false positive, false negative) weights for choosing bands x rows."""
    scheme: Literal["affine32", "legacy"] = "affine32"
    """datasketch permutation scheme: affine32 (datasketch 2 default) or legacy ((a*h+b) mod 2^61-1)."""
    seed: int = 1
    num_proc: int | None = Field(None, ge=1)
    merge_different_answers: bool = False
    """Merge near-duplicate problems whose gold answers differ (field problem). Default: keep both."""
    merge_different_numbers: bool = False
    """Merge near-duplicate problems whose texts hold different numbers (field problem). Default: keep both."""

    @model_validator(mode="after")
    def _scope(self) -> "DedupConfig":
        short = self.field == "problem"
        if self.ngram is None:
            self.ngram = 2 if short and self.shingle == "word" else 5
        if self.threshold is None:
            self.threshold = 0.6 if short else 0.8
        if self.scope is None:
            self.scope = "problem" if self.field == "problem" else "sample"
        if self.scope == "problem" and self.field != "problem":
            raise ValueError(f"scope 'problem' compares problem texts; field {self.field!r} needs scope: sample")
        if abs(sum(self.lsh_weights) - 1.0) > 1e-9:
            raise ValueError("lsh_weights must sum to 1")
        return self
