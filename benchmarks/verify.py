"""Benchmark: answer verification -- agreement with labeled pairs, then throughput on long traces.

    python benchmarks/verify.py                       # pairs from ../shared/bench + benchmarks/data, 5,000 traces
    python benchmarks/verify.py --pairs FILE --new-pairs FILE --traces 5000 --num-proc 2

Part 1 (agreement). ``--pairs`` is a JSONL of labeled (gold, pred, equivalent) rows (rows with
``label_flags`` are skipped: their label is a library's policy, not a fact). For each source it
prints the share of rows where ``curate.verify`` agrees with the label, next to plain Math-Verify
(``verify(parse(gold), parse(pred))`` with its defaults) measured in the same run. ``--new-pairs``
(default: every ``benchmarks/data/*_pairs.jsonl``) are sets built from grader test suites the checker
was not built on (``benchmarks/data/README.md`` names each repo and commit and says how each set was
used); they are reported separately, the same way.

Part 2 (throughput). ``--traces`` sample rows (8 samples per problem, ~10k characters of reasoning
with inline math, then a boxed answer: 60% the gold as written, 15% an equivalent form, 25% a wrong
answer) are judged by the ``verify`` stage (worker processes, per-item timeout) and by a plain loop of
``math_verify.parse(full text)`` + ``verify``. Both must give the same verdicts; the speedup is
plain seconds / stage seconds (pool start-up included). Golds come from MATH-500 when
``../shared/bench`` is present, otherwise from a built-in generator.

Last line: ``RESULT agreement=<ours> baseline=<plain math-verify> agreement_new=<ours on the new sets>
baseline_new=<plain math-verify on them> speedup=<plain/ours>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from math_verify import parse, verify  # noqa: E402

from curate.registry import get_stage  # noqa: E402
from curate.stages.base import Context  # noqa: E402
from curate.verify import VerifyConfig, verify_frame  # noqa: E402
from curate.verify.mv import library_parsing  # noqa: E402

logging.getLogger("math_verify").setLevel(logging.CRITICAL)
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
DEFAULT_PAIRS = BENCH / "answers" / "answer_pairs.jsonl"
NEW_PAIRS = sorted((Path(__file__).resolve().parent / "data").glob("*_pairs.jsonl"))


def _cpu() -> float:
    """CPU seconds used by this process and its (finished) child processes."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def plain_math_verify(gold: str, pred: str) -> bool:
    """Math-Verify as shipped: curate's parsing fast paths (curate.verify.mv) switched off while it runs."""
    with library_parsing():
        try:
            return bool(verify(parse(gold), parse(pred)))
        except Exception:
            return False


# ----------------------------------------------------------------------------- part 1


def agreement(pairs_paths: list[Path] | Path, num_proc: int) -> tuple[float, float, list[tuple[str, int, float, float]]]:
    paths = [pairs_paths] if isinstance(pairs_paths, Path) else pairs_paths
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("label_flags")]
    df = pl.DataFrame(
        {
            "problem_id": [str(r.get("id", i)) for i, r in enumerate(rows)],
            "gold_answer": [r["gold"] for r in rows],
            "answer_text": [r["pred"] for r in rows],
            "problem": [r.get("problem") for r in rows],
        }
    )
    ours = verify_frame(df, VerifyConfig(num_proc=num_proc), None)["correct"].to_list()
    by_src: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for r, o in zip(rows, ours):
        src = r["source"].split("@")[0]
        by_src[src].append((o == r["equivalent"], plain_math_verify(r["gold"], r["pred"]) == r["equivalent"]))
    table = []
    for src, v in sorted(by_src.items(), key=lambda kv: -len(kv[1])):
        table.append((src, len(v), sum(a for a, _ in v) / len(v), sum(b for _, b in v) / len(v)))
    n = sum(len(v) for v in by_src.values())
    ours_all = sum(a for v in by_src.values() for a, _ in v) / n
    base_all = sum(b for v in by_src.values() for _, b in v) / n
    return ours_all, base_all, table


# ----------------------------------------------------------------------------- part 2

_WORDS = ("we have the equation so that then consider where value of thus note since because each term "
          "substitute both sides gives us factor divide multiply check case first second next recall").split()


def _golds(rng: random.Random, n: int) -> list[str]:
    src = BENCH / "problems" / "math500_test.jsonl"
    if src.exists():
        golds = [json.loads(line)["answer"] for line in src.read_text().splitlines() if line.strip()]
        rng.shuffle(golds)
        return (golds * (n // len(golds) + 1))[:n]
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(2, 99)
        out.append(rng.choice([str(a), f"\\frac{{{a}}}{{{b}}}", f"{a}\\sqrt{{{b}}}", f"({a}, {b})", f"x^2 + {a}x + {b}"]))
    return out


def _equivalent(g: str, rng: random.Random) -> str:
    """A different way of writing the same answer (forms plain Math-Verify also accepts)."""
    if "\\frac" in g:
        return g.replace("\\frac", "\\dfrac")
    if g.isdigit():
        return g + ".0"
    if "," in g and g.replace(",", "").isdigit():
        return g.replace(",", "")
    if "," in g or "+" in g:
        return g.replace(",", ", ").replace("+", " + ")
    # a LaTeX group around the answer (plain Math-Verify misreads it around text/units: keep those)
    return g if ("\\text" in g or "\\mbox" in g) else f"{{{g}}}"


def _reasoning(rng: random.Random, chars: int) -> str:
    parts, n = [], 0
    while n < chars:
        s = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16)))
        k = rng.random()
        if k < 0.5:
            s += f" $x_{rng.randint(1, 9)} = {rng.randint(1, 999)}$."
        elif k < 0.8:
            s += f" so \\[ \\frac{{{rng.randint(1, 99)}}}{{{rng.randint(2, 99)}}} + {rng.randint(1, 9)}y \\]"
        else:
            s += f" which is {rng.randint(1, 9999)}."
        parts.append(s + "\n")
        n += len(s) + 1
    return "".join(parts)


