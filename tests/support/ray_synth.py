"""Synthetic teacher traces for the Ray engine's equivalence tests and benchmark (seeded, no network).

``write_traces(path, rows, seed)`` writes a ``traces`` source (jsonl: problem, answer, generations)
with ``rows`` samples (4 per problem) that exercise every stage the engine distributes: exact and
near-duplicate problems (a few words changed), copied reasoning, right/wrong/missing answers in
several notations (boxed, fractions vs decimals, "The answer is"), and truncated traces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_WORDS = (
    "apple basket train river number garden window pencil marble ticket cookie farmer bridge candle "
    "rabbit ladder orange violin planet shovel bottle wallet rocket button mirror hammer carpet tiger "
    "lemon pocket circle square triangle minute hour week money coin store price total each more less "
    "twice half quarter dozen pair group team class school friend sister brother mother father uncle"
).split()


def _sentence(rng: np.random.Generator, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS, size=int(rng.integers(lo, hi))))


def _answer_text(rng: np.random.Generator, a: int, b: int, right: bool) -> tuple[str, str]:
    """(answer text, finish_reason) for gold a/b (b == 1: an integer)."""
    val = a if right else a + int(rng.integers(1, 5))
    form = int(rng.integers(0, 6))
    if b != 1:
        if form < 2:
            return f"The answer is $\\boxed{{\\frac{{{val}}}{{{b}}}}}$.", "stop"
        if form < 4:
            return f"So the result is {val}/{b}.", "stop"
        return f"Final answer: \\boxed{{{val / b:.6g}}}", "stop"
    if form == 0:
        return f"The answer is $\\boxed{{{val}}}$.", "stop"
    if form == 1:
        return f"Therefore the total is {val} coins.", "stop"
    if form == 2:
        return f"#### {val}", "stop"
    if form == 3:
        return "", "length"  # truncated: no answer
    if form == 4:
        return f"\\boxed{{{val}.0}}", "stop"
    return f"Answer: {val}", "stop"


def write_traces(path: str | Path, rows: int = 10_000, seed: int = 0, per_problem: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    n_prob = max(1, rows // per_problem)
    problems: list[str] = []
    answers: list[tuple[int, int]] = []
    out = []
    for i in range(n_prob):
        kind = rng.random()
        a, b = int(rng.integers(1, 500)), (1 if rng.random() < 0.8 else int(rng.integers(2, 9)))
        if problems and kind < 0.05:  # exact duplicate for dedup (same tokens), another problem_id
            src = int(rng.integers(len(problems)))
            text = problems[src].upper().replace("?", " ?").replace(".", " .")
        elif problems and kind < 0.15:  # near duplicate: two words swapped for others, same question
            src = int(rng.integers(len(problems)))
            words = problems[src].split()
            for _ in range(2):
                words[int(rng.integers(len(words)))] = str(rng.choice(_WORDS))
            text = " ".join(words)
            a, b = answers[src]  # a rephrasing asks for the same answer (dedup keeps different answers apart)
        else:
            text = f"{_sentence(rng, 18, 40)}. How many {rng.choice(_WORDS)}s are there in case {i}?"
        problems.append(text)
        answers.append((a, b))
        gold = str(a) if b == 1 else f"\\frac{{{a}}}{{{b}}}"
        skill = rng.random()
        gens = []
        base = _sentence(rng, 60, 160)
        for _ in range(per_problem):
            ans, finish = _answer_text(rng, a, b, rng.random() < skill)
            r = rng.random()
            if r < 0.25:  # copied reasoning (exact duplicate)
                body = base
            elif r < 0.4:  # lightly edited copy (near duplicate for dedup on reasoning)
                words = base.split()
                for _ in range(int(rng.integers(1, 4))):
                    words[int(rng.integers(len(words)))] = str(rng.choice(_WORDS))
                body = " ".join(words)
            else:
                body = _sentence(rng, 60, 160)
            gens.append(f"<think>\n{body}" if finish == "length" else f"<think>\n{body}\n</think>\n\n{ans}")
        out.append({"problem": text, "answer": gold, "generations": gens})
    p = Path(path)
    p.write_text("\n".join(json.dumps(r) for r in out) + "\n")
    return p
