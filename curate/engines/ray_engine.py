"""The ``ray`` engine: the same stage code, executed on a Ray cluster (``pip install 'curate[ray]'``).

How a stage runs here (first match wins):

1. a distributed implementation registered for the stage type in :data:`DISTRIBUTED` (``sample``:
   the stage's own ``sample_rows`` with a backend factory that spreads requests over teacher replicas,
   see :mod:`.ray_sample`);
2. the older protocol for row-wise stages: ``map_batch(batch, ctx) -> batch`` over Ray Data
   ``map_batches`` (the stage object and ``ctx`` are shipped to the workers), then the optional
   ``finalize(df, ctx) -> df`` on the driver;
3. everything else: the stage's own ``run(df, ctx)`` on the driver, with this engine as
   ``ctx.executor``, so the kernels the stage runs with ``ctx.map`` (:class:`curate.context.Kernel`:
   verify, decontaminate, audit) go to Ray Data ``map_batches`` (:meth:`RayEngine.map_kernel`), the
   dedup stage's duplicate finder is :meth:`RayEngine.find_duplicates` (MinHash signatures in
   ``map_batches``, LSH band buckets by a Ray Data ``groupby``, connected components on the driver,
   see :mod:`.ray_dedup`), and everything around them (aggregates, drop marking, stats) is the
   stage's code.

Results are identical to the local engine (tests/test_ray_engine.py). See docs/ray.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Callable

import polars as pl
import pyarrow as pa

from .. import errors
from ..errors import BackendError, CurateError, require
from ..stages.base import Context, Kernel, Stage
from . import forkserver_pools
from .ray_common import (  # noqa: F401
    DISTRIBUTED,
    ERROR,
    ROW,
    _ArrowMap,
    _polars_batch,
    distributed,
)


def _stage_map_batch(df: pl.DataFrame, stage: Stage, ctx: Context) -> pl.DataFrame:
    rows = df.get_column(ROW)
    out = stage.map_batch(df.drop(ROW), ctx)  # type: ignore[attr-defined]
    if out.height != df.height:
        raise CurateError(
            f"engine ray: {type(stage).__name__}.map_batch must return one row per input row "
            f"(got {out.height} for {df.height}); drop rows with drop_reason instead"
        )
    return out.with_columns(rows)


def _kernel_batch(df: pl.DataFrame, kernel: Kernel) -> pl.DataFrame:
    """A stage's kernel on one Ray batch: its columns, with the row index carried through."""
    out = kernel(df.drop(ROW))
    if out.height != df.height:
        raise CurateError(
            f"engine ray: the kernel {type(kernel).__name__} must return one row per input row "
            f"(got {out.height} for {df.height})"
        )
    return out.with_columns(df.get_column(ROW))


