"""Sampling throughput against a loopback server with a fixed latency: ours vs the ideal vs curator.

    python benchmarks/sampling.py                     # 10,000 requests, concurrency 256, 200 ms
    python benchmarks/sampling.py --requests 2000 --no-curator

The server (``python -m curate.testing.openai_server --latency 0.2``) runs in its own process and
answers every request after exactly ``latency`` seconds, so the ideal throughput is
``concurrency / latency`` requests/s. Measured side by side in the same run, end to end (planning,
durable log, rows):

* ours: ``sample_rows`` with ``backend: openai`` (its one HTTP client, an aiohttp session);
* the official ``openai`` SDK alone (``AsyncOpenAI`` over its aiohttp transport,
  ``openai.DefaultAioHttpClient``, ``chat.completions.create`` from ``concurrency`` tasks): requests
  only, no planning, durable log or rows, so it is favoured; it shows what the SDK's per-request
  objects cost (``--no-sdk`` skips it). Ours used it until 2026-11-29 (then ``teacher.client: openai``,
  the default, at 0.66 to 0.71 of ideal next to 0.85 to 0.88 over aiohttp).
* bespokelabs-curator (``curator.LLM``, backend openai, ``max_concurrent_requests`` = concurrency)
  in its own virtual environment (its pins clash with ours: datasets 3.x), created on first use at
  ``~/.cache/curate-bench/curator-venv`` (``--no-build`` skips that). Curator fetches a tiktoken
  encoding from the network at start-up, which fails here: in this harness only,
  ``OpenAIOnlineRequestProcessor.get_token_encoding`` is replaced by a local stand-in that only
  feeds curator's token *estimate* (4 characters per token); the output says so.

* distilabel (``Pipeline``: ``LoadDataFromDicts`` -> ``TextGeneration(OpenAILLM)``, batches of
  ``concurrency``) in ``~/.cache/curate-bench/distilabel-venv`` when it installs (``--no-distilabel``
  skips it). Its time includes starting its pipeline processes, as ours includes planning and rows.

Last line: ``RESULT ideal_ratio=<ours / ideal> vs_openai_sdk=<ours / the SDK alone> vs_curator=<ours / curator> ...``.
The machine is shared: the 1-minute load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VENVS = Path(os.environ.get("CURATE_BENCH_VENVS", Path.home() / ".cache" / "curate-bench"))

CURATOR_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from bespokelabs import curator
    from bespokelabs.curator.request_processor.online import openai_online_request_processor as oorp

    class _LocalEncoding:  # harness only: tiktoken would download cl100k_base; feeds curator's estimate
        def encode(self, text, *a, **k):
            return [0] * (len(text) // 4 + 1)

    oorp.OpenAIOnlineRequestProcessor.get_token_encoding = lambda self: _LocalEncoding()

    class Q(curator.LLM):
        def prompt(self, row):
            return row["problem"]

        def parse(self, row, response):
            return {"answer": response}

    llm = Q(model_name="gpt-4o-mini", backend="openai", backend_params={
        "base_url": url, "max_concurrent_requests": conc, "max_requests_per_minute": 10**8,
        "max_tokens_per_minute": 10**11, "max_retries": 1, "request_timeout": 60, "require_all_responses": False})
    rows = [{"problem": f"curator problem {i}: what is {i}+{i}?"} for i in range(n)]
    t = time.perf_counter()
    out = llm(rows)
    dt = time.perf_counter() - t
    ds = getattr(out, "dataset", out)
    print("PEER_RESULT " + json.dumps({"seconds": dt, "rows": len(ds)}))
    """
)


