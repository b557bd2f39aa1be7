"""Merge a LoRA adapter into its base model (peft's ``merge_and_unload``) and save model + tokenizer."""

from __future__ import annotations

from pathlib import Path

from ..errors import RecipeError, require


def merge_lora(adapter_dir: Path, out_dir: Path) -> Path:
    require("torch", "train")
    require("peft", "train")
    from peft import AutoPeftModelForCausalLM

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise RecipeError(f"{adapter_dir}: no adapter_config.json (not a LoRA adapter dir)")
    try:
        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir))
    except Exception as e:
        raise RecipeError(f"{adapter_dir}: cannot load the adapter or its base model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(out_dir))
    except (OSError, ValueError):
        pass  # adapter saved without a tokenizer: the base model's still applies
    return out_dir
