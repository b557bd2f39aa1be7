"""The ``decontaminate`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...presets import PRESETS
from ..base import StageConfig


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    preset: str | None = None
    path: str | None = None
    """A local file (jsonl/json/parquet/csv)."""
    hub: str | None = None
    """A hub dataset id (or a local dataset folder), loaded with datasets.load_dataset."""
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    field: str | None = None
    """The benchmark's text field (default: the preset's problem field, else 'problem')."""
    format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"

    @model_validator(mode="after")
    def _one_source(self) -> "BenchmarkSpec":
        given = [k for k in ("preset", "path", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a benchmark needs exactly one of preset, path, hub")
        if self.preset and self.preset not in PRESETS:
            raise ValueError(f"unknown benchmark preset '{self.preset}' (known: {', '.join(sorted(PRESETS))})")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.preset:
            return self.preset
        if self.path:
            return Path(self.path).stem
        return str(self.hub).rstrip("/").split("/")[-1]


class DecontaminateConfig(StageConfig):
    type: Literal["decontaminate"] = "decontaminate"
    benchmarks: list[BenchmarkSpec] = Field(min_length=1)
    field: str = "problem"
    ngram: int = Field(8, ge=1, le=64)
    min_overlap: float = Field(3.0, gt=0)
    """Rarity-weighted shared n-grams that flag a row: each distinct shared n-gram counts
    1 / (benchmark rows that contain it), so a stock phrase repeated across a benchmark weighs little.
    1 with a benchmark of distinct texts is open-r1's "any shared 8-gram"."""
    minhash: bool = True
    minhash_ngram: int = Field(1, ge=1, le=16)
    minhash_threshold: float = Field(0.5, gt=0.0, le=1.0)
    minhash_min_shingles: int = Field(15, ge=1)
    """MinHash compares only texts with this many distinct shingles (words) or more on both sides."""
    num_perm: int = Field(128, ge=16, le=1024)
    max_examples: int = Field(3, ge=0, le=100)

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _strings_are_presets(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        files = (".jsonl", ".json", ".parquet", ".csv", ".ndjson")
        return [
            ({"path": b} if b.lower().endswith(files) else {"preset": b}) if isinstance(b, str) else b for b in v
        ]

    @model_validator(mode="after")
    def _unique_names(self) -> "DecontaminateConfig":
        names = [b.label for b in self.benchmarks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"benchmark names must be unique (repeated: {', '.join(sorted(dup))}); set name:")
        return self
