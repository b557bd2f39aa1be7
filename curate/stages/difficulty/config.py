"""The ``difficulty`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ... import difficulty as D
from ...sampling import SampleConfig
from ...verify import VerifyConfig
from ..base import StageConfig

UNGRADED_VERDICTS = ("no_gold", "timeout")

DEFAULT_JUDGE_PROMPT = (
    "Rate the difficulty of the following problem on a scale from 1 (trivial) to 10 "
    "(olympiad-level, very hard). Do not solve it. Reply with one line: 'Difficulty: N'.\n\n"
    "Problem:\n{problem}"
)


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, gt=0)


class PassRateMethod(_Method):
    method: Literal["pass_rate"] = "pass_rate"
    source: Literal["teacher", "probe"] = "teacher"
    estimate: Literal["point", "lower", "upper"] = "lower"
    """Which pass-rate estimate ranks problems: the point estimate or a Wilson bound."""


class LengthMethod(_Method):
    method: Literal["length"] = "length"


class JudgeMethod(_Method):
    method: Literal["judge"] = "judge"


Method = Annotated[Union[PassRateMethod, LengthMethod, JudgeMethod], Field(discriminator="method")]


class Buckets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int | None = Field(None, ge=1, le=100)
    """Number of equal-count (quantile) buckets; default 3 unless ``edges`` is given."""
    edges: list[float] | None = None
    """Fixed inner edges on ``difficulty`` (e.g. [0.33, 0.66]); bucket i holds edges[i-1] < d <= edges[i]."""
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Buckets":
        if self.edges is not None:
            if self.n is not None and self.n != len(self.edges) + 1:
                raise ValueError(f"buckets: n={self.n} but {len(self.edges)} edges make {len(self.edges) + 1} buckets")
            if any(not 0.0 <= e <= 1.0 for e in self.edges) or any(
                b <= a for a, b in zip(self.edges, self.edges[1:])
            ):
                raise ValueError("buckets.edges must be strictly increasing values in [0, 1]")
        if self.labels is not None:
            if len(self.labels) != self.count:
                raise ValueError(f"buckets.labels has {len(self.labels)} labels for {self.count} buckets")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("buckets.labels must be distinct")
        return self

    @property
    def count(self) -> int:
        if self.edges is not None:
            return len(self.edges) + 1
        return self.n or 3

    def names(self) -> list[str]:
        return list(self.labels) if self.labels else D.default_bucket_labels(self.count)


class DifficultyConfig(StageConfig):
    type: Literal["difficulty"] = "difficulty"
    methods: list[Method] = Field(default_factory=lambda: [PassRateMethod()], min_length=1)
    combine: Literal["rank", "score"] = "rank"
    """rank: weighted mean of per-method normalized ranks; score: weighted mean of natural [0,1] scores
    (1 - pass rate, (judge - 1) / 9, min-max of log tokens)."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Confidence level of the Wilson interval."""
    probe: SampleConfig | None = None
    """The probe model (any backend), sampled ``n`` times per problem; needed by ``source: probe``."""
    probe_verify: VerifyConfig | None = None
    """How the probe's answers are verified (default: the verify defaults)."""
    judge: SampleConfig | None = None
    """The judge model; needed by ``method: judge``. Its ``user_template`` defaults to a 1-10 rating
    prompt (``DEFAULT_JUDGE_PROMPT``) instead of the solving prompt; ``{problem}`` etc. are filled in."""
    buckets: Buckets = Field(default_factory=Buckets)

    min_pass_rate: float | None = Field(None, ge=0, le=1)
    """Drop problems whose pass rate is below this (reason ``pass_rate_below_window``)."""
    max_pass_rate: float | None = Field(None, ge=0, le=1)
    """Drop problems whose pass rate is above this (reason ``pass_rate_above_window``)."""
    window: Literal["point", "interval"] = "point"
    """point: test the pass rate itself; interval: drop only when the whole Wilson interval is outside."""
    unsolved: Literal["drop", "keep", "resample"] = "drop"
    """Problems with graded teacher samples and none correct: drop (reason ``unsolved``), keep, or
    resample (drop, and write the problems to ``<stage dir>/unsolved.jsonl`` for another teacher)."""
    keep_incorrect: bool = False
    """Keep incorrect teacher traces in the train split (reason ``incorrect_trace`` otherwise)."""
    keep_ungraded: bool = True
    """Keep traces that could not be graded (no gold answer, verifier timeout): reason ``ungraded_trace``."""
    max_correct_per_problem: int | None = Field(None, ge=1)
    """Keep at most m correct traces per problem (reason ``max_correct_per_problem``)."""
    prefer: Literal["shortest", "longest", "random"] = "shortest"
    """Which correct traces ``max_correct_per_problem`` keeps (by completion tokens; random is seeded)."""
    seed: int | None = None
    """Seed for ``prefer: random`` (default: the run seed)."""
    tokenizer: str | None = None
    """A Hugging Face tokenizer name/path to count trace tokens where ``completion_tokens`` is null
    (existing traces); default: the audit's approximation (``approx-regex``, docs/audit.md)."""

    @model_validator(mode="after")
    def _check(self) -> "DifficultyConfig":
        kinds = [m.method for m in self.methods]
        if any(isinstance(m, PassRateMethod) and m.source == "probe" for m in self.methods) and self.probe is None:
            raise ValueError("difficulty.probe is required by a pass_rate method with source: probe")
        if "judge" in kinds and self.judge is None:
            raise ValueError("difficulty.judge is required by method: judge")
        if kinds.count("judge") > 1 or kinds.count("length") > 1:
            raise ValueError("difficulty.methods: list judge and length at most once each")
        srcs = [m.source for m in self.methods if isinstance(m, PassRateMethod)]
        if len(srcs) != len(set(srcs)):
            raise ValueError("difficulty.methods: one pass_rate method per source")
        if self.min_pass_rate is not None and self.max_pass_rate is not None and self.min_pass_rate > self.max_pass_rate:
            raise ValueError("difficulty: min_pass_rate must be <= max_pass_rate")
        return self