def make_traces(n: int, seed: int = 0, chars: int = 10_000) -> pl.DataFrame:
    rng = random.Random(seed)
    n_problems = max(1, n // 8)
    golds = _golds(rng, n_problems)
    rows = []
    for i in range(n):
        p = i // 8 if i // 8 < n_problems else i % n_problems
        g = golds[p]
        r = rng.random()
        pred = g if r < 0.6 else (_equivalent(g, rng) if r < 0.75 else golds[(p + 1 + rng.randrange(n_problems - 1 or 1)) % n_problems])
        rows.append(
            {
                "problem_id": f"p{p}",
                "problem": "Compute the value.",
                "gold_answer": g,
                "reasoning": _reasoning(rng, chars),
                "answer_text": f"Putting it together, the answer is $\\boxed{{{pred}}}$.",
                "finish_reason": "stop",
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    ap.add_argument("--new-pairs", type=Path, nargs="*", default=NEW_PAIRS)
    ap.add_argument("--traces", type=int, default=5000)
    ap.add_argument("--chars", type=int, default=10_000)
    ap.add_argument("--num-proc", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} cores")

    def report(title: str, paths: list[Path]) -> tuple[float, float]:
        ours, base, table = agreement(paths, args.num_proc)
        print(f"\n{title}\n{'source':40s} {'rows':>5s} {'curate':>8s} {'plain-mv':>9s}")
        for src, n, a, b in table:
            flag = "" if a >= b else "   <-- worse than plain Math-Verify"
            print(f"{src:40s} {n:5d} {a:8.3f} {b:9.3f}{flag}")
        print(f"{'overall':40s} {sum(t[1] for t in table):5d} {ours:8.3f} {base:9.3f}")
        return ours, base

    if args.pairs.exists():
        ours_all, base_all = report(f"shared labeled pairs ({args.pairs.name})", [args.pairs])
    else:
        print(f"pairs file {args.pairs} not found: agreement skipped")
        ours_all = base_all = float("nan")
    new_paths = [p for p in args.new_pairs if p.exists()]
    if new_paths:
        ours_new, base_new = report("new labeled sets (benchmarks/data: other graders' suites, see its README)", new_paths)
    else:
        ours_new = base_new = float("nan")

    df = make_traces(args.traces, chars=args.chars)
    print(f"\n{df.height} traces, mean {df['reasoning'].str.len_chars().mean():.0f} chars of reasoning, "
          f"{df['problem_id'].n_unique()} problems")
    stage_cls = get_stage("verify")
    stage = stage_cls(stage_cls.Config(num_proc=args.num_proc))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.for_test(Path(tmp))
        c0 = _cpu()
        t0 = time.perf_counter()
        out = stage.run(df, ctx)
        t_ours = time.perf_counter() - t0
        cpu_ours = _cpu() - c0

    c0 = _cpu()
    t0 = time.perf_counter()
    plain = [
        plain_math_verify(f"${g}$", r + "\n\n" + a)
        for g, r, a in zip(df["gold_answer"], df["reasoning"], df["answer_text"])
    ]
    t_plain = time.perf_counter() - t0
    cpu_plain = _cpu() - c0
    ours = out["correct"].to_list()
    diff = sum(a != b for a, b in zip(ours, plain))
    print(f"stage: {t_ours:.2f}s ({df.height / t_ours:.0f} rows/s, {args.num_proc} processes), verdicts {ctx.stats['verdicts']}")
    print(f"plain math_verify loop: {t_plain:.2f}s ({df.height / t_plain:.0f} rows/s, 1 process)")
    print(f"cpu seconds (this process + workers): stage {cpu_ours:.2f}, plain {cpu_plain:.2f} "
          f"(ratio {cpu_plain / max(cpu_ours, 1e-9):.2f}; wall-clock ratios depend on the machine's load)")
    print(f"correct: stage {sum(ours)}, plain {sum(plain)}; rows where the verdicts differ: {diff}")
    if diff:
        for i in [i for i, (a, b) in enumerate(zip(ours, plain)) if a != b][:5]:
            print("  differs:", repr(df["gold_answer"][i]), repr(df["answer_text"][i][-80:]), out["verdict"][i])
    print(f"load after: {os.getloadavg()[0]:.2f}")
    speed = t_plain / t_ours
    print(f"RESULT agreement={ours_all:.3f} baseline={base_all:.3f} agreement_new={ours_new:.3f} "
          f"baseline_new={base_new:.3f} speedup={speed:.2f}"
          + ("" if diff == 0 else f" (verdicts differ on {diff} rows)"))


if __name__ == "__main__":
    main()
