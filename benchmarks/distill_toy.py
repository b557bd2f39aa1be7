"""Controlled distillation experiment on CPU (a few minutes): SFT vs offline top-k KD from one teacher.

    python benchmarks/distill_toy.py [--quick]

Task: sum four digits step by step, e.g. ``3+5+8+2?`` -> ``<think>\n3+5=8\n8+8=16\n16+2=18\n</think>\n\n18``.
1. A teacher (4-layer Llama, hidden 128, char tokenizer) is trained on ground-truth traces until it is
   good at the task (held-out greedy exact-answer accuracy is printed; it must be >= 0.8).
2. The teacher samples one trace per training prompt (temperature 1) and its top-k (k=16) T=1
   log-probabilities are stored per completion token, as the sampling stage stores them.
3. Two identical students (same smaller architecture, same init, same data order, same steps and
   optimiser) are trained through ``curate.train.run_train``: one by SFT on the traces, one by offline
   top-k KD (recipe defaults: ce_weight 0.5, tau 1) on the same traces.
4. Held-out exact-answer accuracy (greedy) of teacher and students, also at 3 intermediate checkpoints.
Last line: ``RESULT teacher_acc=<..> sft_acc=<..> kd_acc=<..> kd_minus_sft=<..>``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from curate.train import run_train, tokenizer_tag  # noqa: E402
from curate.train.tiny import make_model, make_tokenizer, save_tiny  # noqa: E402


def problem(rng: random.Random, n_terms: int = 4):
    xs = [rng.randint(1, 9) for _ in range(n_terms)]
    steps, acc = [], xs[0]
    for x in xs[1:]:
        steps.append(f"{acc}+{x}={acc + x}")
        acc += x
    return "+".join(map(str, xs)) + "?", "<think>\n" + "\n".join(steps) + f"\n</think>\n\n{acc}", str(acc)


def answer_of(text: str) -> str:
    return text.split("</think>")[-1].replace("<|im_end|>", "").strip() if "</think>" in text else ""


def prompt_ids(tok, q: str) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True)["input_ids"]


def pad_left(seqs, pad):
    L = max(map(len, seqs))
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        mask[i, L - len(s):] = 1
    return ids, mask


@torch.no_grad()
def generate(model, tok, questions, *, sample: bool, max_new: int = 48, batch: int = 256, seed: int = 0):
    model.eval()
    torch.manual_seed(seed)
    outs = []
    for s in range(0, len(questions), batch):
        ids, mask = pad_left([prompt_ids(tok, q) for q in questions[s : s + batch]], tok.pad_token_id)
        gen = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=sample, temperature=1.0 if sample else None,
            top_k=0 if sample else None, top_p=1.0 if sample else None,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        for row in gen[:, ids.shape[1]:].tolist():
            if tok.eos_token_id in row:
                row = row[: row.index(tok.eos_token_id) + 1]
            outs.append(row)
    return outs


def accuracy(model, tok, held_out) -> float:
    outs = generate(model, tok, [q for q, _, _ in held_out], sample=False)
    return sum(answer_of(tok.decode(o)) == a for o, (_, _, a) in zip(outs, held_out)) / len(held_out)


def train_teacher(model, tok, data, steps: int, lr: float, batch: int = 64, seed: int = 0):
    """Plain supervised training of the teacher on ground-truth traces (loss on the completion)."""
    rng = random.Random(seed)
    enc = []
    for q, c, _ in data:
        p = prompt_ids(tok, q)
        full = tok.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": c}], tokenize=True
        )["input_ids"]
        enc.append((full, len(p)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    for step in range(steps):
        items = rng.sample(enc, batch)
        L = max(len(f) for f, _ in items)
        ids = torch.full((batch, L), tok.pad_token_id)
        labels = torch.full((batch, L), -100)
        mask = torch.zeros((batch, L), dtype=torch.long)
        for i, (f, p) in enumerate(items):
            ids[i, : len(f)] = torch.tensor(f)
            labels[i, p : len(f)] = torch.tensor(f[p:])
            mask[i, : len(f)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 200 == 0 or step == steps - 1:
            print(f"  teacher step {step:5d} loss {loss.item():.4f}", flush=True)
    model.eval()


@torch.no_grad()
def teacher_rows(teacher, tok, questions, k: int, seed: int):
    """One sampled trace per question + the teacher's top-k T=1 log-probs at each completion token."""
    outs = generate(teacher, tok, questions, sample=True, seed=seed)
    tag = tokenizer_tag(tok, "toy-char")
    rows = []
    for s in range(0, len(questions), 128):
        seqs = [prompt_ids(tok, q) + o for q, o in zip(questions[s : s + 128], outs[s : s + 128])]
        L = max(map(len, seqs))
        ids = torch.full((len(seqs), L), tok.pad_token_id)
        for i, sq in enumerate(seqs):
            ids[i, : len(sq)] = torch.tensor(sq)
        lps = torch.log_softmax(teacher(input_ids=ids).logits.float(), -1)
        for i, q in enumerate(questions[s : s + 128]):
            o = outs[s + i]
            p = len(seqs[i]) - len(o)
            top_lp, top_ids = lps[i, p - 1 : p - 1 + len(o)].topk(k, dim=-1)
            rows.append({
                "prompt": [{"role": "user", "content": q}], "completion": tok.decode(o).replace("<|im_end|>", ""),
                "token_ids": o, "topk_ids": top_ids.tolist(), "topk_logprobs": top_lp.tolist(), "tokenizer": tag,
            })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description="SFT vs offline top-k KD on a toy arithmetic task")
    ap.add_argument("--quick", action="store_true", help="smaller run (not for reported numbers)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # tiny weights/grads late in training: denormals make CPU math crawl
    import datasets
    import yaml

    print(f"load: {os.getloadavg()[0]:.2f} (1-min avg, {os.cpu_count()} cpus)", flush=True)
    t_start = time.time()
    rng = random.Random(args.seed)
    n_train, n_test = (600, 200) if args.quick else (3000, 400)
    teacher_steps = 300 if args.quick else 600
    student_steps = 200 if args.quick else 600
    seen, train, test = set(), [], []
    while len(train) + len(test) < n_train + n_test:
        ex = problem(rng)
        if ex[0] in seen:
            continue
        seen.add(ex[0])
        (train if len(train) < n_train else test).append(ex)

    tok = make_tokenizer()
    teacher = make_model(tok, hidden=128, layers=4, heads=4, seed=args.seed + 1, init_std=0.02)
    print(f"teacher: {sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M params, {teacher_steps} steps", flush=True)
    train_teacher(teacher, tok, train, teacher_steps, lr=3e-3, seed=args.seed)
    teacher_acc = accuracy(teacher, tok, test)
    print(f"teacher held-out accuracy {teacher_acc:.3f} ({time.time() - t_start:.0f}s)", flush=True)

    rows = teacher_rows(teacher, tok, [q for q, _, _ in train], k=16, seed=args.seed)
    trace_acc = sum(answer_of(r["completion"]) == a for r, (_, _, a) in zip(rows, train)) / len(rows)
    print(f"teacher traces: {len(rows)} sampled at T=1, {trace_acc:.3f} with the right answer (all kept)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "traces.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(data))
        student_dir = save_tiny(tmp / "student0", tok, make_model(tok, hidden=64, layers=2, heads=4, seed=args.seed + 7, init_std=0.02))
        accs = {}
        for method in ("sft", "kd"):
            recipe = {
                "method": method, "student": {"model": str(student_dir)}, "dataset": {"path": str(data)},
                "output_dir": str(tmp / method), "lora": None, "max_length": 96,
                "optim": {"lr": 3e-3, "schedule": "cosine", "warmup_ratio": 0.05},
                "max_steps": student_steps, "batch_size": 32, "grad_accum": 1, "seed": args.seed,
                "logging_steps": 50, "save_steps": student_steps // 4,
            }
            path = tmp / f"{method}.yaml"
            path.write_text(yaml.safe_dump(recipe))
            t0 = time.time()
            out = run_train(path)
            from transformers import AutoModelForCausalLM

            seconds = time.time() - t0
            curve = []  # held-out accuracy at the intermediate checkpoints: is either student ahead earlier?
            for ckpt in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
                if int(ckpt.name.split("-")[1]) < student_steps:
                    curve.append(f"{ckpt.name.split('-')[1]}:{accuracy(AutoModelForCausalLM.from_pretrained(str(ckpt)), tok, test):.3f}")
            accs[method] = accuracy(AutoModelForCausalLM.from_pretrained(str(out)), tok, test)
            summary = json.loads((out / "train_summary.json").read_text())
            curve.append(f"{summary['global_steps']}:{accs[method]:.3f}")
            print(f"student {method}: {summary['global_steps']} steps in {seconds:.0f}s; held-out accuracy by step {' '.join(curve)}", flush=True)
    print(f"total {time.time() - t_start:.0f}s; load now {os.getloadavg()[0]:.2f}")
    print(
        f"RESULT teacher_acc={teacher_acc:.3f} sft_acc={accs['sft']:.3f} kd_acc={accs['kd']:.3f} "
        f"kd_minus_sft={accs['kd'] - accs['sft']:+.3f}"
    )


if __name__ == "__main__":
    main()
