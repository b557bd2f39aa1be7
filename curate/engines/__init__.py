"""Executors for stages. ``local`` runs ``stage.run(df, ctx)`` in this process (stages may use their own
worker processes); other engines (``ray``) distribute the same stage code. Only the executor differs."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Protocol

import polars as pl

from ..errors import RecipeError
from ..stages.base import Context, Stage


class Engine(Protocol):
    name: str

    def run_stage(self, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame: ...

    def map_shards(self, fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]: ...

    def close(self) -> None: ...


class LocalEngine:
    name = "local"

    def run_stage(self, stage: Stage, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        return stage.run(df, ctx)

    def map_shards(self, fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
        """One job per work shard, one after the other (memory: one shard at a time)."""
        return [fn(*job) for job in jobs]

    def close(self) -> None:
        pass


@contextlib.contextmanager
def forkserver_pools() -> Iterator[None]:
    """Worker pools a stage starts (verify's) fork from a small server process while this is active, not from
    the caller: forking a process that runs Ray threads can hang, and a forked worker shares (and counts in
    its memory) the caller's heap, which holds a work shard of traces. A value the user set is kept."""
    key = "CURATE_VERIFY_START_METHOD"
    if key in os.environ or sys.platform != "linux":
        yield
        return
    os.environ[key] = "forkserver"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def get_engine(name: str, options: dict[str, Any] | None = None) -> Engine:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        try:
            from .ray_engine import RayEngine
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("curate"):
                raise RecipeError("engine 'ray' is not available in this build") from None
            raise
        return RayEngine(**(options or {}))
    raise RecipeError(f"unknown engine '{name}' (known: local, ray)")
