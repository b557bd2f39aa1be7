"""Peak memory and time: chunked top-k KD loss vs a dense full-vocabulary KL (forward + backward).

    python benchmarks/kd_loss.py            # V=151,936, T=4,096, H=1,024 on CPU (~2-4 min, ~15 GiB peak)

Each method runs in its own subprocess; its peak memory is the growth of the process's peak RSS
(``resource.getrusage``: tracemalloc does not see torch) from just after its inputs exist to the end of
forward + backward. The inputs both methods share (hidden states [T, H], lm_head [V, H]) are not
counted; the dense teacher log-probabilities [T, V] that only the dense loss needs are created before
the baseline and not counted either (in favour of the dense side). Gradients w.r.t. the lm_head [V, H]
are produced by both and counted by both.
``max_abs_err`` compares the chunked loss with k = V against the dense loss at T=512 (k = V top-k
ids at T=4,096 alone would take 5 GB) in float32.
Last line: ``RESULT mem_ratio=<worst top-k / dense> max_abs_err=<..>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from curate.train.kd_loss import chunked_topk_kd_loss, dense_kd_loss

    # warm up autograd/kernels on a tiny input so one-time allocations stay out of the measurement
    w0 = torch.randn(50, 8, requires_grad=True)
    chunked_topk_kd_loss(torch.randn(4, 8), w0, torch.arange(4), torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3) - 2).backward()
    dense_kd_loss(torch.randn(4, 8) @ w0.T, torch.randn(4, 50), torch.arange(4)).backward()

    g = torch.Generator().manual_seed(0)
    T, V, H = args.T, args.V, args.H
    hidden = (torch.randn(T, H, generator=g) / H**0.5).requires_grad_()
    weight = torch.randn(V, H, generator=g).requires_grad_()
    labels = torch.randint(0, V, (T,), generator=g)
    out: dict = {"method": args.worker, "T": T, "V": V, "H": H}
    if args.worker == "dense":
        teacher = torch.randn(T, V, generator=g)
        for s in range(0, T, 256):  # row-chunked in place: no [T, V] temporary before the baseline
            teacher[s : s + 256] -= teacher[s : s + 256].logsumexp(-1, keepdim=True)
        base = _peak_mb()
        t0 = time.perf_counter()
        loss = dense_kd_loss(hidden @ weight.T, teacher, labels)
        loss.backward()
    elif args.worker.startswith("topk"):
        k = int(args.worker[4:])
        ids = torch.randint(0, V, (T, k), generator=g)
        lps = torch.log_softmax(torch.randn(T, k + 1, generator=g), -1)[:, :k].contiguous()
        base = _peak_mb()
        t0 = time.perf_counter()
        loss = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=args.chunk)
        loss.backward()
    elif args.worker == "exact":
        teacher_logits = torch.randn(T, V, generator=g)
        lps, ids = torch.log_softmax(teacher_logits, -1).topk(V, dim=-1)
        base = _peak_mb()
        t0 = time.perf_counter()
        dense = dense_kd_loss(hidden @ weight.T, teacher_logits, labels)
        ours = chunked_topk_kd_loss(hidden, weight, labels, ids, lps, chunk_size=args.chunk)
        gd = torch.autograd.grad(dense, (hidden,))[0]
        go = torch.autograd.grad(ours, (hidden,))[0]
        out["loss_abs_err"] = abs(ours.item() - dense.item())
        out["grad_abs_err"] = (gd - go).abs().max().item()
        loss = ours
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_delta_mb"] = _peak_mb() - base
    out["loss"] = float(loss.item())
    return out


def run_worker(name: str, args, **over) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads), "--chunk", str(args.chunk)]
    for key in ("T", "V", "H"):
        cmd += [f"--{key}", str(over.get(key, getattr(args, key)))]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"worker {name} failed (rc={res.returncode}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--V", type=int, default=151936)
    ap.add_argument("--H", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact-T", type=int, default=512)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    print(f"load: {os.getloadavg()[0]:.2f} (1-min avg, {os.cpu_count()} cpus); T={args.T} V={args.V} H={args.H} chunk={args.chunk}")
    rows = [run_worker(name, args) for name in ("dense", "topk20", "topk128")]
    dense = rows[0]
    print(f"{'method':<10}{'peak MB':>12}{'seconds':>10}{'mem ratio':>11}{'time ratio':>12}")
    for r in rows:
        print(
            f"{r['method']:<10}{r['peak_delta_mb']:>12.0f}{r['seconds']:>10.2f}"
            f"{r['peak_delta_mb'] / dense['peak_delta_mb']:>11.3f}{r['seconds'] / dense['seconds']:>12.2f}"
        )
    exact = run_worker("exact", args, T=args.exact_T)
    print(f"k=V exactness at T={exact['T']}: |loss diff|={exact['loss_abs_err']:.2e} max|grad diff|={exact['grad_abs_err']:.2e}")
    mem_ratio = max(r["peak_delta_mb"] for r in rows[1:]) / dense["peak_delta_mb"]
    print(f"RESULT mem_ratio={mem_ratio:.4f} max_abs_err={exact['loss_abs_err']:.2e}")


if __name__ == "__main__":
    main()
