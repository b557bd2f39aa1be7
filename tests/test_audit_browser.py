"""The audit report in a real browser: headless Chromium (Debian's ``chromium`` package) driven over
the DevTools protocol on a pipe (stdlib only). Skips when Chromium is absent.

Checks: the page loads with no console errors/exceptions/log errors, its charts are SVG elements
with a visible size, and a ``<script>`` (and an ``onerror`` handler) planted in a trace did not run
and shows as text.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.audit import AuditConfig, write_report

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")

PAYLOAD = ("<script>document.title='PWNED';window.__pwned=1;console.error('pwned')</script>"
           "</pre></details><img src=x onerror=\"window.__pwned=2;console.error('img')\">")


class CDP:
    """A minimal DevTools-protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str, user_dir: Path, stderr: Any = subprocess.DEVNULL):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        # bash (dash takes one-digit fds only) moves the pipe ends to fds 3 and 4 after subprocess has closed the other fds
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", f"--user-data-dir={user_dir}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}', *args],
            pass_fds=(to_child_r, from_child_w), stdout=subprocess.DEVNULL, stderr=stderr,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - best effort, then kill our own child
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 20) -> dict:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method}")
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            if ev is None:
                raise TimeoutError(f"no {method} event")
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (ev := self._read(deadline)) is not None:
            self.events.append(ev)


def _frame() -> pl.DataFrame:
    body = " ".join(f"Step {i}: we compute {i} * {i + 1} = {i * (i + 1)}." for i in range(60))
    loop = "wait so the value is 7 and then we add 2 again " * 30
    rows = []
    for i in range(40):
        reasoning, answer = body + f" So the answer is \\boxed{{{i}}}.", f"\\boxed{{{i}}}"
        if i == 3:  # the planted payload sits in a flagged row, so it is among the shown examples
            reasoning = PAYLOAD + body + loop
        rows.append({"problem_id": f"p{i % 10}", "problem": f"What is {i}? {PAYLOAD if i == 3 else ''}",
                     "source": "<b>src</b>" if i % 2 else "plain", "reasoning": reasoning, "answer_text": answer,
                     "finish_reason": "stop", "correct": i % 3 != 0, "difficulty_bucket": ["easy", "hard"][i % 2]})
    return pl.DataFrame(rows)


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    manifest = {"name": "browser<script>", "version": "v1",
                "funnel": [{"stage": "source", "rows_in": 50, "rows_out": 50, "dropped": {}, "seconds": 0.1},
                           {"stage": "verify", "rows_in": 50, "rows_out": 40, "dropped": {"no_answer": 10},
                            "seconds": 1.0}],
                "stages": [{"stage": "decontaminate", "stats": {"contamination": {
                    "math500": {"checked": 40, "contaminated": 1, "examples": [PAYLOAD]}}}}]}
    summary = write_report(tmp_path, _frame(), None, manifest, AuditConfig(examples_per_flag=3))
    assert summary["flag_counts"]["repetition_loop"] >= 1
    html_path = tmp_path / "audit" / "report.html"
    html = html_path.read_text()
    assert "&lt;script&gt;document.title" in html  # the payload is in the page, escaped

    cdp = CDP(CHROMIUM, tmp_path / "chromium-profile")
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Page.navigate", {"url": html_path.as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired")
        cdp.drain(0.5)
        probe = cdp.send("Runtime.evaluate", {"returnByValue": True, "expression": """JSON.stringify({
            title: document.title,
            pwned: window.__pwned || 0,
            scripts: document.scripts.length,
            imgs: document.images.length,
            svgs: [...document.querySelectorAll('.chart > svg')].map(s => {
                const r = s.getBoundingClientRect(); return [r.width, r.height, s.querySelectorAll('path, rect, use').length]; }),
            traceText: [...document.querySelectorAll('pre.trace')].map(p => p.textContent).join('\\n'),
            h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
        })"""}, session=session)
    finally:
        cdp.close()
    page = json.loads(probe["result"]["value"])

    errors = [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert", "warning"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))]
    assert errors == [], errors
    assert page["title"] == "Audit: browser<script> v1"  # unchanged by the payload
    assert page["pwned"] == 0 and page["scripts"] == 0 and page["imgs"] == 0
    assert "<script>document.title='PWNED'" in page["traceText"]  # shown as text
    # funnel, flags, length and difficulty charts, each an inline SVG with a visible size and drawing
    assert len(page["svgs"]) == 4, page["svgs"]
    assert all(w > 100 and h > 50 and n > 3 for w, h, n in page["svgs"]), page["svgs"]
    assert {"Funnel", "Contamination", "Flags", "Reasoning length"} <= set(page["h2"])
