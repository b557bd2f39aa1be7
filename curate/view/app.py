"""The ``curate view`` web app: Starlette, server-rendered Jinja2 templates (autoescaped), one small
vendored script, inline SVG charts. No route takes a file path: rows are addressed by
``(split, shard number, row number)``, static files come from this package only."""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import charts
from .data import FACETS, FILTER_COLUMNS, SORTABLE, TABLE_COLUMNS, Query, Store

HERE = Path(__file__).parent
REASONING_PAGE_CHARS = 20_000
PER_CHOICES = (25, 50, 100, 200)
MAX_PARAM = 500
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


class SecurityHeaders:
    """CSP (no inline script, no third-party anything), nosniff, no framing, no referrer."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, wrapped)


def _bad(msg: str) -> HTTPException:
    return HTTPException(400, msg)


def parse_query(store: Store, params: Any) -> Query:
    """Validate the table's query parameters (unknown values are errors, never SQL)."""
    split = params.get("split") or ("train" if "train" in store.splits else next(iter(store.splits)))
    if split not in store.splits:
        raise HTTPException(404, f"no split {split!r}")
    qy = Query(split=split)
    for key in FILTER_COLUMNS:
        vals = [v for v in params.getlist(key) if v != ""]
        if any(len(v) > MAX_PARAM for v in vals) or len(vals) > 50:
            raise _bad(f"{key}: too long")
        if vals:
            qy.filters[key] = vals
    for key in ("flag", "q"):
        v = params.get(key) or None
        if v is not None and len(v) > MAX_PARAM:
            raise _bad(f"{key}: too long")
        setattr(qy, key, v)
    for key in ("len_min", "len_max", "page"):
        v = params.get(key)
        if v not in (None, ""):
            if not re.fullmatch(r"\d{1,9}", v):
                raise _bad(f"{key}: expected a whole number")
            setattr(qy, key, int(v))
    qy.page = qy.page or 0
    per = params.get("per")
    if per not in (None, ""):
        if not per.isdigit() or int(per) not in PER_CHOICES:
            raise _bad(f"per: one of {PER_CHOICES}")
        qy.per = int(per)
    sort = params.get("sort") or None
    if sort is not None and sort not in SORTABLE:
        raise _bad(f"sort: one of {', '.join(SORTABLE)}")
    qy.sort = sort
    qy.desc = params.get("desc") in ("1", "true")
    c = params.get("correct")
    if c not in (None, ""):
        if c not in ("0", "1"):
            raise _bad("correct: 0 or 1")
        qy.correct = c == "1"
    return qy


def url(path: str, params: dict[str, Any]) -> str:
    return path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")


def highlight(answer: str | None, pred: str | None) -> dict[str, Any]:
    """Split the answer text around the extracted prediction: its last verbatim occurrence, else the
    content of the last ``\\boxed{}``. ``how`` says which (or that it was not found)."""
    text = answer or ""
    p = (pred or "").strip()
    if p:
        i = text.rfind(p)
        if i >= 0:
            return {"before": text[:i], "match": text[i:i + len(p)], "after": text[i + len(p):], "how": "verbatim"}
    j = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if j >= 0:
        start = text.index("{", j) + 1
        depth, k = 1, start
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        if depth == 0:
            return {"before": text[:start], "match": text[start:k - 1], "after": text[k - 1:],
                    "how": "boxed" if not p else "boxed (prediction not verbatim in the answer)"}
    return {"before": text, "match": "", "after": "", "how": "not found" if p else "no prediction"}


