"""``curate view``: a trace explorer in the browser (extra ``[view]``: starlette, uvicorn, duckdb).

``serve(path, host=..., port=...)`` runs the app; ``create_app(Store(path))`` builds it (tests);
the data layer (DuckDB over the parquet shards, a background index) is :mod:`curate.view.data`."""

from __future__ import annotations

from typing import Any


def serve(*a: Any, **kw: Any) -> None:
    from ..errors import require

    for mod in ("starlette", "uvicorn", "duckdb"):
        require(mod, "view", "curate view")
    from .app import serve as _serve

    _serve(*a, **kw)


__all__ = ["serve"]
