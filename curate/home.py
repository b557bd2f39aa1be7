"""Where curate keeps its state: ``$CURATE_HOME`` (default ``.curate`` in the working directory), one
work folder per recipe name (stage cache, durable request logs, locks). A leaf module: no polars."""

from __future__ import annotations

import os
from pathlib import Path


def curate_home() -> Path:
    return Path(os.environ.get("CURATE_HOME", ".curate"))


def work_dir_for(name: str) -> Path:
    return curate_home() / name
