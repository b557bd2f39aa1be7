"""Malformed inputs (issue 14, items 7-11): every one gives exit 2 and ONE line naming the file (and the
line or field), no traceback, nothing paid (the loopback teacher sees no request), no version written;
and ``curate validate`` agrees with ``curate run`` on every one. Plus the YAML hardening (alias
expansion cap, duplicate keys, recursion, depth), path-safe stage labels, --limit, the work-folder lock,
writability checks before any work and stale temporary folders."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.testing.openai_server import OpenAIServer

PROBLEMS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "level": i % 3} for i in range(6)]


@pytest.fixture(scope="module")
def srv():
    with OpenAIServer() as s:
        yield s


@pytest.fixture
def proj(tmp_path, monkeypatch, srv):
    """A project folder with a data file and a recipe sampling from the loopback teacher."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROBLEMS))
    srv.clear()
    return tmp_path


def recipe(srv, *, source: str | None = None, stage_extra: str = "", extra: str = "", stages: str | None = None) -> str:
    source = source or "  - {kind: file, path: data.jsonl, fields: {problem: question, gold_answer: answer}}\n"
    if stages is None:
        stages = (
            "  - type: sample\n"
            f"    teacher: {{backend: openai, model: m, base_url: '{srv.base_url}', max_retries: 0}}\n"
            "    n: 1\n" + stage_extra
        )
    return f"name: t\nversion: 0.1.0\nsources:\n{source}stages:\n{stages}{extra}"


def cli(*args: str):
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr, r.exception


def assert_one_line_error(code, stdout, stderr, exc, *needles: str):
    assert code == 2, (code, stdout, stderr, repr(exc))
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    # one error line, the last one (progress lines such as "[1/2] source: ..." may come before it)
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr + stdout
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def run_and_validate(proj, srv, *args: str, needles=()):
    """`validate` and `run` both refuse with one line; nothing is paid, no version is written."""
    v = cli("validate", "recipe.yaml", *args)
    line_v = assert_one_line_error(*v, *needles)
    r = cli("run", "recipe.yaml", *args)
    line_r = assert_one_line_error(*r, *needles)
    assert srv.count() == 0, "a teacher request was sent"
    assert not (proj / "out" / "t" / "0.1.0").exists()
    cache = proj / "home" / "t" / "cache"
    # the sources' shards (``source-*``, a read of the local inputs) may be kept for the next run; no stage entry
    stages = [e for e in cache.iterdir() if not e.name.startswith("source-")] if cache.exists() else []
    assert not stages, "a stage ran before the check"
    return line_v, line_r


# ----------------------------------------------------------------------------- the table
BINARY = bytes(range(256)) * 4


def _bad_data(name: str, content: bytes | str):
    def make(proj, srv):
        p = proj / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        (proj / "recipe.yaml").write_text(recipe(srv, source=f"  - {{kind: file, path: {name}, fields: {{problem: question}}}}\n"))
        return (name,)

    return make


def _recipe_text(text: str | bytes, needle: str = "recipe.yaml"):
    def make(proj, srv):
        (proj / "recipe.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        return (needle,)

    return make


def _recipe_with(needle: str, needle_file: str = "recipe.yaml", **kw):
    def make(proj, srv):
        (proj / "recipe.yaml").write_text(recipe(srv, **kw))
        return (needle_file, needle)

    return make


def _nested(depth: int) -> str:
    return "name: t\nversion: 0.1.0\nx: " + "[" * depth + "]" * depth + "\n"


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join('*' + p for _ in range(9))}]\n" for p, c in zip("abcdefgh", "bcdefghi")
) + "name: t\n"

CHAIN = "name: t\nversion: 0.1.0\na0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 300))

