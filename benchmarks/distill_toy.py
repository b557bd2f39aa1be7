"""A controlled distillation experiment on CPU (a few minutes on 2 cores): SFT vs offline top-k KD, and
curriculum vs random order, over several seeds, with 95% intervals on the paired differences.

    python benchmarks/distill_toy.py [--seeds 5] [--quick]

Task (the teacher's distribution carries information): ``a*b+c`` for digits a-c, answer the last digit,
with a short worked trace ``<think>\\na*b=X\\nX+c=Z\\n</think>\\n\\n(Z mod 10)``.
1. A teacher (3-layer Llama, hidden 64, char tokenizer) is trained on ground-truth traces of a pool of
   problems for a fixed budget (set before any student ran): good but not perfect, so its temperature-1
   samples are noisy and its distribution holds more than the sampled tokens.
2. Limited traces: the teacher samples ONE trace per problem for 250 problems it did not train on (T=1, wrong
   answers kept, as a curation run without the verify filter would); the sampling stage's format is stored:
   the token ids and the teacher's top-k (k=8) T=1 log-probs per completion token.
3. Students are smaller (2 layers, hidden 48). Both arms use curate's own pieces: ``encode_kd`` and
   ``KDCollator`` build the batches, ``kd_loss_through_model`` (the chunked top-k loss of ``method: kd``)
   computes the loss; SFT is the same code with ``ce_weight=1`` (pure cross-entropy on the sampled tokens),
   KD uses the recipe default ``ce_weight=0.5`` (``--ce-weight``), tau 1. Same init, same data order, same
   steps per seed. A minimal training loop (AdamW, linear decay) stands in for the Trainer to fit the time.
4. Equal effective learning signal: each arm's learning rate is chosen from a grid by its mean accuracy on a
   validation split over all seeds; the test split (problems neither the teacher nor the students trained
   on) is reported at the chosen rates. Accuracy = greedy decoding, exact final answer.
5. Curriculum vs random at equal steps: the SFT student at its chosen rate, rows read in curriculum order
   (easy first by the teacher's probability of the right answer, the difficulty stage's pass-rate proxy;
   every epoch in that order, as ``curate train`` reads a curriculum) against the random order of step 4.
Differences are paired per seed; intervals are mean +- t(0.975, n-1) * sd / sqrt(n).
Last line: ``RESULT teacher_acc=.. sft_acc=.. kd_acc=.. kd_minus_sft=.. kd_minus_sft_lo=.. kd_minus_sft_hi=..
curriculum_minus_random=.. seeds=..``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test support: tests/support/

import torch  # noqa: E402

from curate.train.data import KDCollator, encode_kd  # noqa: E402
from curate.train.kd import kd_loss_through_model  # noqa: E402
from support.tiny import make_model, make_tokenizer  # noqa: E402

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 29: 2.045}


def t975(df: int) -> float:
    return T975.get(df) or T975[max(k for k in T975 if k <= df)] if df >= 1 else float("nan")


# a compact chat template (short sequences keep the experiment in CPU minutes): "3*4+5?\n" then the turn
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}\n"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}{% endfor %}"
)


def problem(a: int, b: int, c: int) -> tuple[str, str, str]:
    x = a * b
    z = x + c
    return f"{a}*{b}+{c}?", f"<think>\n{a}*{b}={x}\n{x}+{c}={z}\n</think>\n\n{z % 10}", str(z % 10)


def answer_of(text: str) -> str:
    return text.split("</think>")[-1].replace("<|im_end|>", "").strip() if "</think>" in text else ""


def prompt_ids(tok, q: str) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True)["input_ids"]


CACHE_ARG = None


@torch.no_grad()
def decode(model, tok, questions, *, sample: bool, max_new: int = 24, seed: int = 0, k: int = 0, batch: int = 500):
    """Greedy or T=1 sampled completions (all prompts have one length: no padding). With ``k``, also the
    model's top-k T=1 log-probs at each generated position (what the sampling stage stores)."""
    global CACHE_ARG
    if CACHE_ARG is None:  # transformers >= 5.2x renames past_key_values to cache
        import inspect

        CACHE_ARG = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    model.eval()
    g = torch.Generator().manual_seed(seed)
    outs, tops = [], []
    for s in range(0, len(questions), batch):
        ids = torch.tensor([prompt_ids(tok, q) for q in questions[s : s + batch]])
        n0 = ids.shape[1]
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        step_tops = []
        out = model(input_ids=ids, use_cache=True)
        for _ in range(max_new):
            lp = torch.log_softmax(out.logits[:, -1].float(), -1)
            if k:
                step_tops.append(lp.topk(k, dim=-1))
            nxt = torch.multinomial(lp.exp(), 1, generator=g)[:, 0] if sample else lp.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
            cache = getattr(out, "cache", None) or out.past_key_values
            out = model(input_ids=nxt[:, None], use_cache=True, **{CACHE_ARG: cache})
        for i, row in enumerate(ids[:, n0:].tolist()):
            row = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
            outs.append(row)
            if k:
                tops.append(([st[1][i].tolist() for st in step_tops[: len(row)]],
                             [st[0][i].tolist() for st in step_tops[: len(row)]]))
    return (outs, tops) if k else outs