DISTILABEL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with Pipeline(name="bench") as pipe:
        load = LoadDataFromDicts(data=[{"instruction": f"distilabel problem {i}: what is {i}+{i}?"} for i in range(n)],
                                 batch_size=conc)
        gen = TextGeneration(llm=OpenAILLM(model="bench", base_url=url, api_key="sk-bench-not-a-secret", max_retries=0,
                                           timeout=60), input_batch_size=conc)
        load >> gen
    t = time.perf_counter()
    ds = pipe.run(use_cache=False)
    dt = time.perf_counter() - t
    ok = sum(1 for r in ds["default"]["train"] if r.get("generation"))
    print("PEER_RESULT " + json.dumps({"seconds": dt, "rows": ok}))
    """
)


def load() -> float:
    return os.getloadavg()[0]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "curate.testing.openai_server", "--latency", str(latency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = p.stdout.readline().strip()
    if not line.startswith("READY "):
        raise SystemExit(f"server did not start: {line!r}")
    return p, line.split()[1]


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url.replace("/v1", "/_stats")) as f:
        return json.load(f)


def run_ours(url: str, n: int, conc: int) -> dict:
    import polars as pl

    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context

    probs = pl.DataFrame({"problem_id": [f"p{i}" for i in range(n)],
                          "problem": [f"our problem {i}: what is {i}+{i}?" for i in range(n)]})
    with tempfile.TemporaryDirectory() as d:
        ctx = Context.for_test(Path(d))
        cfg = SampleConfig(teacher={"backend": "openai", "model": "bench", "base_url": url, "concurrency": conc,
                                    "timeout": 60}, n=1)
        before = server_stats(url)["requests"]
        t = time.perf_counter()
        df = sample_rows(probs, cfg, ctx)
        dt = time.perf_counter() - t
        sent = server_stats(url)["requests"] - before
    ok = int((df["finish_reason"] == "stop").sum())
    return {"seconds": dt, "rows": ok, "sent": sent}


def run_openai_sdk(url: str, n: int, conc: int) -> dict | None:
    """The official SDK alone: ``chat.completions.create`` from ``conc`` tasks (requests only)."""
    import asyncio

    try:
        import openai
        import openai.resources.chat  # imports happen before the clock starts, as in the peers
    except ImportError:
        print("# openai_sdk: the openai package is not installed")
        return None

    async def go() -> tuple[float, int]:
        http = openai.DefaultAioHttpClient(timeout=60)
        client = openai.AsyncOpenAI(api_key="sk-bench-not-a-secret", base_url=url, max_retries=0, http_client=http)
        it, ok = iter(range(n)), [0]

        async def worker() -> None:
            for i in it:
                r = await client.chat.completions.create(
                    model="bench", messages=[{"role": "user", "content": f"sdk problem {i}: what is {i}+{i}?"}])
                ok[0] += r.choices[0].finish_reason == "stop"

        t = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conc)])
        dt = time.perf_counter() - t
        await client.close()
        return dt, ok[0]

    dt, ok = asyncio.run(go())
    return {"seconds": dt, "rows": ok}


def ensure_venv(name: str, spec: list[str], build: bool) -> Path | None:
    py = VENVS / f"{name}-venv" / "bin" / "python"
    if py.exists():
        return py
    if not build:
        return None
    print(f"# building {py.parent.parent} (pip install {' '.join(spec)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(py.parent.parent)], check=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", *spec], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"# {name} did not install: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        return None
    return py


def run_peer(name: str, py: Path, script_text: str, url: str, n: int, conc: int) -> dict | None:
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / f"{name}_run.py"
        script.write_text(script_text)
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench-not-a-secret", "CURATOR_CACHE_DIR": str(Path(d) / "cache"),
               "CURATOR_DISABLE_CACHE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TELEMETRY_ENABLED": "false",
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISTILABEL_CACHE_DIR": str(Path(d) / "dcache")}
        r = subprocess.run([str(py), str(script), url, str(n), str(conc)], capture_output=True, text=True, env=env,
                           timeout=1800, cwd=d)
    for line in (r.stdout + r.stderr).splitlines():
        if line.startswith("PEER_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    print(f"# {name} failed (exit {r.returncode}): {tail}")
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--no-curator", action="store_true")
    ap.add_argument("--no-distilabel", action="store_true")
    ap.add_argument("--no-sdk", action="store_true", help="skip the official openai SDK run")
    ap.add_argument("--no-build", action="store_true", help="do not create the peers' venvs when missing")
    a = ap.parse_args()
    n, conc, lat = a.requests, a.concurrency, a.latency
    ideal = conc / lat
    print(f"# {n} requests, concurrency {conc}, server latency {lat * 1000:.0f} ms -> ideal {ideal:.0f} req/s")
    print(f"# load average (1 min) at start: {load():.2f} on {os.cpu_count()} cores")
    proc, url = start_server(lat)
    res: dict[str, dict] = {}
    try:
        for name, fn in [
            ("ours", lambda: run_ours(url, n, conc)),
            ("curator", None),
            ("openai_sdk", None if a.no_sdk else lambda: run_openai_sdk(url, n, conc)),
            ("distilabel", None),
        ]:
            if name == "openai_sdk" and fn is None:
                continue
            if fn is None:
                if (name == "curator" and a.no_curator) or (name == "distilabel" and a.no_distilabel):
                    continue
                spec = ["bespokelabs-curator"] if name == "curator" else ["distilabel[openai]", "requests"]
                py = ensure_venv(name, spec, not a.no_build)
                if py is None:
                    print(f"# {name}: no venv (run without --no-build to create it)")
                    continue
                if name == "curator":
                    print("# curator: get_token_encoding replaced by a local stand-in (no network for tiktoken)")
                r = run_peer(name, py, CURATOR_SCRIPT if name == "curator" else DISTILABEL_SCRIPT, url, n, conc)
                if r is None:
                    continue
            else:
                r = fn()
                if r is None:
                    continue
            r["rps"] = r["rows"] / r["seconds"]
            r["ratio"] = r["rps"] / ideal
            r["load"] = load()
            res[name] = r
            print(f"{name:16s} {r['seconds']:7.2f} s  {r['rps']:7.0f} req/s  {r['ratio']:.3f} of ideal  "
                  f"(rows ok {r['rows']}, load {r['load']:.2f})", flush=True)
        st = server_stats(url)
        print(f"# server: {st['requests']} requests, peak in flight {st['max_in_flight']}")
    finally:
        proc.stdin.close()
        proc.wait(10)
    ours = res["ours"]
    sdk, cur, dis = res.get("openai_sdk"), res.get("curator"), res.get("distilabel")

    def vs(peer: dict | None) -> str:
        return f"{ours['rps'] / peer['rps']:.2f}" if peer else "na"

    sdk_ratio = f"{sdk['ratio']:.3f}" if sdk else "na"
    cur_ratio = f"{cur['ratio']:.3f}" if cur else "na"
    print(
        f"RESULT ideal_ratio={ours['ratio']:.3f} vs_openai_sdk={vs(sdk)} openai_sdk_ratio={sdk_ratio} "
        f"vs_curator={vs(cur)} curator_ratio={cur_ratio} vs_distilabel={vs(dis)} "
        f"requests={n} concurrency={conc} latency_ms={lat * 1000:.0f} load1={load():.2f}"
    )


if __name__ == "__main__":
    main()
