"""Benchmark presets: hub ids and field mappings of common math benchmarks.

Used by ``decontaminate`` (benchmark sets to check against) and ``curate eval`` (what to measure).
A preset is only a shortcut for a hub source; any hub dataset or local file works with a field map.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchmarkPreset:
    name: str
    path: str  # HF hub dataset id
    split: str
    problem_field: str
    answer_field: str
    answer_extractor: str = "field"  # field | gsm8k | boxed  (see curate.sources)
    config: str | None = None
    revision: str | None = None
    extra_fields: tuple[str, ...] = field(default_factory=tuple)  # carried into meta (subject, level)


PRESETS: dict[str, BenchmarkPreset] = {
    "gsm8k": BenchmarkPreset("gsm8k", "openai/gsm8k", "test", "question", "answer", "gsm8k", config="main"),
    "math500": BenchmarkPreset(
        "math500", "HuggingFaceH4/MATH-500", "test", "problem", "answer", extra_fields=("subject", "level")
    ),
    "aime24": BenchmarkPreset("aime24", "HuggingFaceH4/aime_2024", "train", "problem", "answer"),
    "aime25": BenchmarkPreset("aime25", "math-ai/aime25", "test", "problem", "answer"),
}


def get_preset(name: str) -> BenchmarkPreset:
    from .errors import RecipeError

    try:
        return PRESETS[name]
    except KeyError:
        raise RecipeError(f"unknown benchmark preset '{name}' (known: {', '.join(sorted(PRESETS))})") from None