CASES = {
    # data files
    "empty_data": _bad_data("empty.jsonl", ""),
    "malformed_jsonl": _bad_data("bad.jsonl", '{"question": "a"}\n{"question": \n'),
    "binary_data": _bad_data("bin.jsonl", BINARY),
    "non_utf8_data": _bad_data("latin.jsonl", '{"question": "caf\xe9"}\n'.encode("latin-1")),
    "not_objects": _bad_data("list.jsonl", "[1, 2]\n"),
    "binary_parquet": _bad_data("bin.parquet", BINARY),
    "binary_csv": _bad_data("bin.csv", b"question\n" + b"\xff\xfe\x00" * 10),
    "bad_gzip": _bad_data("bad.jsonl.gz", b"not gzip at all"),
    "missing_field": _recipe_with("nope", needle_file="data.jsonl", source="  - {kind: file, path: data.jsonl, fields: {problem: nope}}\n"),
    "missing_meta_field": _recipe_with("subject", needle_file="data.jsonl", source="  - {kind: file, path: data.jsonl, fields: {problem: question}, meta_fields: [subject]}\n"),
    "missing_file": _recipe_with("missing.jsonl", needle_file="missing.jsonl", source="  - {kind: file, path: missing.jsonl}\n"),
    "trace_field": _recipe_with("trace_field", needle_file="data.jsonl", stages="  []\n",
                                source="  - {kind: traces, path: data.jsonl, fields: {problem: question}, trace_field: nope}\n"),
    "template_column": _recipe_with("{level}", stage_extra="    user_template: '{problem} at level {level}'\n"),
    "system_column": _recipe_with("{persona}", stage_extra="    system_prompt: 'You are {persona}'\n"),
    "dedup_field": _recipe_with("nope", stages="  - type: dedup\n    field: nope\n    scope: sample\n"),
    # a problem-only recipe ending in audit: refused before dedup runs (nothing cached, nothing paid)
    "stage_needs_column": _recipe_with("reasoning", stages="  - type: dedup\n  - type: audit\n"),
    "label_traversal": _recipe_with("label", stage_extra="    label: ../../../tmp/x\n"),
    "label_absolute": _recipe_with("label", stage_extra="    label: /tmp/x\n"),
    # the recipe file itself
    "recipe_non_utf8": _recipe_text("name: caf\xe9\nversion: 0.1.0\n".encode("latin-1")),
    "recipe_binary": _recipe_text(BINARY),
    "recipe_python_tag": _recipe_text("name: !!python/object/apply:os.system ['echo hi']\nversion: 0.1.0\n", "recipe.yaml:1"),
    "recipe_python_name": _recipe_text("name: t\nversion: 0.1.0\nseed: !!python/name:os.system\n", "recipe.yaml:3"),
    "recipe_recursive_alias": _recipe_text("name: t\nversion: 0.1.0\nx: &a [*a]\n", "recipe.yaml:3"),
    "recipe_alias_bomb": _recipe_text(LAUGHS),
    "recipe_alias_chain": _recipe_text(CHAIN, "recipe.yaml"),
    "recipe_deep_nesting": _recipe_text(_nested(5000), "recipe.yaml:3"),
    "recipe_duplicate_key": _recipe_text("name: t\nversion: 0.1.0\nname: u\n", "recipe.yaml:3"),
    "recipe_top_level_list": _recipe_text("- a\n- b\n", "recipe.yaml:1"),
    "recipe_invalid_yaml": _recipe_text("name: [t\n", "recipe.yaml"),
    "recipe_empty": _recipe_text("", "recipe.yaml"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_is_one_line_exit_2_nothing_paid_and_validate_agrees(proj, srv, case):
    needles = CASES[case](proj, srv)
    t0 = time.perf_counter()
    run_and_validate(proj, srv, needles=needles)
    assert time.perf_counter() - t0 < 20


def test_duplicate_key_names_both_lines(proj, srv):
    (proj / "recipe.yaml").write_text("name: t\nversion: 0.1.0\nseed: 1\nseed: 2\n")
    line_v, _ = run_and_validate(proj, srv)
    assert "recipe.yaml:4" in line_v and "line 3" in line_v and "seed" in line_v


def test_alias_bomb_is_refused_fast(proj, srv):
    (proj / "recipe.yaml").write_text(LAUGHS)
    t0 = time.perf_counter()
    line, _ = run_and_validate(proj, srv)
    assert time.perf_counter() - t0 < 5 and "alias" in line


def test_plain_aliases_still_work(proj, srv):
    (proj / "recipe.yaml").write_text(
        "name: t\nversion: 0.1.0\ndescription: &d small\nlicense: *d\n"
        "sources:\n  - {kind: file, path: data.jsonl, fields: {problem: question}}\n"
    )
    code, _, err, _ = cli("validate", "recipe.yaml")
    assert code == 0, err


def test_bom_recipe_and_bom_jsonl_and_gzip_jsonl_are_read(proj, srv):
    body = "".join(json.dumps(r) + "\n" for r in PROBLEMS)
    (proj / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode())
    with gzip.open(proj / "z.jsonl.gz", "wt") as f:
        f.write(body)
    src = ("  - {kind: file, name: a, path: bom.jsonl, fields: {problem: question}}\n"
           "  - {kind: file, name: b, path: z.jsonl.gz, fields: {problem: question}}\n")
    (proj / "recipe.yaml").write_bytes(b"\xef\xbb\xbf" + recipe(srv, source=src, stages="  []\n").encode())
    code, _, err, exc = cli("run", "recipe.yaml")
    assert code == 0, err + repr(exc)
    import polars as pl

    train = pl.read_parquet(proj / "out" / "t" / "0.1.0" / "data" / "train-00000-of-00001.parquet")
    assert train.height == 6 and train.filter(pl.col("source") == "b").height == 0  # b repeats a: duplicates
    assert "duplicate_problem" in (proj / "out" / "t" / "0.1.0" / "README.md").read_text()


# ----------------------------------------------------------------------------- --set, --limit
@pytest.mark.parametrize("args,needle", [
    (("--set", "name.x=1"), "name"),
    (("--set", "stages.0.n.x=1"), "stages.0.n"),
    (("--set", "stages.5.n=1"), "stages.5"),
    (("--set", "novalue"), "--set"),
    (("--set", "description=" + LAUGHS.replace("\n", "\n")), "alias"),
    (("--set", "description=" + "[" * 3000 + "]" * 3000), "nesting"),
])
def test_bad_set_is_one_line(proj, srv, args, needle):
    (proj / "recipe.yaml").write_text(recipe(srv))
    for cmd in ("validate", "run"):
        assert_one_line_error(*cli(cmd, "recipe.yaml", *args), needle)
    assert srv.count() == 0


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_zero_or_negative_is_an_error(proj, srv, limit):
    (proj / "recipe.yaml").write_text(recipe(srv))
    assert_one_line_error(*cli("run", "recipe.yaml", "--limit", limit), "--limit")
    assert srv.count() == 0


# ----------------------------------------------------------------------------- folders (item 9)
def test_file_valued_output_dir_fails_before_any_work(proj, srv):
    (proj / "outfile").write_text("x")
    (proj / "recipe.yaml").write_text(recipe(srv, extra="output: {dir: outfile}\n"))
    run_and_validate(proj, srv, needles=("output.dir", "outfile"))
    code, out, err, exc = cli("run", "recipe.yaml", "--output", "outfile/sub")
    assert_one_line_error(code, out, err, exc, "outfile")
    assert srv.count() == 0


def test_file_valued_curate_home_fails_before_any_work(proj, srv, monkeypatch):
    (proj / "homefile").write_text("x")
    monkeypatch.setenv("CURATE_HOME", str(proj / "homefile"))
    (proj / "recipe.yaml").write_text(recipe(srv))
    run_and_validate(proj, srv, needles=("CURATE_HOME", "homefile"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_dir_fails_before_any_work(proj, srv):  # pragma: no cover - non-root only
    ro = proj / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    (proj / "recipe.yaml").write_text(recipe(srv, extra="output: {dir: ro}\n"))
    run_and_validate(proj, srv, needles=("output.dir",))


def test_existing_version_is_refused_before_any_work(proj, srv):
    (proj / "recipe.yaml").write_text(recipe(srv))
    (proj / "out" / "t" / "0.1.0").mkdir(parents=True)
    assert_one_line_error(*cli("run", "recipe.yaml"), "0.1.0", "exists")
    assert srv.count() == 0


def test_manifest_has_no_local_absolute_paths(proj, srv):
    (proj / "recipe.yaml").write_text(recipe(srv))
    code, _, err, _ = cli("run", str(proj / "recipe.yaml"))
    assert code == 0, err
    vdir = proj / "out" / "t" / "0.1.0"
    text = (vdir / "manifest.json").read_text() + (vdir / "README.md").read_text()
    assert str(proj) not in text and str(Path.home()) + "/" not in text
    assert "data.jsonl" in text  # the input is still named, relative to the recipe
