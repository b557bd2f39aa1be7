"""Student training (extra ``train``): SFT, offline top-k KD, online KD, LoRA merge.

Never imported by the core. This ``__init__`` stays torch-free: ``tokenizer_hash`` and the recipe
model import without torch; the trainers load torch when called.
"""

from __future__ import annotations

from pathlib import Path

from ..tokenizer import split_tag, tokenizer_hash, tokenizer_tag

__all__ = ["run_train", "merge_lora", "tokenizer_hash", "tokenizer_tag", "split_tag"]


def run_train(recipe_path: Path, overrides: list[str] | None = None) -> Path:
    """Train a student from a train recipe YAML; returns the output dir."""
    from .run import run_train as _run

    return _run(Path(recipe_path), overrides)


def merge_lora(adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA adapter into its base model and save the full model (+ tokenizer) to out_dir."""
    from .merge import merge_lora as _merge

    return _merge(Path(adapter_dir), Path(out_dir))
