"""Base model + LoRA adapter for local backends: merge once, cache by content, sample the merged model.

``sampling.teacher.model`` names the base (hub id or folder) and the recipe's ``adapter`` a PEFT LoRA
folder (``adapter_config.json`` + weights, e.g. what ``curate train`` writes). The adapter is merged
into the base with peft (``merge_and_unload``) and saved under
``<work_dir>/merged/<hash of base id + adapter files>/``; later evals of the same pair reuse it. The
``transformers`` and ``vllm`` backends then load that folder like any model. For an OpenAI-compatible
server, serve the adapter there instead (``vllm serve BASE --enable-lora --lora-modules name=DIR``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import RecipeError, require


def adapter_fingerprint(base: str, adapter_dir: Path) -> str:
    """The merged model's identity: the base (by content when it is a local folder, else its hub id)
    and the adapter's files. A base retrained into the same folder gets a new merge."""
    from ..fingerprint import path_fingerprint

    h = hashlib.sha256(base.encode())
    h.update((path_fingerprint(base) or "").encode())
    for p in sorted(adapter_dir.iterdir()):
        if p.is_file() and (p.name.startswith("adapter_") or p.suffix in (".json", ".safetensors", ".bin", ".model")):
            h.update(p.name.encode())
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:20]


def check_adapter(adapter_dir: Path, where: str) -> None:
    if not adapter_dir.is_dir():
        raise RecipeError(f"{where}: adapter: {adapter_dir}: no such folder")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise RecipeError(f"{where}: adapter: {adapter_dir}: no adapter_config.json (not a PEFT LoRA adapter folder)")


def merged_model_dir(base: str, adapter_dir: Path, cache_dir: Path, *, where: str = "eval", trust_remote_code: bool = False) -> Path:
    """The folder of ``base`` with the LoRA ``adapter_dir`` merged in (built once, then reused)."""
    check_adapter(adapter_dir, where)
    out = cache_dir / "merged" / adapter_fingerprint(base, adapter_dir)
    if (out / "config.json").is_file():
        return out
    require("torch", "train", "evaluating a LoRA adapter")
    peft = require("peft", "train", "evaluating a LoRA adapter")
    transformers = require("transformers", "train", "evaluating a LoRA adapter")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(base, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - hub/IO/config errors all mean "cannot load the base"
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RecipeError(f"{where}: sampling.teacher.model: cannot load base model {base!r}: {first}") from None
    try:
        merged = peft.PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - shape mismatch, wrong base, corrupt weights
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RecipeError(f"{where}: adapter: {adapter_dir} does not fit base {base!r}: {first}") from None
    tok_src = str(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() else base
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code)
    with atomic_dir(out, on_exists="keep") as tmp:  # another process may win the race: keep theirs
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out
