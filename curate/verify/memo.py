"""The one bounded memo of the answer checker's per-process caches (parses, extractions, verdicts)."""

from __future__ import annotations

from collections import OrderedDict


class Memo(OrderedDict):
    """A bounded memo of a pure function's results (per process; the oldest entry goes first). Only
    single dict operations, so threads sharing it can at worst recompute a result, never fail."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, k, v):
        self[k] = v
        if len(self) > self.size:
            try:
                self.popitem(last=False)
            except KeyError:
                pass
        return v
