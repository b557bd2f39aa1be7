"""``sample`` on Ray: the teacher backend replicated over Ray actors, everything else unchanged.

:func:`curate.sampling.sample_rows` plans the requests, keeps the durable request log, retries
failures, enforces budgets and assembles the rows on the driver, exactly as locally; only its
``backend_factory`` builds a :class:`RayBackendPool`, a ``Backend`` that hands chunks of requests
to ``replicas`` actors, each running the ordinary local backend (``curate.sampling.make_backend``).
Every finished request comes back to the driver's sink (and its log) as soon as its chunk returns.

* ``openai``: the recipe's limits are the whole job's limits: each of the R replicas gets ``rpm / R``,
  ``tpm / R`` and ``ceil(concurrency / R)``, so together they never exceed them. Default R: one per
  Ray node (the driver's single async client already saturates an API from one machine).
* ``vllm``: one replica per tensor-parallel group: R = cluster GPUs // ``tensor_parallel_size`` (data
  parallel), each actor reserving ``tensor_parallel_size`` GPUs. A cluster without GPUs (vLLM's CPU
  build) gets one replica reserving one CPU by default (each engine holds its own model and KV cache;
  ``sample_replicas`` asks for more). Tested with the CPU build (tests/vllm/test_vllm_ray.py): the
  replica's rows equal the local run's for a fixed seed.
* ``transformers``: runs on the driver (a single local model), as with the local engine.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import errors
from ..errors import CurateError
from ..sampling import (
    OpenAITeacher,
    Request,
    SampleConfig,
    Sink,
    VLLMTeacher,
    finish_stage_sampling,
    make_backend,
    sample_rows,
)
from ..stages.base import Context, Stage

if TYPE_CHECKING:
    from .ray_engine import RayEngine
from .ray_common import distributed


class _Collect:
    """The sink inside an actor: records events, replayed into the driver's sink."""

    stop_reason: str | None = None

    def __init__(self) -> None:
        self.events: list[tuple[int, str, Any]] = []
        self._index: dict[int, int] = {}

    def done(self, req: Request, payload: dict) -> None:
        self.events.append((self._index[id(req)], "done", payload))

    def failed(self, req: Request, error: str) -> None:
        self.events.append((self._index[id(req)], "failed", error))


class SamplerActor:
    """One replica of the teacher backend (a Ray actor)."""

    def __init__(self, cfg: dict):
        self.error: tuple[str, str] | None = None
        try:
            self.backend = make_backend(SampleConfig.model_validate(cfg))
        except CurateError as e:  # reported by info(), as one line on the driver
            self.error = (type(e).__name__, str(e))

    def info(self) -> tuple[Any, ...]:
        if self.error:
            return ("error", *self.error)
        return ("ok", self.backend.teacher, getattr(self.backend, "tokenizer", None))

    def run(self, no: int, requests: list[Request]) -> tuple[int, list[tuple[int, str, Any]]]:
        """Chunk ``no`` -> (``no``, its events: (index in the chunk, done | failed | error, value))."""
        sink = _Collect()
        sink._index = {id(r): i for i, r in enumerate(requests)}
        try:
            self.backend.run(requests, sink)
        except CurateError as e:
            return no, [(-1, "error", (type(e).__name__, str(e)))]
        return no, sink.events


def replica_config(cfg: SampleConfig, replicas: int) -> SampleConfig:
    """The per-replica config: an API's rate limits and concurrency split over the replicas."""
    t = cfg.teacher
    if isinstance(t, OpenAITeacher) and replicas > 1:
        t = t.model_copy(
            update={
                "rpm": t.rpm / replicas if t.rpm else None,
                "tpm": t.tpm / replicas if t.tpm else None,
                "concurrency": max(1, math.ceil(t.concurrency / replicas)),
            }
        )
    return cfg.model_copy(update={"teacher": t})


def _raise(kind: str, message: str) -> None:
    raise getattr(errors, kind, CurateError)(message)


