"""The ``verify`` stage's config: what its YAML entry may say (see stage.py for what it does)."""

from __future__ import annotations

from ...verify import VerifyConfig


class VerifyStageConfig(VerifyConfig):
    allow_missing_gold: bool = False
    """Run when most rows have no gold answer (their verdict is ``no_gold``). Default: stop, since a
    source whose ``fields`` map misses the gold column would otherwise pass every trace ungraded."""
