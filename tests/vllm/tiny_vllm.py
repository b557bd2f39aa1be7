"""Helpers of the vLLM tier (used by its conftest and by benchmarks/sampling_vllm.py): the tiny
model and tokenizer written to disk, and a ``vllm serve`` subprocess on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]
"""Added tokens that are never split but stay in decoded text (``special=False``, as in Qwen3's and
DeepSeek-R1's tokenizers): vLLM detokenizes with ``skip_special_tokens=True``, and its reasoning
parsers look for ``</think>`` in that text."""
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
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS + (extra or []),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``vllm serve MODEL`` on 127.0.0.1 in a subprocess (its own process group), up until ``close``."""

    def __init__(self, model: Path, *args: str, log: Path, timeout: float = 300.0):
        import subprocess
        import time
        import urllib.request

        from curate.backends.vllm_offline import vllm_command

        self.port = free_port()
        self.model = str(model)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        cmd = vllm_command("serve", self.model, "--host", "127.0.0.1", "--port", str(self.port), *args)
        self._out = open(log, "wb")  # noqa: SIM115 - open while the server runs, closed by close()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.close()
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"vllm serve did not answer within {timeout:.0f} s (log: {log})")
            time.sleep(1.0)

    def close(self) -> None:
        import os
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()
