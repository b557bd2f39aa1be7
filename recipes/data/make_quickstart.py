"""Write recipes/data/quickstart_traces.jsonl: the offline quickstart's problems and teacher traces.

Deterministic (seeded). One row per problem with a ``generations`` list (OpenR1-Math style), so the
quickstart exercises the ``traces`` source. Planted faults are listed in recipes/data/README.md.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# (problem, gold answer as written by the dataset, worked steps, answer as the teacher writes it)
PROBLEMS: list[tuple[str, str, str, str]] = [
    ("A baker makes 24 muffins and sells 17 of them. How many muffins are left?", "7", "24 - 17 = 7.", "7"),
    ("What is the sum of the interior angles of a hexagon, in degrees?", "720", "(6-2)*180 = 720.", "720"),
    ("Solve for x: 3x + 5 = 20.", "5", "3x = 15, so x = 5.", "5"),
    ("Simplify the fraction 18/24.", "\\frac{3}{4}", "Divide by 6: 3/4.", "\\frac{3}{4}"),
    ("A train travels 180 km in 2.5 hours. What is its average speed in km/h?", "72", "180 / 2.5 = 72.", "72"),
    ("How many positive divisors does 36 have?", "9", "36 = 2^2 3^2, so (2+1)(2+1) = 9.", "9"),
    ("Compute 15% of 240.", "36", "0.15 * 240 = 36.", "36"),
    ("What is the least common multiple of 12 and 18?", "36", "lcm = 2^2 * 3^2 = 36.", "36"),
    ("Evaluate 2^10 - 2^8.", "768", "1024 - 256 = 768.", "768"),
    ("A rectangle has perimeter 30 and length 9. What is its area?", "54", "width = 15 - 9 = 6, area 54.", "54"),
    ("If f(x) = x^2 - 4x + 7, what is the minimum value of f?", "3", "Vertex at x = 2: 4 - 8 + 7 = 3.", "3"),
    ("What is the probability of rolling a sum of 7 with two fair dice?", "\\frac{1}{6}",
     "6 favourable outcomes of 36.", "\\frac{6}{36}"),
    ("Find the positive solution of x^2 - 5x - 14 = 0.", "7", "(x-7)(x+2) = 0, so x = 7.", "7"),
    ("A shirt costs $40 and is discounted by 25%. What is the sale price in dollars?", "30",
     "40 * 0.75 = 30.", "30"),
    ("What is the greatest common divisor of 84 and 120?", "12", "84 = 2^2*3*7, 120 = 2^3*3*5: gcd 12.", "12"),
    ("How many ways can 5 different books be arranged on a shelf?", "120", "5! = 120.", "120"),
    ("What is the square root of 2025?", "45", "45^2 = 2025.", "45"),
    ("Convert 0.375 to a fraction in lowest terms.", "\\frac{3}{8}", "375/1000 = 3/8.", "3/8"),
    ("The mean of five numbers is 12. Four of them are 10, 11, 13 and 15. What is the fifth?", "11",
     "Sum is 60; 60 - 49 = 11.", "11"),
    ("A cyclist rides at 18 km/h for 40 minutes. How far does she ride, in km?", "12", "18 * 2/3 = 12.", "12"),
    ("What is 7! / 5!?", "42", "7 * 6 = 42.", "42"),
    ("Find the slope of the line through (1, 2) and (4, 11).", "3", "(11-2)/(4-1) = 3.", "3"),
    ("How many edges does a cube have?", "12", "A cube has 12 edges.", "12"),
    ("Solve for y: y/4 - 3 = 2.", "20", "y/4 = 5, y = 20.", "20"),
    ("What is the remainder when 2^20 is divided by 7?", "4", "2^3 = 1 mod 7; 2^20 = 2^2 = 4 mod 7.", "4"),
    ("A tank holds 500 liters and is 40% full. How many liters are needed to fill it?", "300",
     "500 * 0.6 = 300.", "300"),
    ("Compute the sum 1 + 2 + ... + 50.", "1275", "50 * 51 / 2 = 1275.", "1275"),
    ("What is the value of log base 2 of 64?", "6", "2^6 = 64.", "6"),
    ("A recipe uses 3 cups of flour for 12 cookies. How many cups are needed for 30 cookies?", "7.5",
     "30/12 * 3 = 7.5.", "\\frac{15}{2}"),
    ("Find the distance between the points (0, 0) and (6, 8).", "10", "sqrt(36 + 64) = 10.", "10"),
    ("How many prime numbers are less than 30?", "10", "2,3,5,7,11,13,17,19,23,29.", "10"),
    ("What is the area of a circle of radius 3?", "9\\pi", "pi * 3^2 = 9 pi.", "9\\pi"),
    ("Solve the system x + y = 10, x - y = 4. What is x?", "7", "2x = 14, x = 7.", "7"),
    ("A clock shows 3:00. What is the smaller angle between the hands, in degrees?", "90",
     "A quarter turn: 90.", "90"),
    ("How many diagonals does an octagon have?", "20", "8 * 5 / 2 = 20.", "20"),
    ("What is 0.2 times 0.35?", "0.07", "0.2 * 0.35 = 0.07.", "0.07"),
    ("Expand (x + 3)^2 and give the constant term.", "9", "x^2 + 6x + 9.", "9"),
    ("If 4 pencils cost $1.20, how much do 10 pencils cost in dollars?", "3", "0.30 * 10 = 3.", "3"),
]

NEAR_DUPS = [
    # light edits of problems above: the dedup stage's near-duplicate detection should catch them
    ("A baker makes 24 muffins and then sells 17 of them. How many muffins are left over?", 0),
    ("Compute the sum 1 + 2 + ... + 50 .", 26),
]
EXACT_DUP = 2  # "Solve for x: 3x + 5 = 20." appears twice (exact duplicate)
GSM8K_COPY = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
    "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
    "duck egg. How much in dollars does she make every day at the farmers' market?"
)

REFLECT = ["Wait, let me double-check that.", "Let me verify this step.", "Checking: that looks right."]


def trace(steps: str, answer: str, rng: random.Random) -> str:
    extra = rng.choice(REFLECT)
    return (
        f"<think>\nWe need to work this out carefully.\n{steps}\n{extra}\n</think>\n\n"
        f"The answer is $\\boxed{{{answer}}}$."
    )


def wrong(answer: str) -> str:
    try:
        return str(int(float(answer)) + 1)
    except ValueError:
        return answer + "+1"


def main() -> None:
    rng = random.Random(20261123)
    rows = []
    for i, (prob, gold, steps, ans) in enumerate(PROBLEMS):
        gens = [trace(steps, ans, rng) for _ in range(4)]
        if i % 5 == 1:  # one wrong trace
            gens[1] = trace(steps, wrong(ans), rng)
        if i % 9 == 4:  # a hard problem: mostly wrong
            gens[0] = trace(steps, wrong(ans), rng)
            gens[2] = trace(steps, wrong(wrong(ans)), rng)
            gens[3] = trace(steps, wrong(ans), rng)
        rows.append({"problem": prob, "answer": gold, "generations": gens})
    # planted faults
    rows[3]["generations"][2] = "<think>\nWe need to simplify. 18/24: both divide by 2, giving 9/12, and"  # truncated
    loop = "Let me recompute 2^10. 2^10 is 1024. "
    rows[8]["generations"][3] = "<think>\n" + loop * 60 + "\n</think>\n\nThe answer is $\\boxed{768}$."  # loop
    rows[10]["generations"][1] = "<think>\nVertex at x = 2.\n</think>\n\nThe minimum value is 3."  # no boxed
    for text, src in NEAR_DUPS:
        _, gold, steps, ans = PROBLEMS[src]
        rows.append({"problem": text, "answer": gold, "generations": [trace(steps, ans, rng) for _ in range(4)]})
    rows.append(dict(rows[EXACT_DUP]))
    rows.append(
        {
            "problem": GSM8K_COPY,
            "answer": "18",
            "generations": [trace("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.", "18", rng) for _ in range(4)],
        }
    )
    with open(HERE / "quickstart_traces.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} problems, {sum(len(r['generations']) for r in rows)} traces")


if __name__ == "__main__":
    main()
