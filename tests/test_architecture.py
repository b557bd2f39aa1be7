"""The layering is written down as import-linter contracts (pyproject.toml, [tool.importlinter]) and kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    res = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "broken" not in res.stdout.split("Contracts:")[-1].split("kept")[-1] or "0 broken" in res.stdout


# Size limits: no module over 500 lines, no function over 60 (a smaller unit is one a reader can hold).
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def test_no_new_long_modules_or_functions():
    import ast

    too_long_modules, too_long_functions = [], []
    for path in sorted((REPO / "curate").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        src = path.read_text(encoding="utf-8")
        if src.count("\n") > MAX_MODULE_LINES:
            too_long_modules.append(f"{rel} ({src.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long_functions.append(f"{rel}:{node.name} ({n} lines)")
    assert not too_long_modules, f"modules over {MAX_MODULE_LINES} lines: {too_long_modules}"
    assert not too_long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {too_long_functions}"
