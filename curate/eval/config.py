"""The eval recipe (``curate eval RECIPE``): a benchmark, a model in the sampler's seat, metrics.

No torch at import time: the model is described by ``curate.sampling.SampleConfig`` (any backend),
and only ``run_eval`` loads what the backend needs.

Example::

    name: gsm8k-student
    benchmark: gsm8k                 # a preset name, or a source: {kind: file|hub|preset, ...}
    sampling:                        # curate.sampling.SampleConfig: the student in the teacher's seat
      teacher: {backend: openai, model: my-student, base_url: http://127.0.0.1:8000/v1}
      n: 8
      temperature: 0.6
      max_tokens: 4096
    metrics: {pass_k: [1, 4, 8], maj_k: [8]}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..recipe import RayOptions
from ..sampling import SampleConfig
from ..sources import FileSource, HubSource, PresetSource
from ..verify import VerifyConfig

BenchmarkConfig = Annotated[Union[PresetSource, FileSource, HubSource], Field(discriminator="kind")]


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pass_k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1])
    """k values of the unbiased pass@k (pass@1 is always reported). Each needs k <= sampling.n."""
    maj_k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """k values of maj@k (majority vote over the first k samples; ties: expected score)."""
    breakdown: list[str] | None = None
    """Meta fields to break scores down by; default: the benchmark's meta fields (subject, level)."""
    n_boot: int = Field(default=10000, ge=100)
    """Bootstrap resamples for the confidence intervals."""
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0)


class EvalOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: str = "runs/eval"
    """Runs land in ``<dir>/<name>/<UTC timestamp>/`` (relative to the working directory, like
    the curation recipe's ``output.dir``); ``curate eval -o DIR`` names the run folder itself."""


class EvalRecipe(BaseModel):
    """``curate eval`` recipe: sample + verify over a benchmark, then pass@1 / pass@k / maj@k."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Run name (a folder name)."""
    benchmark: BenchmarkConfig
    """A preset name (gsm8k, math500, aime24, aime25) or a source config (file / hub / preset)."""
    sampling: SampleConfig
    """The model under test and its sampling parameters (n = samples per problem)."""
    adapter: str | None = None
    """A PEFT LoRA adapter folder applied to ``sampling.teacher.model`` (transformers / vllm backends):
    merged once into a cached full model under ``.curate/eval-<name>/merged/``."""
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    output: EvalOutput = Field(default_factory=EvalOutput)
    seed: int = 0
    engine: Literal["local", "ray"] = "local"
    """Executor of the sample and verify stages, as in a curation recipe (``ray``: extra [ray])."""
    ray: RayOptions = Field(default_factory=lambda: RayOptions())

    @field_validator("benchmark", mode="before")
    @classmethod
    def _preset_shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            _check_preset(v)
            return {"kind": "preset", "preset": v}
        if isinstance(v, dict) and isinstance(v.get("preset"), str):
            _check_preset(v["preset"])
        if isinstance(v, dict) and "kind" not in v:
            # infer the kind from the keys people write
            if "preset" in v:
                return {"kind": "preset", **v}
            if "split" in v or "config" in v or "revision" in v:
                return {"kind": "hub", **v}
            if "path" in v:
                return {"kind": "file", **v}
        return v

    @field_validator("adapter")
    @classmethod
    def _adapter_backend(cls, v: str | None, info: ValidationInfo) -> str | None:
        sampling = info.data.get("sampling")
        if v and sampling is not None and sampling.teacher.backend == "openai":
            raise ValueError(
                "an OpenAI-compatible endpoint serves its own adapters (vllm serve BASE --enable-lora "
                "--lora-modules NAME=DIR; then sampling.teacher.model: NAME); adapter is for transformers/vllm"
            )
        return v

    @field_validator("metrics")
    @classmethod
    def _k_fits_n(cls, v: MetricsConfig, info: ValidationInfo) -> MetricsConfig:
        sampling = info.data.get("sampling")
        n = int(getattr(sampling, "n", 1) or 1) if sampling is not None else None
        for field in ("pass_k", "maj_k"):
            big = [k for k in getattr(v, field) if n is not None and k > n]
            if big:
                raise ValueError(f"{field}: k={big[0]} needs at least {big[0]} samples per problem (sampling.n={n})")
        return v


def _check_preset(name: str) -> None:
    """A ValueError (so the YAML loader reports file:line) for an unknown preset name."""
    from ..presets import PRESETS

    if name not in PRESETS:
        raise ValueError(f"unknown benchmark preset '{name}' (known: {', '.join(sorted(PRESETS))})")