def accuracy(model, tok, items) -> float:
    outs = decode(model, tok, [q for q, _, _ in items], sample=False)
    return sum(answer_of(tok.decode(o)) == a for o, (_, _, a) in zip(outs, items)) / len(items)


def batches(encoded: list[dict], order: list[int], batch: int):
    for s in range(0, len(order) - batch + 1, batch):
        yield [encoded[i] for i in order[s : s + batch]]


def train(model, encoded, *, steps: int, lr: float, batch: int, ce_weight: float, order_fn, pad_id: int):
    """AdamW with linear decay; every batch through curate's KD collator and loss."""
    collate = KDCollator(pad_id)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    model.train()
    step, epoch = 0, 0
    while step < steps:
        for rows in batches(encoded, order_fn(epoch), batch):
            inputs = collate(rows)
            n = int(inputs["labels"][:, 1:].ne(-100).sum())
            loss, _, _ = kd_loss_through_model(model, inputs, temperature=1.0, ce_weight=ce_weight,
                                               chunk_size=4096, num_items=n)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step >= steps:
                break
        epoch += 1
    model.eval()
    return model


def train_teacher(model, tok, items, steps: int, lr: float, batch: int = 64, seed: int = 0):
    rng = random.Random(seed)
    enc = []
    for q, c, _ in items:
        p = prompt_ids(tok, q)
        full = p + tok(c + tok.eos_token, add_special_tokens=False)["input_ids"]  # what encode_chat renders here
        enc.append((full, len(p)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    for step in range(steps):
        chunk = rng.sample(enc, batch)
        L = max(len(f) for f, _ in chunk)
        ids = torch.full((batch, L), tok.pad_token_id)
        labels = torch.full((batch, L), -100)
        for i, (f, p) in enumerate(chunk):
            ids[i, : len(f)] = torch.tensor(f)
            labels[i, p : len(f)] = torch.tensor(f[p:])
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 500 == 0 or step == steps - 1:
            print(f"  teacher step {step:5d} loss {loss.item():.4f}", flush=True)
    model.eval()


def interval(xs: list[float]) -> tuple[float, float, float]:
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan"), float("nan")
    h = t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, m - h, m + h


def main() -> None:
    ap = argparse.ArgumentParser(description="SFT vs offline top-k KD, curriculum vs random, over seeds")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller run (not for reported numbers)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more threads spin-wait on a loaded box)")
    ap.add_argument("--ce-weight", type=float, default=0.5, help="KD arm's ce_weight (recipe default 0.5)")
    ap.add_argument("--traces", type=int, default=250, help="teacher traces the students get (limited)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min avg, {os.cpu_count()} cpus)", flush=True)
    t_start = time.time()

    allp = [problem(a, b, c) for a in range(10) for b in range(10) for c in range(10)]
    random.Random(1234).shuffle(allp)
    n_val, n_test, n_teacher = 100, 250, 400
    val, test = allp[:n_val], allp[n_val : n_val + n_test]
    teacher_pool = allp[n_val + n_test : n_val + n_test + n_teacher]  # the teacher's ground-truth training problems
    # limited traces, on problems the teacher did not train on (it generalises, with some uncertainty)
    student_problems = allp[n_val + n_test + n_teacher :][: args.traces]
    teacher_steps = 400 if args.quick else 1000
    student_steps = 100 if args.quick else 300
    lr_grid = [1.5e-3, 3e-3, 6e-3]
    batch = 32

    tok = make_tokenizer(chat_template=TEMPLATE)
    teacher = make_model(tok, hidden=64, layers=3, heads=4, seed=1, init_std=0.02, max_positions=48)
    print(f"teacher: {sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M params, {teacher_steps} steps "
          f"on {len(teacher_pool)} problems", flush=True)
    train_teacher(teacher, tok, teacher_pool, teacher_steps, lr=3e-3)
    teacher_acc = accuracy(teacher, tok, test)
    print(f"teacher test accuracy {teacher_acc:.3f} ({time.time() - t_start:.0f}s)", flush=True)

    # teacher's probability of the right answer per student problem: the curriculum's difficulty proxy
    with torch.no_grad():
        p_right = []
        for q, c, a in student_problems:
            full = torch.tensor([prompt_ids(tok, q) + tok(c, add_special_tokens=False)["input_ids"]])
            lp = torch.log_softmax(teacher(input_ids=full).logits[0, :-1].float(), -1)
            n_c = len(tok(c, add_special_tokens=False)["input_ids"])
            tgt = full[0, 1:]
            p_right.append(float(lp[-n_c:].gather(1, tgt[-n_c:, None]).sum().exp()))
    easy_first = sorted(range(len(student_problems)), key=lambda i: -p_right[i])

    results: dict[str, dict[float, list[tuple[float, float]]]] = {"sft": {}, "kd": {}}
    curriculum_acc: list[float] = []
    trace_right = []
    for seed in range(args.seeds):
        outs, tops = decode(teacher, tok, [q for q, _, _ in student_problems], sample=True, seed=100 + seed, k=8)
        trace_right.append(statistics.fmean(answer_of(tok.decode(o)) == a for o, (_, _, a) in zip(outs, student_problems)))
        encoded = [
            encode_kd({"prompt": [{"role": "user", "content": q}], "token_ids": o, "topk_ids": ti, "topk_logprobs": tl},
                      tok, 96, len(tok))
            for (q, _, _), o, (ti, tl) in zip(student_problems, outs, tops)
        ]
        rng = random.Random(seed)
        orders = []
        for _ in range(student_steps // (len(encoded) // batch) + 2):
            o = list(range(len(encoded)))
            rng.shuffle(o)
            orders.append(o)
        for arm, ce_w in (("sft", 1.0), ("kd", args.ce_weight)):
            for lr in lr_grid:
                student = make_model(tok, hidden=48, layers=2, heads=4, seed=1000 + seed, init_std=0.02, max_positions=48)
                train(student, encoded, steps=student_steps, lr=lr, batch=batch, ce_weight=ce_w,
                      order_fn=lambda e: orders[e], pad_id=tok.pad_token_id)
                results[arm].setdefault(lr, []).append((accuracy(student, tok, val), accuracy(student, tok, test)))
        print(f"seed {seed}: teacher traces right {trace_right[-1]:.3f}; val/test by lr "
              + "; ".join(f"{arm} {lr:g}: {results[arm][lr][-1][0]:.3f}/{results[arm][lr][-1][1]:.3f}"
                          for arm in results for lr in lr_grid)
              + f" ({time.time() - t_start:.0f}s)", flush=True)

    best = {arm: max(lr_grid, key=lambda lr: statistics.fmean(v for v, _ in results[arm][lr])) for arm in results}
    print(f"chosen learning rates (mean validation accuracy): sft {best['sft']:g}, kd {best['kd']:g}", flush=True)
    for seed in range(args.seeds):  # curriculum vs random at equal steps: SFT at its chosen rate, same traces
        outs, tops = decode(teacher, tok, [q for q, _, _ in student_problems], sample=True, seed=100 + seed, k=8)
        encoded = [
            encode_kd({"prompt": [{"role": "user", "content": q}], "token_ids": o, "topk_ids": ti, "topk_logprobs": tl},
                      tok, 96, len(tok))
            for (q, _, _), o, (ti, tl) in zip(student_problems, outs, tops)
        ]
        student = make_model(tok, hidden=48, layers=2, heads=4, seed=1000 + seed, init_std=0.02, max_positions=48)
        train(student, encoded, steps=student_steps, lr=best["sft"], batch=batch, ce_weight=1.0,
              order_fn=lambda e: easy_first, pad_id=tok.pad_token_id)
        curriculum_acc.append(accuracy(student, tok, test))

    sft = [t for _, t in results["sft"][best["sft"]]]
    kd = [t for _, t in results["kd"][best["kd"]]]
    d, lo, hi = interval([b - a for a, b in zip(sft, kd)])
    c, c_lo, c_hi = interval([b - a for a, b in zip(sft, curriculum_acc)])
    print(f"teacher traces with the right answer: {statistics.fmean(trace_right):.3f} (mean over seeds)")
    print(f"test accuracy per seed: sft {' '.join(f'{x:.3f}' for x in sft)} | kd {' '.join(f'{x:.3f}' for x in kd)}"
          f" | sft curriculum {' '.join(f'{x:.3f}' for x in curriculum_acc)}")
    print(f"kd - sft {d:+.3f} [{lo:+.3f}, {hi:+.3f}]; curriculum - random {c:+.3f} [{c_lo:+.3f}, {c_hi:+.3f}] "
          f"(95% t intervals over {args.seeds} seeds, paired)")
    print(f"total {time.time() - t_start:.0f}s; load now {os.getloadavg()[0]:.2f}")
    print(
        f"RESULT teacher_acc={teacher_acc:.3f} sft_acc={statistics.fmean(sft):.3f} kd_acc={statistics.fmean(kd):.3f} "
        f"kd_minus_sft={d:+.3f} kd_minus_sft_lo={lo:+.3f} kd_minus_sft_hi={hi:+.3f} "
        f"curriculum_minus_random={c:+.3f} seeds={args.seeds}"
    )


if __name__ == "__main__":
    main()
