"""Worker processes with a per-item CPU-time budget.

Math-Verify's own timeouts use ``signal.alarm`` and only work on a main thread; a pathological
answer (``10^{10^{10^{10}}}``, ``\\frac`` nested 500 deep) can also hang inside C code where no
signal handler runs. So each item runs in a worker process, and its budget is *CPU time*, not
wall-clock time, so that a verdict does not depend on how busy the machine is:

  * soft limit: in the worker, ``signal.setitimer(ITIMER_PROF)`` interrupts Python code after
    ``timeout_s`` seconds of the worker's CPU time -> the item gets verdict ``timeout`` and the
    worker carries on;
  * hard limit: before each item the worker sets its ``RLIMIT_CPU`` soft limit to its CPU time so
    far + ``timeout_s`` + grace; the kernel ends a worker stuck in C code at that point (SIGXCPU,
    core dumps off); the parent sees it die, gives that item ``timeout``, starts a new worker and
    re-queues the rest of the chunk;
  * retry: every item that timed out is judged once more with ``RETRY_FACTOR`` times the budget
    (a fresh pass over those items only), so an item near the limit does not flip between runs;
  * backstop: wall-clock only as a last resort, for a worker that stops consuming CPU (blocked):
    a worker busy on one item for ``wall_limit_s`` (default ``20 * timeout_s + 10``) is killed.

Gold answers are parsed once per (gold, problem) in each worker (a small cache), and items are
sent in chunks grouped by problem so the cache hits.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any, Iterator, Optional, Sequence

from .equiv import Gold, Options, check_row, prepare_gold

# one task: (row index, gold, problem, answer_text, reasoning, finish_reason)
Task = tuple[int, Optional[str], Optional[str], Optional[str], Optional[str], Optional[str]]
Result = tuple[Optional[str], str]

RETRY_FACTOR = 2.0
"""a timed-out item is judged once more with this many times the budget"""

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    return time.process_time()


class ItemTimeout(BaseException):
    """Raised by the soft per-item alarm (BaseException so library ``except Exception`` passes it)."""


def _on_alarm(signum, frame):  # pragma: no cover - exercised in workers
    raise ItemTimeout()


_TIMER = getattr(signal, "ITIMER_PROF", None)
_TIMER_SIGNAL = getattr(signal, "SIGPROF", None)


@contextmanager
def soft_timeout(seconds: float) -> Iterator[None]:
    """Interrupt Python code after ``seconds`` of this process's CPU time (``ITIMER_PROF``; main
    thread only, a no-op elsewhere)."""
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or _TIMER is None):
        yield
        return
    old = signal.signal(_TIMER_SIGNAL, _on_alarm)
    signal.setitimer(_TIMER, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(_TIMER, 0)
        signal.signal(_TIMER_SIGNAL, old)


class Judge:
    """Per-process state: the options and a small cache of prepared golds."""

    def __init__(self, opts: Options, timeout_s: float, cache_size: int = 256):
        self.opts, self.timeout_s = opts, timeout_s
        self.golds: OrderedDict[tuple, Optional[Gold]] = OrderedDict()
        self.cache_size = cache_size

    def gold(self, gold: Optional[str], problem: Optional[str]) -> Optional[Gold]:
        key = (gold, problem)
        if key in self.golds:
            self.golds.move_to_end(key)
            return self.golds[key]
        try:
            with soft_timeout(self.timeout_s):
                g = prepare_gold(gold, problem, self.opts)
        except ItemTimeout:  # the gold itself is pathological: compare as strings only
            g = prepare_gold(gold, problem, _no_parse(self.opts))
        except Exception:
            g = None
        self.golds[key] = g
        if len(self.golds) > self.cache_size:
            self.golds.popitem(last=False)
        return g

    def one(self, task: Task) -> Result:
        _, gold, problem, answer, reasoning, finish = task
        t0 = cpu_seconds()
        g = self.gold(gold, problem)
        left = self.timeout_s - (cpu_seconds() - t0)
        if left <= 0:
            return None, "timeout"
        seen: list = []
        try:
            with soft_timeout(left):
                return check_row(g, answer, reasoning, finish, problem, self.opts, seen)
        except ItemTimeout:
            return (seen[0] if seen else None), "timeout"
        except Exception:  # RecursionError or a library bug on odd input: per-row data, not a crash
            return (seen[0] if seen else None), "unparseable"


def _no_parse(opts: Options) -> Options:
    import dataclasses

    return dataclasses.replace(opts, max_answer_chars=0)


def _cpu_limit(extra_s: float) -> None:
    """Let the kernel end this process after ``extra_s`` more CPU seconds (RLIMIT_CPU soft limit;
    whole seconds). The hard limit is left alone so the soft one can be raised for the next item."""
    if resource is None:
        return
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        want = int(math.ceil(cpu_seconds() + extra_s))
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (want, hard))
    except (ValueError, OSError):
        pass


def _worker(conn, opts: Options, timeout_s: float, cur, hard_s: float) -> None:  # pragma: no cover - subprocess
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if resource is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        except (ValueError, OSError):
            pass
    judge = Judge(opts, timeout_s)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        chunk_id, items = msg
        out = []
        for task in items:
            cur[0] = task[0]
            cur[1] = time.monotonic()
            _cpu_limit(hard_s)
            out.append((task[0], judge.one(task)))
        cur[1] = 0.0
        _cpu_limit(3600.0)  # idle between chunks: no limit that matters
        conn.send((chunk_id, out))


class _W:
    __slots__ = ("proc", "conn", "cur", "chunk")

    def __init__(self, proc, conn, cur):
        self.proc, self.conn, self.cur, self.chunk = proc, conn, cur, None


def _context():
    # fork is fast (sympy and Math-Verify are already imported here); elsewhere spawn
    method = os.environ.get("CURATE_VERIFY_START_METHOD") or ("fork" if sys.platform == "linux" else "spawn")
    return mp.get_context(method)


def run_tasks(
    tasks: Sequence[Task],
    opts: Options,
    *,
    timeout_s: float,
    num_proc: int,
    progress: Any = None,
    grace_s: float | None = None,
    wall_limit_s: float | None = None,
    retry: bool = True,
) -> tuple[list[Result], dict[str, int]]:
    """Judge every task within a CPU-time budget of ``timeout_s`` per item; items that time out
    are judged once more with ``RETRY_FACTOR`` times the budget. Returns results in task order and
    pool counters (killed workers, soft timeouts, retried items, timeouts after the retry)."""
    results, stats = _run(tasks, opts, timeout_s=timeout_s, num_proc=num_proc, progress=progress,
                          grace_s=grace_s, wall_limit_s=wall_limit_s)
    stats["retried"] = 0
    again = [i for i, r in enumerate(results) if r[1] == "timeout"]
    if retry and again and RETRY_FACTOR > 1:
        stats["retried"] = len(again)
        res2, st2 = _run([tasks[i] for i in again], opts, timeout_s=timeout_s * RETRY_FACTOR,
                         num_proc=min(num_proc, len(again)) if num_proc > 0 else 0, progress=None,
                         grace_s=None if grace_s is None else grace_s * RETRY_FACTOR,
                         wall_limit_s=None if wall_limit_s is None else wall_limit_s * RETRY_FACTOR)
        for i, r in zip(again, res2):
            if r[1] == "timeout" and r[0] is None:
                r = (results[i][0], "timeout")
            results[i] = r
        for k in ("workers", "killed"):
            stats[k] += st2[k]
    stats["timeouts"] = sum(r[1] == "timeout" for r in results)
    return results, stats


def _run(
    tasks: Sequence[Task],
    opts: Options,
    *,
    timeout_s: float,
    num_proc: int,
    progress: Any = None,
    grace_s: float | None = None,
    wall_limit_s: float | None = None,
) -> tuple[list[Result], dict[str, int]]:
    """One pass over the tasks (see ``run_tasks``)."""
    n = len(tasks)
    if n == 0:
        return [], _new_stats()
    if num_proc <= 0:  # in this process (signal timeout on the main thread only)
        return _run_inline(tasks, opts, timeout_s, progress)

    from . import mv  # noqa: F401  (import before forking so workers start warm)

    grace = grace_s if grace_s is not None else max(0.25, 0.5 * timeout_s)
    wall = wall_limit_s if wall_limit_s is not None else 20 * timeout_s + 10
    return _Pass(tasks, opts, timeout_s, grace, wall, max(1, min(num_proc, n)), progress).run()


def _new_stats() -> dict[str, int]:
    return {"workers": 0, "killed": 0, "soft_timeouts": 0}


def _run_inline(tasks: Sequence[Task], opts: Options, timeout_s: float, progress: Any
                ) -> tuple[list[Result], dict[str, int]]:
    """Every task judged in this process, in order."""
    judge = Judge(opts, timeout_s)
    results: list[Result] = []
    for t in tasks:
        results.append(judge.one(t))
        if progress is not None:
            progress.advance(1)
    return results, _new_stats()


class _Pass:
    """One pass of worker processes over the tasks: chunks handed out, results stored in task
    order, a worker that died or passed the wall-clock backstop killed and replaced (the item it
    was on gets ``timeout``, the rest of its chunk is re-queued)."""

    def __init__(self, tasks: Sequence[Task], opts: Options, timeout_s: float, grace: float, wall: float,
                 num_proc: int, progress: Any):
        n = len(tasks)
        self.opts, self.timeout_s, self.grace, self.wall = opts, timeout_s, grace, wall
        self.num_proc, self.progress = num_proc, progress
        self.results: list[Optional[Result]] = [None] * n
        self.stats = _new_stats()
        self.pos = {t[0]: i for i, t in enumerate(tasks)}
        size = max(1, min(64, n // (num_proc * 8) or 1))
        self.queue: deque[tuple[int, list[Task]]] = deque()
        for c, start in enumerate(range(0, n, size)):
            self.queue.append((c, list(tasks[start : start + size])))
        self.ctx = _context()
        self.workers: list[_W] = []

    def run(self) -> tuple[list[Result], dict[str, int]]:
        try:
            for _ in range(self.num_proc):
                self.workers.append(self._spawn())
            while self._step():
                pass
        finally:
            self._shutdown()
        return [r if r is not None else (None, "timeout") for r in self.results], self.stats

    def _spawn(self) -> _W:
        parent, child = self.ctx.Pipe()
        cur = self.ctx.RawArray("d", 2)
        p = self.ctx.Process(target=_worker, args=(child, self.opts, self.timeout_s, cur, self.timeout_s + self.grace),
                             daemon=True)
        p.start()
        child.close()
        self.stats["workers"] += 1
        return _W(p, parent, cur)

    def _store(self, out) -> None:
        for idx, res in out:
            i = self.pos[idx]
            if self.results[i] is None:
                self.results[i] = res
                if res[1] == "timeout":
                    self.stats["soft_timeouts"] += 1
                if self.progress is not None:
                    self.progress.advance(1)

    def _fail(self, w: _W, reason_idx: Optional[int]) -> None:
        """Kill a worker; the item it was on gets ``timeout``; the rest of its chunk is re-queued."""
        self.stats["killed"] += 1
        try:
            w.proc.kill()
        except Exception:
            pass
        w.proc.join(timeout=5)
        w.conn.close()
        chunk_id, items = w.chunk
        rest = []
        for t in items:
            if t[0] == reason_idx:
                self._store([(t[0], (None, "timeout"))])
            elif self.results[self.pos[t[0]]] is None:
                rest.append(t)
        if rest:
            self.queue.appendleft((chunk_id, rest))
        self.workers[self.workers.index(w)] = self._spawn()

    def _step(self) -> bool:
        """Hand out chunks, collect finished ones, check on busy workers; False when all is done."""
        for w in self.workers:
            if w.chunk is None and self.queue:
                w.chunk = self.queue.popleft()
                w.conn.send(w.chunk)
        busy = [w for w in self.workers if w.chunk is not None]
        if not busy:
            return False
        self._collect(busy)
        self._watch()
        return True

    def _collect(self, busy: list[_W]) -> None:
        ready = wait([w.conn for w in busy], timeout=0.05)
        for w in busy:
            if w.conn in ready:
                try:
                    chunk_id, out = w.conn.recv()
                except (EOFError, OSError):  # the worker died (out of memory, a crash)
                    self._fail(w, int(w.cur[0]) if w.cur[1] > 0 else None)
                    continue
                self._store(out)
                w.chunk = None

    def _watch(self) -> None:
        now = time.monotonic()
        for w in list(self.workers):
            if w.chunk is None:
                continue
            started = w.cur[1]
            if started > 0 and now - started > self.wall:  # the wall-clock backstop only
                self._fail(w, int(w.cur[0]))
            elif not w.proc.is_alive() and not w.conn.poll():
                self._fail(w, int(w.cur[0]) if started > 0 else None)

    def _shutdown(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except Exception:
                pass
        for w in self.workers:
            w.proc.join(timeout=1)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=1)
            w.conn.close()
