"""What a run shows while it works: one start and one end line per stage, and progress of long steps.

* ``StageLog`` writes ``[i/n] stage: start, R rows`` and ``[i/n] stage: R -> K rows, dropped D
  (reason N, ...), S s`` (or ``cached``) through the ``curate`` logger; the CLI prints that logger on
  stderr, on a terminal or not.
* ``Ticker`` is the plain stand-in for a progress bar when the output is not a terminal (CI logs, a
  ``nohup`` run, a pipe): a line ``  verify: 12,000/100,000 rows (1,234 rows/s)`` at most every
  ``CURATE_PROGRESS_EVERY`` seconds (default 10), plus a last one when the step ends. On a terminal
  the rich bar (with rows/s) does the same job.

Library users see nothing unless they configure the ``curate`` logger (``logging``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger("curate")


def _n(x: int | float) -> str:
    return f"{int(x):,}"


class StageLog:
    """Start/end lines of the stages of one run."""

    def __init__(self, total: int):
        self.total = total

    def _tag(self, i: int, label: str) -> str:
        return f"[{i}/{self.total}] {label}"

    def source_start(self, n_sources: int) -> None:
        log.info("%s: reading %d source%s", self._tag(1, "source"), n_sources, "" if n_sources == 1 else "s")

    def start(self, i: int, label: str, rows: int) -> None:
        log.info("%s: start, %s rows", self._tag(i, label), _n(rows))

    def end(self, i: int, rec: Any) -> None:
        dropped = sum((rec.dropped or {}).values())
        parts = [f"{_n(rec.rows_in)} -> {_n(rec.rows_out)} rows"]
        if dropped:
            top = sorted(rec.dropped.items(), key=lambda kv: -kv[1])[:4]
            more = ", ..." if len(rec.dropped) > 4 else ""
            parts.append(f"dropped {_n(dropped)} ({', '.join(f'{k} {_n(v)}' for k, v in top)}{more})")
        if rec.cached:
            parts.append("cached")
        else:
            rate = rec.rows_in / rec.seconds if rec.seconds > 0 else 0.0
            parts.append(f"{rec.seconds:.2f} s" + (f" ({_n(rate)} rows/s)" if rate and rec.seconds >= 1 else ""))
        log.info("%s: %s", self._tag(i, rec.stage), ", ".join(parts))
        for w in (rec.stats or {}).get("warnings") or []:
            log.warning("%s: warning: %s", self._tag(i, rec.stage), w)


class Ticker:
    """Plain periodic progress lines for one step (no terminal)."""

    def __init__(self, total: int | None, description: str, every: float | None = None):
        self.total, self.description = total, description
        self.every = float(os.environ.get("CURATE_PROGRESS_EVERY", "10")) if every is None else every
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def _line(self) -> None:
        dt = time.monotonic() - self.t0
        rate = f" ({_n(self.done / dt)} rows/s)" if dt > 0 else ""
        of = f"/{_n(self.total)}" if self.total else ""
        log.info("  %s: %s%s rows%s", self.description, _n(self.done), of, rate)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def update(self, **kw: Any) -> None:
        if "completed" in kw:
            self.done = int(kw["completed"])
        if "total" in kw:
            self.total = kw["total"]

    def close(self) -> None:
        if time.monotonic() - self.t0 >= self.every:  # short steps: the stage's end line is enough
            self._line()


def _rate_column_base():
    from rich.progress import ProgressColumn

    return ProgressColumn


class RateColumn(_rate_column_base()):  # type: ignore[misc]
    """``1,234 rows/s`` for a rich progress bar."""

    def render(self, task: Any):  # noqa: ANN201 - rich's Text
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")
