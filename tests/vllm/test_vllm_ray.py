"""``sample`` with ``backend: vllm`` on a local Ray cluster: one vLLM replica (a CPU cluster here: one
engine fits the memory) produces the same rows as the local run for a fixed seed."""

from __future__ import annotations

import logging

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.backends import vllm_offline
from curate.stages.base import Context

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # the first test also starts vLLM (~1 min)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def test_vllm_replica_on_ray_matches_local(cluster, tiny_teacher, tmp_path):
    from curate.engines.ray_engine import RayEngine
    from curate.registry import get_stage

    stage_cls = get_stage("sample")
    conf = stage_cls.Config.model_validate(
        {"type": "sample", "n": 2, "temperature": 1.0, "top_p": 0.95, "max_tokens": 12, "seed": 11, "logprobs": 3,
         "user_template": "{problem}",
         "teacher": {"backend": "vllm", "model": str(tiny_teacher), "dtype": "float32", "max_model_len": 512, "gpu_memory_utilization": 0.25,
                     "chunk_size": 3, "engine_kwargs": {"enforce_eager": True}}}
    )
    problems = pl.DataFrame({"problem_id": [f"p{i}" for i in range(5)], "problem": [f"What is {i} times 3?" for i in range(5)]})
    local = stage_cls(conf).run(problems, Context.for_test(tmp_path / "local"))
    vllm_offline.release()  # one engine at a time in memory
    eng = RayEngine()
    ctx = Context.for_test(tmp_path / "ray", stage_label="sample")
    dist = eng.run_stage(stage_cls(conf), problems, ctx)
    assert eng.ran == [("sample", "distributed")] and ctx.stats["sample_replicas"] == 1
    assert local.height == 10 and (local["finish_reason"] != "error").all()
    assert_frame_equal(dist, local)