def _trim(obj: Any, depth: int = 0) -> Any:
    """A logged payload for display: long lists (token ids, logprobs) shortened."""
    if isinstance(obj, dict):
        return {k: _trim(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        if len(obj) > 20 and depth > 1:
            return [_trim(v, depth + 1) for v in obj[:8]] + [f"... {len(obj) - 8} more"]
        return [_trim(v, depth + 1) for v in obj]
    return obj


class _Pages:
    """The pages of one store: the table, its side panel, one trace, the health check and errors."""

    def __init__(self, store: Store):
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
        env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, ensure_ascii=False, default=str)
        self.store = store
        self.templates = Jinja2Templates(env=env)
        self.cfg: list[Any] = []  # the version's AuditConfig, made on the first trace page (imports polars)
        self.title = (" ".join(str(store.manifest.get(k)) for k in ("name", "version") if store.manifest.get(k))
                      or store.path.name)

    def render(self, request: Request, name: str, ctx: dict[str, Any], status: int = 200,
               background: Any = None) -> Response:
        return self.templates.TemplateResponse(request, name, {"title": self.title, "store": self.store, **ctx},
                                               status_code=status, background=background)

    def index(self, request: Request) -> Response:  # sync: Starlette runs it on its thread pool (DuckDB blocks)
        store = self.store
        qy = parse_query(store, request.query_params)
        res = store.page(qy)
        sp = store.split(qy.split)
        cols = [c for c in TABLE_COLUMNS if sp.has(c)]

        def link(**change: Any) -> str:
            return url("/", qy.params(**{"page": None, **change}))

        pages = None if res["total"] is None else max(1, -(-res["total"] // qy.per))
        return self.render(request, "index.html", {
            "qy": qy, "res": res, "cols": cols, "sortable": SORTABLE, "link": link, "pages": pages,
            "panel_url": url("/fragment/panel", qy.params(page=None)),
            "split_links": [(s, url("/", {"split": s}), store.splits[s].rows) for s in store.splits],
            "index_state": _state(store),
        }, background=BackgroundTask(store.start_index))  # once the first page is sent, the index may start

    def panel(self, request: Request) -> Response:
        store = self.store
        qy = parse_query(store, request.query_params)

        def link(**change: Any) -> str:
            return url("/", qy.params(**{"page": None, **change}))

        def fresh(**change: Any) -> str:
            return url("/", {k: v for k, v in change.items() if v is not None})

        facets = {k: store.facet(qy.split, k) for k in FACETS}
        flags = store.facet(qy.split, "flag")
        hist = store.length_hist()
        chart = {
            "funnel": charts.funnel_chart(store.manifest, fresh),
            "flags": charts.flag_chart([(str(k), int(n)) for k, n in flags], link),
            "length": charts.length_chart(hist, link),
            "pass": charts.pass_chart(store.pass_by_bucket(qy.split), link),
        }
        return self.render(request, "panel.html", {"qy": qy, "facets": facets, "flags": flags, "chart": chart,
                                                    "labels": FACET_LABELS, "hist_pending": hist is None and
                                                    any(sp.has("reasoning_chars") for sp in store.splits.values())})

    def trace(self, request: Request) -> Response:
        store = self.store
        split = request.path_params["split"]
        if split not in store.splits:
            raise HTTPException(404, "no such split")
        fileno, rowno = request.path_params["file"], request.path_params["row"]
        row = store.row(split, fileno, rowno)
        if row is None:
            raise HTTPException(404, "no such row")
        reasoning = row.get("reasoning") or ""
        n_pages = max(1, -(-len(reasoning) // REASONING_PAGE_CHARS))
        rp = request.query_params.get("rpage", "0")
        if not rp.isdigit() or int(rp) >= n_pages:
            raise _bad("rpage: out of range")
        rpage = int(rp)
        chunk = reasoning[rpage * REASONING_PAGE_CHARS:(rpage + 1) * REASONING_PAGE_CHARS]
        pid = row.get("problem_id")
        samples = store.count_by_split("problem_id", pid) if pid is not None else {}
        dup_rows = self._near_duplicates(row)
        raw = store.raw_response(row.get("request_hash"))
        raw_sample = None
        if raw is not None:
            samples_ = raw[1].get("samples") or []
            si = row.get("sample_index") or 0
            raw_sample = samples_[si] if si < len(samples_) else (samples_[0] if len(samples_) == 1 else None)
        from .measures import (  # polars + the audit code: loaded on first use
            audit_config,
            flag_measures,
        )

        if not self.cfg:
            self.cfg.append(audit_config(store.manifest))
        measures = flag_measures(row, self.cfg[0], store.length_ref())
        return self.render(request, "trace.html", {
            "row": row, "split": split, "chunk": chunk, "rpage": rpage, "n_pages": n_pages,
            "reasoning_len": len(reasoning), "hl": highlight(row.get("answer_text"), row.get("pred_answer")),
            "samples": samples, "dups": dup_rows, "measures": measures,
            "raw": None if raw is None else {"log": str(raw[0]), "payload": _trim(raw[1]), "sample": _trim(raw_sample)},
            "work_dir": store.work_dir, "url": url, "self_url": request.url.path,
        })

    def _near_duplicates(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The problems of ``row``'s dedup cluster (at most 8, with their texts); [] when it has none."""
        store = self.store
        pid, cluster = row.get("problem_id"), row.get("cluster_id")
        dup_rows: list[dict[str, Any]] = []
        if cluster is not None or row.get("duplicate_of") is not None:
            seen: set[Any] = set()
            for col, val in (("cluster_id", cluster), ("problem_id", row.get("duplicate_of")),
                             ("cluster_id", row.get("duplicate_of"))):
                for d in store.find(col, val, limit=40, cols=("problem_id", "drop_reason", "duplicate_of", "cluster_id")):
                    if d.get("problem_id") in seen:
                        continue
                    seen.add(d.get("problem_id"))
                    dup_rows.append(d)
            if len(dup_rows) < 2:  # one problem only (its own samples): no near-duplicates to show
                dup_rows = []
            dup_rows = dup_rows[:8]
            for d in dup_rows:  # the problem texts, read from the shards only now
                same = d.get("problem_id") == pid and pid is not None
                d["problem"] = row.get("problem") if same else store.problem_text(d["_split"], d["_file"], d["_row"])
        return dup_rows

    def health(self, request: Request) -> Response:
        return JSONResponse(_state(self.store))

    async def not_found(self, request: Request, exc: HTTPException) -> Response:
        return self.render(request, "error.html", {"status": exc.status_code, "detail": exc.detail},
                           status=exc.status_code)


def create_app(store: Store, *, loopback: bool = True) -> Starlette:
    pages = _Pages(store)
    routes = [
        Route("/", pages.index),
        Route("/fragment/panel", pages.panel),
        Route("/trace/{split:str}/{file:int}/{row:int}", pages.trace),
        Route("/healthz", pages.health),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if loopback:  # DNS-rebinding guard: a page elsewhere cannot reach this server under another name
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: pages.not_found})


FACET_LABELS = {"verdict": "verdict", "drop_reason": "drop reason", "dropped_by": "dropped by", "bucket": "difficulty",
                "stage": "curriculum stage", "source": "source", "teacher": "teacher", "finish": "finish reason"}


def _state(store: Store) -> dict[str, Any]:
    return {s: {"rows": sp.rows, "index": "ready" if sp.index_ready.is_set() and not sp.index_error else
                (sp.index_error or "building"),
                "search": "ready" if sp.search_db is not None else
                (sp.search_error if sp.search_ready.is_set() else f"building {sp.search_progress:.0%}")}
            for s, sp in store.splits.items()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(path: Path, *, host: str = "127.0.0.1", port: int = 8765, work_dir: Path | None = None,
          index_dir: Path | None = None, search_index: bool = True, log_level: str = "warning") -> None:
    """Serve ``path`` until interrupted (``curate view``)."""
    from ..errors import require

    uvicorn = require("uvicorn", "view", "curate view")
    store = Store(path, work_dir=work_dir, index_dir=index_dir, search_index=search_index, index_delay=2.0)
    loop = is_loopback(host)
    app = create_app(store, loopback=loop)
    if not loop:
        print(f"warning: serving on {host}, reachable from other machines; the data is served without authentication")
    print(f"curate view: http://{'[' + host + ']' if ':' in host else host}:{port}/  ({', '.join(f'{s}: {sp.rows:,} rows' for s, sp in store.splits.items())}; Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    except SystemExit as e:  # uvicorn exits when it cannot bind
        if e.code:
            from ..errors import CurateError

            raise CurateError(f"--port {port}: cannot serve on {host}:{port} (address in use or not available)") from None
        raise
    finally:
        store.close()


class Server:
    """``create_app(store)`` served by uvicorn on a background thread (tests, benchmarks):
    ``with Server(store) as base_url: ...``; port 0 picks a free port."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.store = store
        self.config = uvicorn.Config(create_app(store, loopback=is_loopback(host)), host=host, port=port,
                                     log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.server.run, name="curate-view-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("curate view: the server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


__all__ = ["Server", "create_app", "highlight", "parse_query", "serve"]
