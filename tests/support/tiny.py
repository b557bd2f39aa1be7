"""Tiny, offline building blocks for tests and the toy benchmark: a character-level tokenizer trained
in-process (``tokenizers`` WordLevel wrapped in ``PreTrainedTokenizerFast``) with a ChatML-style chat
template that keeps <think> reasoning, and a randomly initialised 2-layer Llama."""

from __future__ import annotations

import string
from pathlib import Path

SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# ChatML; assistant content is rendered as is, so the <think> block of the final turn is kept
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# like some real templates: strips the reasoning from assistant turns
STRIPPING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ m['content'].split('</think>')[-1].lstrip() }}"
    "{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(extra_chars: str = "", chat_template: str = CHAT_TEMPLATE, special_tokens: tuple = (),
                   bos_token: str | None = None, eos_token: str = "<|im_end|>"):
    """A character-level fast tokenizer: every printable ASCII char + newline is one token.

    ``special_tokens`` adds whole-token specials (e.g. ``<｜User｜>``); with ``bos_token`` the tokenizer adds
    it in front of every encoded text (``add_special_tokens=True``), like Llama / DeepSeek tokenizers."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", "") + extra_chars))
    extra = [t for t in (*special_tokens, bos_token, eos_token) if t and t not in SPECIALS]
    extra = list(dict.fromkeys(extra))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + ["<unk>"] + chars + extra)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    if bos_token:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B", special_tokens=[(bos_token, vocab[bos_token])]
        )
    specials = ["<|im_start|>", "<think>", "</think>", *[t for t in extra if t not in (bos_token, eos_token)]]
    kwargs = {"bos_token": bos_token} if bos_token else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token=eos_token, unk_token="<unk>",
        additional_special_tokens=specials, **kwargs,
    )
    fast.chat_template = chat_template
    return fast


def make_model(tokenizer, hidden: int = 48, layers: int = 2, heads: int = 4, seed: int = 0, max_positions: int = 512, init_std: float = 0.15, vocab_size: int | None = None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False, initializer_range=init_std,
    )
    return LlamaForCausalLM(cfg)


def save_tiny(dir_: Path, tokenizer=None, model=None, **model_kwargs) -> Path:
    """Write a tiny model + tokenizer to ``dir_`` (loadable with from_pretrained) and return it."""
    tokenizer = tokenizer or make_tokenizer()
    model = model or make_model(tokenizer, **model_kwargs)
    dir_ = Path(dir_)
    model.save_pretrained(str(dir_))
    tokenizer.save_pretrained(str(dir_))
    return dir_