class RayBackendPool:
    """A ``curate.sampling.Backend`` whose work runs on ``replicas`` Ray actors."""

    def __init__(self, engine: RayEngine, cfg: SampleConfig, replicas: int | None = None):
        ray = engine.ray()
        t = cfg.teacher
        opts: dict[str, Any] = {"num_cpus": 1}
        if isinstance(t, VLLMTeacher):  # one actor per tensor-parallel group
            gpus = int(ray.cluster_resources().get("GPU", 0))
            if gpus:
                opts = {"num_gpus": t.tensor_parallel_size, "num_cpus": 1}
                auto = gpus // t.tensor_parallel_size
                if auto < 1:
                    raise errors.RecipeError(
                        f"teacher.tensor_parallel_size: {t.tensor_parallel_size} GPUs per replica, "
                        f"but the Ray cluster has {gpus}"
                    )
            else:  # vLLM's CPU build: one engine (model + KV cache) per replica, one unless asked
                auto = 1
            self.chunk = t.chunk_size
        else:
            auto = max(1, len([n for n in ray.nodes() if n.get("Alive")]))
            self.chunk = max(1, t.concurrency) if isinstance(t, OpenAITeacher) else 64
        self.replicas = replicas or auto
        per = replica_config(cfg, self.replicas).model_dump(mode="json")
        if isinstance(t, OpenAITeacher):
            self.chunk = max(1, per["teacher"]["concurrency"]) * 2  # keep every replica's client busy
        if isinstance(t, OpenAITeacher):  # the key (never in the recipe) reaches the actors by env only
            env = {k: os.environ[k] for k in (t.api_key_env, t.base_url_env) if k in os.environ}
            if env:
                opts["runtime_env"] = {"env_vars": env}
        actor = ray.remote(SamplerActor).options(**opts)
        self.ray = ray
        self.actors = [actor.remote(per) for _ in range(self.replicas)]
        infos = ray.get([a.info.remote() for a in self.actors])
        for info in infos:
            if info[0] == "error":
                self.close()
                _raise(info[1], info[2])
        self.teacher, self.tokenizer = infos[0][1], infos[0][2]

    def run(self, requests: list[Request], sink: Sink) -> None:
        """Chunks over the replicas (``ray.util.ActorPool``: a free actor takes the next chunk); no new
        chunk once the sink stops (budget / failures). On an exception the stage kills the actors."""
        from ray.util import ActorPool

        chunks = [requests[i : i + self.chunk] for i in range(0, len(requests), self.chunk)]
        pool, sent = ActorPool(self.actors), 0
        while True:
            while sent < len(chunks) and pool.has_free() and not sink.stop_reason:
                pool.submit(lambda a, job: a.run.remote(*job), (sent, chunks[sent]))
                sent += 1
            if not pool.has_next():
                break
            no, events = pool.get_next_unordered()
            for i, kind, value in events:
                if kind == "error":
                    _raise(*value)
                (sink.done if kind == "done" else sink.failed)(chunks[no][i], value)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


@distributed("sample")
def run_sample(engine: RayEngine, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    cfg = SampleConfig.model_validate(stage.config.model_dump(exclude={"type", "label"}))
    if not isinstance(cfg.teacher, (OpenAITeacher, VLLMTeacher)):
        ctx.stats.pop("engine", None)
        return stage.run(df, ctx)  # a local transformers model: on the driver
    pools: list[RayBackendPool] = []

    def make(c: SampleConfig) -> RayBackendPool:
        pools.append(RayBackendPool(engine, c, engine.sample_replicas))
        return pools[-1]

    try:
        # the same sample_rows as the local stage; only the backend differs (teacher replicas)
        out = sample_rows(df, cfg, ctx, log_name="sample", backend_factory=make)
    finally:
        for p in pools:
            p.close()
    out = finish_stage_sampling(out, ctx, "sample", flatten=True)  # exactly as the local stage does
    if pools:
        ctx.stats["sample_replicas"] = pools[0].replicas
    return out
