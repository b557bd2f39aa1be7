"""Build ``stack_algequiv_pairs.jsonl``: labelled (gold, pred, equivalent) pairs from the answer-test
fixtures of STACK, the Moodle question type's computer-algebra grader (a grader suite curate.verify
was never built or tuned on).

    git -C <mirror of github.com/maths/moodle-qtype_stack> show <commit>:tests/fixtures/answertestfixtures.class.php \\
        | python benchmarks/data/build_stack_pairs.py --commit <commit> > benchmarks/data/stack_algequiv_pairs.jsonl

Rows kept: the ``AlgEquiv`` test (algebraic equivalence) with no options and an expected result of
0 (different) or 1 (same), whose two answers use only notation a model writes in plain text
(numbers, + - * / ^, parentheses, letters, sqrt/exp/log/ln/trig/abs, ``%pi``/``%e``/``%i`` written
as ``pi``/``e``/``i``, ``!``). Dropped: Maxima-only syntax (predicates, matrices, lists, sets,
options, ``or``/``and``, relations, subscripts, functions of undefined names). gold = the teacher's
answer, pred = the student's answer.

``label_flags`` marks rows whose label is STACK's policy rather than a fact: every row with a decimal
number (STACK evaluates decimals in floating point and compares exactly, ``100.4-80.0`` is not
``20.4``; curate compares at the precision shown). The benchmark skips flagged rows.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

KNOWN = {"sqrt", "exp", "log", "ln", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "abs",
         "pi", "e", "i"}


def php_rows(src: str):
    """Each ``['AlgEquiv', ...]`` array literal of the fixtures as a list of str/int values."""
    for m in re.finditer(r"\[\s*'AlgEquiv'\s*,", src):
        i, vals, depth = m.start() + 1, [], 1
        while i < len(src) and depth > 0:
            c = src[i]
            if c == "'":
                j, buf = i + 1, []
                while src[j] != "'":
                    if src[j] == "\\" and src[j + 1] in "\\'":
                        buf.append(src[j + 1])
                        j += 2
                        continue
                    buf.append(src[j])
                    j += 1
                vals.append("".join(buf))
                i = j + 1
                continue
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c in "-0123456789" and (not vals or not isinstance(vals[-1], int) or True):
                n = re.match(r"-?\d+", src[i:])
                if n and src[i - 1] in " ,[\n\t":
                    vals.append(int(n.group(0)))
                    i += n.end()
                    continue
            i += 1
        yield vals, src.count("\n", 0, m.start()) + 1


def plain(s: str) -> str | None:
    """Maxima -> the plain-text notation models write; None when the answer uses Maxima-only syntax."""
    s = s.strip()
    if not s or len(s) > 120 or re.search(r"[\[\]{}:=<>#\"_;$@&|~?]|\bor\b|\band\b|\bnot\b", s):
        return None
    t = s.replace("%pi", "pi").replace("%e", "e").replace("%i", "i")
    if "%" in t:
        return None
    for name in re.findall(r"[A-Za-z]+", t):
        if len(name) > 1 and name not in KNOWN:
            return None
    for call in re.findall(r"([A-Za-z]+)\s*\(", t):  # only known functions are applied
        if call not in KNOWN or call in ("pi", "e", "i"):
            return None
    return t


_DEC = re.compile(r"\d*\.\d+|\d+\.\d*|\d+(?:\.\d+)?[eE][-+]?\d+")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    args = ap.parse_args()
    src = sys.stdin.read()
    source = f"maths/moodle-qtype_stack@{args.commit}:tests/fixtures/answertestfixtures.class.php"
    seen = set()
    n = 0
    for vals, line in php_rows(src):
        if len(vals) < 5 or vals[1] != "" or vals[4] not in (0, 1):
            continue
        sans, tans = plain(str(vals[2])), plain(str(vals[3]))
        if sans is None or tans is None or (tans, sans) in seen:
            continue
        seen.add((tans, sans))
        row = {"gold": tans, "pred": sans, "equivalent": vals[4] == 1, "source": source, "line": line,
               "id": f"stack-{line}", "note": vals[6] if len(vals) > 6 else ""}
        if _DEC.search(tans) or _DEC.search(sans):
            row["label_flags"] = ["policy: STACK compares decimals in floating point, exactly"]
        print(json.dumps(row, ensure_ascii=False))
        n += 1
    print(f"{n} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