def _check_reachable(address: str) -> None:
    """Fail in seconds, as one line, where ``ray.init`` would retry an unreachable address for minutes."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if "://" in hostport or not host or not port.isdigit():
        return  # auto, local, ...: ray.init answers those quickly itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise BackendError(
            f"engine ray: no Ray cluster answers at {address} ({e.strerror or e}); "
            "start one with `ray start --head` or fix ray.address / --address"
        ) from None


def _shard_task(fn: Callable[..., Any], *args: Any) -> Any:
    """One work shard in a Ray worker (its verify pool, if any, must not fork the Ray worker)."""
    os.environ.setdefault("CURATE_VERIFY_START_METHOD", "forkserver")
    return fn(*args)


def _ray_log_level() -> int:
    return logging.INFO if os.environ.get("CURATE_RAY_VERBOSE", "") not in ("", "0") else logging.ERROR


class RayEngine:
    """Runs stages on Ray. ``address``: ``auto`` / ``ray://host:10001`` / ``host:6379``; unset starts a
    local instance with ``num_cpus``. ``batch_size``: rows per Ray Data batch."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        batch_size: int = 1024,
        sample_replicas: int | None = None,
    ):
        # checked here, not on first use: a run served entirely from the stage cache never starts Ray,
        # and would otherwise pass without the package (and fail later, on the first changed stage)
        require("ray", "ray", "engine: ray")
        require("ray.data", "ray", "engine: ray")
        if address:  # an unreachable cluster fails before any stage runs, not at the first Ray stage
            _check_reachable(address)
        self.address, self.num_cpus, self.batch_size = address, num_cpus, int(batch_size)
        self.sample_replicas = sample_replicas
        """Teacher backend replicas for ``sample`` (default: GPUs // tensor_parallel_size for vLLM,
        one per node for API backends); see :mod:`.ray_sample`."""
        self._owns = False
        self._lock = threading.Lock()
        self.ran: list[tuple[str, str]] = []
        """(stage label, how) for every stage run: ``distributed``, ``map_batches``, ``kernels`` (its own run, its
        kernels on Ray) or ``driver``."""

    # -- cluster ---------------------------------------------------------------------------------
    def ray(self):
        """The ``ray`` module, connected (a running ``ray.init`` in this process is reused)."""
        ray = require("ray", "ray", "engine: ray")
        require("ray.data", "ray", "engine: ray")
        with self._lock:
            if not ray.is_initialized():
                # Ray's own notices (token auth, disabled progress bars, plans) are noise in a curate
                # run: errors only, unless CURATE_RAY_VERBOSE=1
                kw: dict[str, Any] = dict(
                    include_dashboard=False, log_to_driver=False, logging_level=_ray_log_level()
                )
                if self.address:
                    _check_reachable(self.address)
                    kw["address"] = self.address
                elif self.num_cpus:
                    kw["num_cpus"] = self.num_cpus
                try:
                    ray.init(**kw)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    where = self.address or "a local instance"
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise BackendError(f"engine ray: cannot start/connect to {where}: {msg}") from None
                self._owns = True
            for name in ("ray", "ray.data"):  # no per-dataset plans or notices in the run's output
                logging.getLogger(name).setLevel(_ray_log_level())
            dctx = ray.data.DataContext.get_current()
            dctx.enable_progress_bars = False
            if hasattr(dctx, "print_on_execution_start"):
                dctx.print_on_execution_start = False
            dctx.execution_options.preserve_order = True
            # sort-based shuffle: no aggregator actors to start, much faster for our small groupbys
            dctx.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        return ray

    def close(self) -> None:
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False

    # -- executing -------------------------------------------------------------------------------
    def map_shards(self, fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
        """One Ray task per work shard (a problem-scope stage, a global stage's first phase). Shards are
        parquet files under the recipe's work folder: on a multi-node cluster that folder (CURATE_HOME)
        must be on a file system every node mounts at the same path."""
        if not jobs:
            return []
        ray = self.ray()
        self.ran.append((str(jobs[0][-1]), "shards"))
        task = ray.remote(num_cpus=1)(_shard_task)
        return ray.get([task.remote(fn, *job) for job in jobs])

    def run_stage(self, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        with forkserver_pools():
            return self._run_stage(stage, df, ctx)

    def _run_stage(self, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        label = ctx.stage_label or stage.name
        impl = DISTRIBUTED.get(stage.name)
        if impl is not None:
            self.ran.append((label, "distributed"))
            ctx.stats["engine"] = "ray"
            return impl(self, stage, df, ctx)
        if callable(getattr(stage, "map_batch", None)):
            self.ran.append((label, "map_batches"))
            ctx.stats["engine"] = "ray"
            out = self.map_frame(df, _polars_batch, _stage_map_batch, stage, ctx)
            finalize = getattr(stage, "finalize", None)
            return finalize(out, ctx) if callable(finalize) else out
        # the stage's own run; the kernels it runs with ctx.map go to Ray Data (map_kernel)
        before, ctx.executor = ctx.executor, self
        self._distributed = False
        try:
            out = stage.run(df, ctx)
        finally:
            ctx.executor = before
        if self._distributed:  # the stage's duplicate finder ran on the cluster
            ctx.stats["engine"] = "ray"
        self.ran.append((label, "kernels" if ctx.stats.get("engine") == "ray" else "driver"))
        return out

    def find_duplicates(self, texts: Any, *args: Any, **kw: Any) -> Any:
        """The dedup stage's duplicate finder on the cluster (same contract and result as
        :func:`curate.dedup.find_duplicates`): MinHash signatures and LSH band buckets over Ray Data."""
        from .ray_dedup import ray_find_duplicates

        self._distributed = True
        return ray_find_duplicates(texts, *args, engine=self, **kw)

    def map_kernel(self, kernel: Kernel, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """The executor seam (:meth:`curate.context.Context.map`): ``kernel`` over Ray Data ``map_batches``
        (the kernel object travels to the workers), its columns in input order."""
        ctx.stats["engine"] = "ray"
        ctx.stats["pool"] = {"engine": "ray", "batches": -(-df.height // self.batch_size)}
        return self.map_frame(df, _polars_batch, _kernel_batch, kernel)

    def map_arrow(self, table: pa.Table, fn: Callable[..., pa.Table], *args: Any, batch_size: int | None = None) -> pa.Table:
        """``fn(batch, *args)`` over ``table`` in Ray Data ``map_batches`` (one block per batch, so the
        batches spread over the cluster); the result in input order (by the ``_ray_row`` column, added
        here when absent)."""
        ray = self.ray()
        if ROW not in table.column_names:
            table = table.append_column(ROW, pa.array(range(table.num_rows), type=pa.int64()))
        if table.num_rows == 0:
            return fn(table, *args)
        size = max(1, batch_size or self.batch_size)
        blocks = [table.slice(o, size) for o in range(0, table.num_rows, size)]
        ds = ray.data.from_arrow(blocks).map_batches(
            _ArrowMap(fn, args), batch_format="pyarrow", batch_size=None, zero_copy_batch=True
        )
        parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
        for t in parts:
            if ERROR in t.column_names:  # a CurateError raised on a worker: the same one line here
                cls = getattr(errors, t.column(ERROR)[0].as_py(), CurateError)
                raise cls(t.column("message")[0].as_py())
        out = pa.concat_tables(parts, promote_options="permissive") if parts else fn(table.slice(0, 0), *args)
        return out.sort_by(ROW)

    def map_frame(self, df: pl.DataFrame, fn: Callable[..., pa.Table], *args: Any, batch_size: int | None = None) -> pl.DataFrame:
        """:meth:`map_arrow` over a polars frame; the ``_ray_row`` column is dropped from the result."""
        out = pl.from_arrow(self.map_arrow(df.to_arrow(), fn, *args, batch_size=batch_size))
        assert isinstance(out, pl.DataFrame)
        return out.drop(ROW)


# the distributed implementations register themselves
from . import ray_sample as _ray_sample  # noqa: E402,F401
