"""Benchmark: audit N generated reasoning traces (~8k characters each) with planted defects.

    python benchmarks/audit.py                 # 100,000 rows (the target: seconds <= 120 on 2 cores)
    python benchmarks/audit.py --rows 5000     # a quick run

Each planted row carries exactly one defect (truncated, unclosed_think, empty_reasoning, no_answer,
no_boxed, repetition_loop, language_mix, length_outlier, answer_mismatch, after_answer: token soup in
mixed scripts written after the boxed answer, as 3 of the 800 Qwen2.5-Math traces do); flag recall is the share
of planted (row, flag) pairs the audit flags. Clean rows that get any flag are reported as the
false-positive rate. The timed part is the whole audit: ``audit_frame`` (flags on every row, as the audit stage)
and ``write_report`` (aggregates, charts, worst examples, report.html + summary.json). Generation is not timed.
Last line: ``RESULT seconds=<..> flag_recall=<..>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.audit import AuditConfig, audit_frame, write_report  # noqa: E402

PLANTS = ("truncated", "unclosed_think", "empty_reasoning", "no_answer", "no_boxed", "repetition_loop",
          "language_mix", "length_outlier", "answer_mismatch", "after_answer")

_SUBJ = ["the triangle", "the sum", "the product", "the remainder", "the function f", "the sequence", "the area",
         "the polynomial", "the integer n", "the probability", "the circle", "the angle ABC", "the expression",
         "the derivative", "the number of ways", "the perimeter", "the matrix", "the series", "the root r"]
_VERB = ["equals", "is at most", "is congruent to", "simplifies to", "is bounded by", "reduces to", "becomes",
         "must divide", "is greater than", "can be written as", "should match"]
_OPEN = ["So", "Then", "Now", "Next", "Therefore", "Hence", "Note that", "Recall that", "Since", "Thus",
         "We know", "Let us check that", "From the previous step,", "Substituting back,", "In this case"]
_TAIL = ["when x = {a}", "for every k below {a}", "modulo {a}", "after dividing by {a}", "because {a} is prime",
         "so we subtract {a}", "which gives {a}/{b}", "by the identity above", "using Vieta's formulas",
         "as computed in step {a}", "since {a} + {b} = {c}"]
_HAN = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严")

_CYRILLIC = list("абвгдежзийклмнопрстуфхцчшщыэюя ")
_HANGUL = list("가나다라마바사아자차카타파하그러므로답은이다 ")


def _sentence_pool(rng: np.random.Generator, n: int) -> list[str]:
    pool = []
    for _ in range(n):
        a, b = int(rng.integers(2, 999)), int(rng.integers(2, 99))
        tail = _TAIL[rng.integers(len(_TAIL))].format(a=a, b=b, c=a + b)
        s = (f"{_OPEN[rng.integers(len(_OPEN))]} {_SUBJ[rng.integers(len(_SUBJ))]} "
             f"{_VERB[rng.integers(len(_VERB))]} ${a}x^{{{b % 7 + 1}}} + {b}$ {tail}.")
        if rng.random() < 0.3:
            s += f"\n\\[\n\\frac{{{a}}}{{{b}}} = {a / b:.4f}\n\\]\n"
        pool.append(s)
    return pool


def generate(rows: int, chars: int, seed: int, plant_rate: float) -> tuple[pl.DataFrame, dict[int, str]]:
    rng = np.random.default_rng(seed)
    pool = _sentence_pool(rng, 50_000)
    mean_len = float(np.mean([len(s) + 1 for s in pool]))
    # trace lengths: log-normal around ~chars characters (real traces vary a lot in length)
    lengths = np.exp(rng.normal(np.log(chars) - 0.125, 0.5, rows)).astype(int).clip(400, 60 * chars)
    n_sent = np.maximum(3, (lengths / mean_len).astype(int))
    starts = rng.integers(0, len(pool), rows)
    answers = rng.integers(0, 10_000, rows)
    n_plant = int(rows * plant_rate)
    order = rng.permutation(rows)
    planted: dict[int, str] = {}
    for k, flag in enumerate(PLANTS):
        for i in order[k * n_plant : (k + 1) * n_plant]:
            planted[int(i)] = flag
    reasoning, answer_text, finish = [], [], []
    for i in range(rows):
        idx = (starts[i] + rng.integers(0, 997, n_sent[i]).cumsum()) % len(pool)
        body = " ".join(pool[j] for j in idx)
        ans = int(answers[i])
        r = body + f"\nTherefore, the final answer is $\\boxed{{{ans}}}$."
        a = f"The final answer is $\\boxed{{{ans}}}$."
        fr = "stop"
        flag = planted.get(i)
        if flag == "truncated":
            r, a, fr = body[: int(len(body) * 0.8)], "", "length"
        elif flag == "unclosed_think":
            r, a = "<think>\n" + body, ""
        elif flag == "empty_reasoning":
            r = ["", "  \n ", "ok."][i % 3]
        elif flag == "no_answer":
            r, a = body, ""
        elif flag == "no_boxed":
            r, a = body + f" So we get {ans}.", f"We get {ans}."
        elif flag == "repetition_loop":
            # a sentence loop, or a punctuation-free n-gram loop; at the very end (degenerate until
            # the token limit, cut mid-unit) or, every third row, followed by a normal conclusion
            unit = (pool[int(rng.integers(len(pool)))] + " " if i % 2 else
                    f"wait so the value of x is {ans} and then we add {ans % 17} again ")
            loop = unit * int(rng.integers(8, 40))
            loop = loop[: len(loop) - int(rng.integers(0, len(unit)))]
            r = body[: max(0, len(body) - 2000)] + " " + loop
            if i % 3 == 0:
                r += f"\nTherefore, the final answer is $\\boxed{{{ans}}}$."
        elif flag == "language_mix":
            script = (_HAN, _CYRILLIC, _HANGUL)[i % 3]
            k = int(rng.integers(12, 200))
            words = "".join(script[j] for j in rng.integers(0, len(script), k))
            cut = int(rng.integers(0, len(body)))
            r = body[:cut] + " " + words + " " + body[cut:] + f"\nTherefore, the final answer is $\\boxed{{{ans}}}$."
        elif flag == "length_outlier":
            r = (body * 12 if i % 2 else body[: max(40, len(body) // 40)]) + f" $\\boxed{{{ans}}}$."
        elif flag == "answer_mismatch":
            a = f"The final answer is $\\boxed{{{ans + 1}}}$."
        elif flag == "after_answer":  # token soup after the answer (the reasoning itself is fine)
            soup = "".join((_HAN + _CYRILLIC + _HANGUL)[j] for j in rng.integers(0, 60, int(rng.integers(40, 400))))
            a = a + " " + " ".join(pool[j] for j in rng.integers(0, len(pool), 3)) + soup
        reasoning.append(r)
        answer_text.append(a)
        finish.append(fr)
    n_problems = max(1, rows // 8)
    pid = np.arange(rows) % n_problems
    correct = rng.random(rows) < 0.45 + 0.5 * (pid % 10) / 10
    df = pl.DataFrame({
        "problem_id": [f"p{p:06d}" for p in pid],
        "sample_index": np.arange(rows) // n_problems,
        "problem": [f"Find the value of x such that x^2 + {p % 97}x = {p}." for p in pid],
        "source": np.array(["gen/algebra", "gen/geometry", "gen/counting"])[pid % 3],
        "reasoning": reasoning,
        "answer_text": answer_text,
        "finish_reason": finish,
        "correct": correct,
        "verdict": np.where(correct, "correct", "incorrect"),
        "difficulty_bucket": np.array(["easy", "medium", "hard"])[(pid % 10) // 4],
    })
    return df, planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--chars", type=int, default=8000, help="typical trace length in characters")
    ap.add_argument("--plant-rate", type=float, default=0.005, help="share of rows planted per defect")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the report here (default: a temp dir)")
    args = ap.parse_args()

    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    df, planted = generate(args.rows, args.chars, args.seed, args.plant_rate)
    mb = df["reasoning"].str.len_bytes().sum() / 1e6
    print(f"generated rows={df.height} reasoning_mb={mb:.0f} mean_chars={df['reasoning'].str.len_chars().mean():.0f} "
          f"planted={len(planted)} in {time.perf_counter() - t0:.1f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t1 = time.perf_counter()
        audited = audit_frame(df, AuditConfig())  # what the audit stage does
        summary = write_report(out, audited, None, None, AuditConfig())  # what the publisher does
        seconds = time.perf_counter() - t1
        flags = audited["flags"].to_list()
        size = (out / "audit" / "report.html").stat().st_size

    hit: dict[str, list[int]] = {f: [0, 0] for f in PLANTS}
    for i, f in planted.items():
        hit[f][1] += 1
        hit[f][0] += f in flags[i]
    clean = [i for i in range(len(flags)) if i not in planted]
    fp = sum(1 for i in clean if flags[i]) / max(1, len(clean))
    recall = sum(h for h, _ in hit.values()) / max(1, sum(n for _, n in hit.values()))
    for f, (h, n) in hit.items():
        print(f"  {f:16s} recall {h}/{n} = {h / max(1, n):.3f}")
    print(f"clean rows with any flag: {fp:.4f}  flag counts: {summary['flag_counts']}")
    print(f"report.html {size / 1e6:.2f} MB; load at end={os.getloadavg()[0]:.2f}")
    print(f"RESULT seconds={seconds:.1f} flag_recall={recall:.4f}")


if __name__ == "__main__":
    main()
