"""Tokenizer identity for offline KD, importable without torch.

Offline KD compares a student's logits with teacher top-k *token ids* stored at sampling time, so
the two tokenizers must map the same strings to the same ids. ``tokenizer_hash`` hashes exactly
that: the sorted (token, id) vocabulary including added/special tokens. The sampling stage stores
``tokenizer_tag(tok, name)`` = ``"<name>@<hash>"`` in the ``tokenizer`` column; training checks
the hash part against the student's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _vocab(tokenizer: Any) -> dict[str, int]:
    if isinstance(tokenizer, dict):
        return tokenizer
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        raise TypeError(f"cannot read a vocabulary from {type(tokenizer).__name__}")
    try:  # tokenizers.Tokenizer.get_vocab(with_added_tokens=True)
        return get_vocab(with_added_tokens=True)
    except TypeError:  # transformers tokenizers (added tokens included)
        return get_vocab()


def tokenizer_hash(tokenizer: Any) -> str:
    """16-hex-digit sha256 of the tokenizer's sorted (token, id) vocabulary (with added tokens).

    Accepts a transformers tokenizer, a ``tokenizers.Tokenizer`` or a plain ``{token: id}`` dict.
    """
    items = sorted((str(t), int(i)) for t, i in _vocab(tokenizer).items())
    blob = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tokenizer_tag(tokenizer: Any, name: str | None = None) -> str:
    """The value stored in the ``tokenizer`` column: ``"<name>@<hash>"``."""
    name = name or getattr(tokenizer, "name_or_path", None) or "tokenizer"
    return f"{name}@{tokenizer_hash(tokenizer)}"


def split_tag(tag: str) -> tuple[str, str]:
    """``"name@hash"`` -> (name, hash); a bare hash gives ("", hash)."""
    name, _, digest = str(tag).rpartition("@")
    return name, digest
