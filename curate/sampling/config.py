"""The sampling configuration: the teacher (one config per backend, owned by the backend), sampling
parameters, failure and budget limits."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, field_validator, model_validator

from ..backends.base import Strict as _Strict
from ..backends.openai_compat import OpenAITeacher
from ..backends.transformers_local import TransformersTeacher
from ..backends.vllm_offline import VLLMTeacher

DEFAULT_USER_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."

# --------------------------------------------------------------------------- configuration
TeacherConfig = Annotated[Union[OpenAITeacher, VLLMTeacher, TransformersTeacher], Field(discriminator="backend")]

class Budget(_Strict):
    """Stop cleanly (``BudgetExceeded``, resumable) once the run's logged usage reaches a limit."""

    max_completion_tokens: int | None = Field(None, ge=1)
    max_usd: float | None = Field(None, gt=0)
    usd_per_million_prompt: float = Field(0.0, ge=0)
    usd_per_million_completion: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _prices(self) -> "Budget":
        if self.max_usd is not None and not (self.usd_per_million_prompt or self.usd_per_million_completion):
            raise ValueError("max_usd needs usd_per_million_prompt and/or usd_per_million_completion")
        return self

class SampleConfig(_Strict):
    teacher: TeacherConfig
    n: int = Field(1, ge=1, le=1024)
    """Samples per problem."""
    temperature: float | None = Field(0.6, ge=0)
    """``None`` leaves it to the server (some reasoning APIs reject it)."""
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(4096, ge=1)
    seed: int | None = None
    """Default: the run seed."""
    stop: list[str] | None = None
    logprobs: int | None = Field(None, ge=0, le=100)
    """Keep the top-k raw (T=1) logprobs per completion token: ``token_ids``/``topk_ids``/``topk_logprobs``."""
    system_prompt: str | None = None
    user_template: str = DEFAULT_USER_TEMPLATE
    """``{column}`` placeholders are filled from the problem row; other braces stay literal."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Passed through to the request body (openai) or merged into the sampling params."""
    max_failures: float = Field(0.05, ge=0)
    """Failed requests (after retries) tolerated: a count (>= 1) or a fraction of the requests (< 1)."""
    budget: Budget | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v
