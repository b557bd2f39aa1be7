"""Build ``areal_reward_pairs.jsonl``: labelled (gold, pred, equivalent) pairs from AReaL's math-verify
reward tests (inclusionAI/AReaL ``tests/test_math_verify_reward.py``), a grader suite curate.verify was
never built or tuned on.

    git -C <mirror of github.com/inclusionAI/AReaL> show <commit>:tests/test_math_verify_reward.py \\
        | python benchmarks/data/build_areal_pairs.py --commit <commit> > benchmarks/data/areal_reward_pairs.jsonl

Rows kept: every call ``reward = <fn>(..., completions=<str>, answer=<str>)`` whose result the test
asserts with ``assert reward == 1.0`` (equivalent) or ``== 0.0`` (not). Calls whose assertion only
checks the type ("both reasonable") carry no label and are dropped, as are calls with no gold.
pred = the completion (a whole model output), gold = the answer. Read with ``ast``: nothing is run.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys


def pairs(src: str):
    tree = ast.parse(src)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test"):
            continue
        calls: dict[str, tuple[str, str, int]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
                kw = {k.arg: k.value for k in node.value.keywords}
                comp, ans = kw.get("completions"), kw.get("answer")
                if isinstance(comp, ast.Constant) and isinstance(ans, ast.Constant) and isinstance(ans.value, str):
                    target = node.targets[0]
                    if isinstance(target, ast.Name):
                        calls[target.id] = (ans.value, comp.value, node.lineno)
        for node in ast.walk(fn):
            if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
                continue
            t = node.test
            if (isinstance(t.left, ast.Name) and t.left.id in calls and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq)
                    and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value in (0.0, 1.0)):
                gold, pred, line = calls[t.left.id]
                yield fn.name, gold, pred, t.comparators[0].value == 1.0, line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    args = ap.parse_args()
    source = f"inclusionAI/AReaL@{args.commit}:tests/test_math_verify_reward.py"
    n = 0
    for test, gold, pred, eq, line in pairs(sys.stdin.read()):
        print(json.dumps({"gold": gold, "pred": pred, "equivalent": eq, "source": source, "test": test,
                          "line": line, "id": f"areal-{line}"}, ensure_ascii=False))
        n += 1
    print(f"{n} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
