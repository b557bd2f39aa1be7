"""Sources: file formats, hub loading (on a local folder), field mapping, gold extraction, traces."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.errors import RecipeError, SourceError
from curate.sources import (
    FileSource,
    HubSource,
    TracesSource,
    last_boxed,
    load_one,
    load_sources,
    problem_id,
    split_think,
)
from curate.yamlio import load_yaml

ROWS = [
    {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4", "subject": "arith"},
    {"question": "How many cents in $1,234?", "answer": "#### 123,400", "subject": "money"},
    {"question": "  ", "answer": "#### 0", "subject": "blank"},
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_file_formats_mapping_and_gsm8k_extraction(tmp_path, fmt):
    df = pl.DataFrame(ROWS)
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        _jsonl(path, ROWS)
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    elif fmt == "parquet":
        df.write_parquet(path)
    else:
        df.write_csv(path)
    cfg = FileSource(path=path.name, fields={"problem": "question", "gold_answer": "answer"},
                     answer_extractor="gsm8k", meta_fields=["subject"])  # fmt: skip
    rows, bad, info = load_one(cfg, tmp_path)
    assert rows["gold_answer"].to_list() == ["4", "123400"]
    assert json.loads(rows["meta"][1]) == {"subject": "money"}
    assert rows["source"].to_list() == ["data", "data"] and rows["source_index"].to_list() == [0, 1]
    assert bad.height == 1 and bad["drop_reason"][0] == "empty_problem"
    assert info["inputs"][0]["sha256"] and rows["problem_id"][0] == problem_id("what is 2 +  2?")


def test_on_bad_row_fail_names_the_file_and_row(tmp_path):
    _jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = FileSource(path="d.jsonl", fields={"problem": "question"}, on_bad_row="fail")
    with pytest.raises(SourceError, match=r"d.jsonl: row 2: field 'question' is empty"):
        load_one(cfg, tmp_path)


def test_malformed_jsonl_line_is_named(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"problem": "a"}\n{"problem": oops}\n')
    with pytest.raises(SourceError, match=r"d.jsonl:2: malformed JSON line"):
        load_one(FileSource(path="d.jsonl"), tmp_path)


def test_missing_field_and_glob_and_limits(tmp_path):
    for i in range(3):
        _jsonl(tmp_path / f"part{i}.jsonl", [{"problem": f"p{i}-{j}", "answer": "1"} for j in range(5)])
    with pytest.raises(SourceError, match="field 'gold' .*not found"):
        load_one(FileSource(path="part*.jsonl", fields={"gold_answer": "gold"}), tmp_path)
    rows, _, _ = load_one(FileSource(path="part*.jsonl", fields={"gold_answer": "answer"}), tmp_path)
    assert rows.height == 15
    a, _, _ = load_one(FileSource(path="part*.jsonl", limit=4, shuffle=True, seed=1), tmp_path)
    b, _, _ = load_one(FileSource(path="part*.jsonl", limit=4, shuffle=True, seed=1), tmp_path)
    c, _, _ = load_one(FileSource(path="part*.jsonl", limit=4, shuffle=True, seed=2), tmp_path)
    assert a["problem"].to_list() == b["problem"].to_list() != c["problem"].to_list()
    mixed, _, infos = load_sources(
        [FileSource(path="part0.jsonl", limit=2), FileSource(path="part1.jsonl", name="other")], tmp_path, limit=3
    )
    assert mixed["source"].to_list() == ["part0"] * 2 + ["other"] * 3 and len(infos) == 2


def test_hub_source_through_load_dataset_on_a_local_folder(tmp_path):
    d = tmp_path / "hubish"
    (d / "data").mkdir(parents=True)
    pl.DataFrame({"problem": ["x?", "y?"], "solution": ["so \\boxed{\\frac{1}{2}}", "\\boxed{3}"]}).write_parquet(
        d / "data" / "test-00000-of-00001.parquet"
    )
    cfg = HubSource(path=str(d), split="test", fields={"gold_answer": "solution"}, answer_extractor="boxed")
    rows, _, info = load_one(cfg, tmp_path)
    assert rows["gold_answer"].to_list() == ["\\frac{1}{2}", "3"] and info["inputs"][0]["hub"] == str(d)
    # datasets' content fingerprint is part of the inputs (and so of the cache key): new data, new key
    fp = info["inputs"][0]["fingerprint"]
    pl.DataFrame({"problem": ["z?"], "solution": ["\\boxed{9}"]}).write_parquet(d / "data" / "test-00000-of-00001.parquet")
    assert load_one(cfg, tmp_path)[2]["inputs"][0]["fingerprint"] not in (None, fp)
    with pytest.raises(SourceError, match="cannot load"):
        load_one(HubSource(path=str(tmp_path / "nope")), tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),
        ("\\fbox{7}", "7"),
        ("\\boxed{unbalanced", None),
        ("no box", None),
        ("\\boxed 5$", "5"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "text, reasoning, answer",
    [
        ("<think>\nr\n</think>\n\nA", "r", "A"),
        ("r only closed</think>A", "r only closed", "A"),  # template prefilled <think>
        ("<think>never closed", "never closed", ""),
        ("plain chain of thought", "", "plain chain of thought"),
    ],
)
def test_split_think(text, reasoning, answer):
    assert split_think(text) == (reasoning, answer)


def test_traces_source_list_column_and_one_row_per_trace(tmp_path):
    _jsonl(tmp_path / "t.jsonl", [
        {"problem": "p1", "answer": "1", "generations": ["<think>a</think>\\boxed{1}", "<think>b"]},
        {"problem": "p2", "answer": "2", "generations": ["<think>c</think>2"]},
    ])  # fmt: skip
    cfg = TracesSource(path="t.jsonl", fields={"gold_answer": "answer"}, trace_field="generations", teacher="r1")
    rows, _, _ = load_one(cfg, tmp_path)
    assert rows.height == 3
    assert rows["sample_index"].to_list() == [0, 1, 0]
    assert rows["finish_reason"].to_list() == ["stop", "length", "stop"]
    assert rows["reasoning"].to_list() == ["a", "b", "c"] and rows["teacher"].unique().to_list() == ["r1"]
    _jsonl(tmp_path / "u.jsonl", [{"problem": "p1", "trace": "<think>x</think>y", "model": "m"}])
    rows, _, _ = load_one(TracesSource(path="u.jsonl", trace_field="trace", teacher_field="model"), tmp_path)
    assert rows["teacher"][0] == "m" and rows["answer_text"][0] == "y"


def test_env_interpolation_and_overrides(tmp_path, monkeypatch):
    p = tmp_path / "r.yaml"
    p.write_text("a: ${FOO}\nb: ${BAR:-dflt}\nc: {d: 1}\nlst: [1, 2]\nk: ${SOME_TOKEN}\n")
    monkeypatch.setenv("FOO", "foo")
    monkeypatch.setenv("SOME_TOKEN", "tok-123")
    loaded = load_yaml(p, ["c.d=5", "lst.1=x", "new.key=[1, 2]"])
    assert loaded.resolved == {"a": "foo", "b": "dflt", "c": {"d": 5}, "lst": [1, "x"], "k": "tok-123",
                               "new": {"key": [1, 2]}}  # fmt: skip
    assert loaded.public["k"] == "${SOME_TOKEN}" and loaded.public["a"] == "foo"
    monkeypatch.delenv("FOO")
    with pytest.raises(RecipeError, match=r"r.yaml:1: a uses \$\{FOO\}"):
        load_yaml(p)
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(RecipeError, match="bad.yaml:.*invalid YAML"):
        load_yaml(tmp_path / "bad.yaml")


def test_a_problem_repeated_across_problem_sources_is_kept_once(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"problem": "What is 1+1?"}, {"problem": "What is 2+2?"}])
    _jsonl(tmp_path / "b.jsonl", [{"problem": "what is  1+1?"}, {"problem": "What is 3+3?"}])
    rows, bad, _ = load_sources([FileSource(path="a.jsonl"), FileSource(path="b.jsonl")], tmp_path)
    assert rows["problem"].to_list() == ["What is 1+1?", "What is 2+2?", "What is 3+3?"]
    assert bad["drop_reason"].to_list() == ["duplicate_problem"] and bad["source"].to_list() == ["b"]


def test_traces_of_one_problem_from_two_sources_get_distinct_sample_ids(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"problem": "p1", "generations": ["<think>a</think>1", "<think>b</think>1"]}])
    _jsonl(tmp_path / "b.jsonl", [{"problem": "p1", "generations": ["<think>c</think>1"]}])
    cfgs = [TracesSource(path=f, trace_field="generations") for f in ("a.jsonl", "b.jsonl")]
    rows, _, _ = load_sources(cfgs, tmp_path)
    assert rows["sample_index"].to_list() == [0, 1, 2] and rows["sample_id"].n_unique() == 3
    assert rows["reasoning"].to_list() == ["a", "b", "c"]


def test_secret_fields_are_masked_in_the_public_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI", "sk-resolved-1")  # a variable whose name does not look secret
    p = tmp_path / "r.yaml"
    p.write_text("teacher:\n  api_key: ${OPENAI}\n  base_url: http://x\nlit: {password: hunter2}\n")
    loaded = load_yaml(p, ["extra_body.api_key=sk-literal-9999", "extra_body.hf_token=${OPENAI}"])
    assert loaded.resolved["teacher"]["api_key"] == "sk-resolved-1"
    text = json.dumps(loaded.public)
    for secret in ("sk-resolved-1", "sk-literal-9999", "hunter2"):
        assert secret not in text
    assert loaded.public["teacher"]["api_key"] == "${OPENAI}" and loaded.public["extra_body"]["hf_token"] == "${OPENAI}"


# Plain chain-of-thought traces (Qwen2.5-Math style: no <think>, a boxed answer at the end)
PLAIN = ("To find the value, we approximate each factor.\n\n- \\(10.0000198 \\approx 10\\)\n- \\(5.99999 \\approx 6\\)\n\n"
         "Now we multiply: \\(10 \\cdot 6 \\cdot 7 = 420\\).\n\nTherefore, the value is \\(\\boxed{420}\\).")


def test_traces_source_plain_cot_is_detected_and_split(tmp_path):
    _jsonl(tmp_path / "t.jsonl", [{"problem": "What is 10.0000198 * 5.99999 * 6.9999?", "gold": "420", "trace": PLAIN}] * 3)
    cfg = TracesSource(path="t.jsonl", fields={"gold_answer": "gold"}, trace_field="trace")
    rows, _, info = load_one(cfg, tmp_path)
    assert info["trace_format"] == "plain" and not info.get("warnings")
    assert rows["reasoning"][0].startswith("To find the value") and rows["reasoning"][0].endswith("= 420\\).")
    assert rows["answer_text"][0] == "Therefore, the value is \\(\\boxed{420}\\)."
    # declared think on plain data: split as declared, with a warning that names the fit
    rows, _, info = load_one(cfg.model_copy(update={"trace_format": "think"}), tmp_path)
    assert rows["reasoning"][0] == "" and any("trace_format" in w and "plain" in w for w in info["warnings"])
    # a separate reasoning column
    _jsonl(tmp_path / "c.jsonl", [{"problem": "p", "thinking": "We add 1 and 1.", "answer": "It is \\boxed{2}."}])
    rows, _, info = load_one(TracesSource(path="c.jsonl", trace_field="answer", trace_format="column",
                                          reasoning_field="thinking"), tmp_path)
    assert rows["reasoning"][0] == "We add 1 and 1." and rows["answer_text"][0] == "It is \\boxed{2}."
    with pytest.raises(SourceError, match="reasoning_field"):
        load_one(TracesSource(path="c.jsonl", trace_field="answer", trace_format="column"), tmp_path)
    # think traces are still detected as such
    _jsonl(tmp_path / "k.jsonl", [{"problem": "p", "trace": "<think>a b c</think>\\boxed{1}"}])
    rows, _, info = load_one(TracesSource(path="k.jsonl", trace_field="trace"), tmp_path)
    assert info["trace_format"] == "think" and rows["reasoning"][0] == "a b c"


# Field maps (issue 17): the MATH-500 file as published (problem, solution, answer)
MATH_ROWS = [{"problem": "Compute $\\dbinom{8}{4}$.", "solution": "... $\\boxed{70}$.", "answer": "70"},
             {"problem": "What is $\\sqrt{53}$ in simplest radical form?", "solution": "...", "answer": "\\sqrt{53}"}]


def _recipe(tmp_path: Path, source: str, stages: str = "") -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(f"name: fm\nversion: 0.1.0\nlicense: mit\nsources:\n{source}\nstages:\n{stages or '  []'}\noutput:\n  dir: out\n")
    return p


@pytest.mark.parametrize("fields,named", [
    ("{question: problem, answer: answer}", "question"),  # reversed: target names the data's column
    ("{problem: problem, gold: answer}", "gold"),
    ("{problem: problem, reasoning: trace, correct: is_correct}", "reasoning"),
])
def test_unknown_field_targets_are_errors(tmp_path, fields, named):
    from curate.recipe import load_recipe

    _jsonl(tmp_path / "m.jsonl", MATH_ROWS)
    r = _recipe(tmp_path, f"  - kind: file\n    path: m.jsonl\n    fields: {fields}")
    with pytest.raises(RecipeError) as e:
        load_recipe(r)
    msg = str(e.value)
    assert named in msg and "gold_answer" in msg and "\n" not in msg


def test_verify_without_gold_for_most_rows_fails_unless_allowed(tmp_path, monkeypatch):
    from curate.recipe import load_recipe
    from curate.runner import execute

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    _jsonl(tmp_path / "t.jsonl", [{"problem": r["problem"], "gold": r["answer"], "trace": f"So \\boxed{{{r['answer']}}}."}
                                  for r in MATH_ROWS])
    # gold mapped from a column that is not there is already an error; a gold column that is empty is not
    _jsonl(tmp_path / "t.jsonl", [{"problem": r["problem"], "gold": None, "trace": "So \\boxed{70}."} for r in MATH_ROWS])
    src = "  - kind: traces\n    path: t.jsonl\n    fields: {gold_answer: gold}\n    trace_field: trace"
    with pytest.raises(RecipeError, match=r"2 of 2 rows.*no gold answer.*allow_missing_gold"):
        execute(load_recipe(_recipe(tmp_path, src, "  - type: verify")))
    res = execute(load_recipe(_recipe(tmp_path, src, "  - type: verify\n    allow_missing_gold: true")))
    assert res.train["verdict"].to_list() == ["no_gold", "no_gold"]
