"""Trace-quality audit: per-row flags, the stage, the summary/report, and `curate audit` loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from curate.audit import AuditConfig, audit_dataset, audit_frame, write_report
from curate.errors import SourceError
from curate.stages.base import Context

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
if not BENCH.is_dir():
    BENCH = Path("/work/shared/bench")
TRACES = BENCH / "traces" / "traces_qwen25math_cot_math100x8.jsonl"


def _body(i: int, n: int = 40) -> str:
    return " ".join(f"Step {k}: multiply {k + i} by {k + 2} to get {(k + i) * (k + 2)}." for k in range(n))


def _clean(i: int) -> dict:
    return {"problem_id": f"p{i % 7}", "problem": f"Compute the value for case {i}.", "source": f"s{i % 2}",
            "reasoning": _body(i) + f" Therefore the answer is \\boxed{{{i}}}.",
            "answer_text": f"The answer is $\\boxed{{{i}}}$.", "finish_reason": "stop",
            "verdict": "correct", "correct": True, "pred_answer": str(i), "difficulty_bucket": "easy"}


# one row per flag: the edit that plants it
CASES: dict[str, dict] = {
    "truncated": {"finish_reason": "length", "answer_text": ""},
    "unclosed_think": {"reasoning": "<think>\n" + _body(1), "answer_text": ""},
    "empty_reasoning": {"reasoning": "  \n "},
    "no_answer": {"reasoning": _body(2), "answer_text": None, "pred_answer": None, "verdict": "no_answer",
                  "correct": False},
    "no_boxed": {"reasoning": _body(3) + " So it is 12.", "answer_text": "It is 12."},
    "repetition_loop": {"reasoning": _body(4) + " and then we add two again so" * 20},
    "language_mix": {"reasoning": _body(5, 20) + " 所以我们需要计算这个数的平方根然后再加上二 " + _body(6, 20)
                     + " \\boxed{5}"},
    "length_outlier": {"reasoning": _body(7, 4000) + " \\boxed{7}"},
    "answer_mismatch": {"answer_text": "The answer is $\\boxed{999}$."},
}


def _frame() -> pl.DataFrame:
    rows = [_clean(i) for i in range(30)]
    for k, edit in enumerate(CASES.values()):
        rows.append({**_clean(100 + k), **edit})
    return pl.DataFrame(rows)


def test_each_planted_flag_fires_and_clean_rows_stay_clean() -> None:
    out = audit_frame(_frame(), AuditConfig())
    flags = out["flags"].to_list()
    assert all(f == [] for f in flags[:30]), flags[:30]
    for k, name in enumerate(CASES):
        assert name in flags[30 + k], (name, flags[30 + k])
    assert out.height == 30 + len(CASES)  # never drops rows
    assert out["reasoning_tokens"].dtype == pl.Int64 and out["reflections_per_1k"].dtype == pl.Float64


def test_measures_tokens_reflections_and_verdict_mismatch() -> None:
    df = pl.DataFrame({
        "reasoning": ["Wait, let me check: 12 + 30 = 42. Hmm, let me verify again. 中文",
                      "x" * 10, "We get 42. Actually no."],
        "answer_text": ["\\boxed{42}", "\\boxed{1}", "\\boxed{2}"],
        "verdict": ["correct", "correct", "incorrect"],
        "correct": [True, False, False],
    })
    out = audit_frame(df, AuditConfig(min_reasoning_chars=5))
    # approximation: letter runs, each digit, each symbol and each CJK character count one
    # "Wait , let me check : 1 2 + 3 0 = 4 2 . Hmm , let me verify again . 中 文"
    assert out["reasoning_tokens"][0] == 24
    # wait, let me check, hmm, let me verify (and "verify" inside it is one match, not two)
    assert out["reflections_per_1k"][0] == pytest.approx(4 * 1000 / 24, abs=1e-3)
    assert "answer_mismatch" in out["flags"][1] and "answer_mismatch" not in out["flags"][2]


def test_thresholds_and_flag_selection_are_configurable() -> None:
    df = _frame()
    quiet = audit_frame(df, AuditConfig(flags=["truncated", "no_boxed"], require_boxed=False))
    assert set(quiet["flags"].explode().drop_nulls().to_list()) == {"truncated"}
    strict = audit_frame(df, AuditConfig(repeat_min_count=40))
    assert "repetition_loop" not in strict["flags"][30 + list(CASES).index("repetition_loop")]
    with pytest.raises(ValidationError, match="unknown flag"):
        AuditConfig(flags=["nonsense"])
    with pytest.raises(ValidationError):
        AuditConfig(bogus=1)


def test_audit_stage_via_registry(tmp_path: Path) -> None:
    from curate.registry import get_stage

    cls = get_stage("audit")
    assert cls.Config is AuditConfig
    stage = cls(AuditConfig.model_validate({"type": "audit", "expect_think": True}))
    ctx = Context.for_test(tmp_path)
    df = _frame()
    out = stage.run(df, ctx)
    assert out.height == df.height and "drop_reason" not in out.columns
    assert {"flags", "reasoning_tokens", "reflections_per_1k"} <= set(out.columns)
    assert ctx.stats["flag_counts"]["truncated"] == 2  # finish_reason=length and the unclosed think
    assert ctx.stats["rows_flagged"] == len(CASES)


def test_write_report_summary_matches_frame_and_escapes(tmp_path: Path) -> None:
    df = _frame().with_columns(
        pl.when(pl.col("problem_id") == "p3").then(pl.lit("<script>alert(1)</script>") + pl.col("problem"))
        .otherwise(pl.col("problem")).alias("problem"),
        pl.when(pl.int_range(pl.len()) == 30 + list(CASES).index("repetition_loop"))
        .then(pl.lit("<img src=x onerror=alert(2)>") + pl.col("reasoning")).otherwise(pl.col("reasoning"))
        .alias("reasoning"),
    )
    rejected = pl.DataFrame({"problem": ["a", "b", "c"], "dropped_by": ["verify", "verify", "dedup"],
                             "drop_reason": ["no_answer", "no_answer", "duplicate"]})
    manifest = {"name": "demo", "version": "v3",
                "funnel": [{"stage": "verify", "rows_in": 42, "rows_out": 39, "dropped": {"no_answer": 3},
                            "seconds": 0.5}],
                "stages": [{"stats": {"contamination": {"aime24": {"checked": 39, "contaminated": 0,
                                                                   "examples": []}}}}]}
    summary = write_report(tmp_path, df, rejected, manifest, AuditConfig())
    audited = audit_frame(df, AuditConfig())
    for flag, count in summary["flag_counts"].items():
        assert count == int(audited["flags"].list.contains(flag).sum()), flag
    assert summary["rows"] == df.height and summary["rejected"]["by_reason"] == {
        "verify / no_answer": 2, "dedup / duplicate": 1}
    assert summary["funnel"][0]["dropped"] == {"no_answer": 3}
    assert summary["contamination"]["aime24"]["checked"] == 39
    assert {g["source"] for g in summary["by_source"]} == {"s0", "s1"}
    assert sum(g["rows"] for g in summary["by_difficulty"]) == df.height
    assert sum(summary["length_histogram"]["all"]) == df.height
    assert summary["examples"]["repetition_loop"][0]["row"] == 30 + list(CASES).index("repetition_loop")
    on_disk = json.loads((tmp_path / "audit" / "summary.json").read_text())
    assert on_disk["flag_counts"] == summary["flag_counts"]

    html = (tmp_path / "audit" / "report.html").read_text()
    assert "<script" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing loaded from elsewhere
    assert html.count("<svg") == 4  # funnel, flags, lengths, pass rate/difficulty
    assert "aime24" in html and "Audit: demo v3" in html


def test_empty_frame_and_missing_optional_columns(tmp_path: Path) -> None:
    only = pl.DataFrame({"reasoning": ["short but fine reasoning here \\boxed{1}"] * 3})
    s = write_report(tmp_path / "a", only, None, None, None)
    assert s["rows"] == 3 and s["correct_rate"] is None and s["by_source"] == []
    empty = pl.DataFrame({"reasoning": pl.Series([], dtype=pl.Utf8)})
    s = write_report(tmp_path / "b", empty, None, None, None)
    assert s["rows"] == 0 and (tmp_path / "b" / "audit" / "report.html").is_file()


def _version_dir(root: Path, df: pl.DataFrame) -> Path:
    v = root / "demo" / "v1"
    (v / "data").mkdir(parents=True)
    df.write_parquet(v / "data" / "train-00000-of-00001.parquet")
    pl.DataFrame({"problem": ["x"], "reasoning": ["r"], "dropped_by": ["verify"], "drop_reason": ["no_answer"]}) \
        .write_parquet(v / "data" / "rejected-00000-of-00001.parquet")
    (v / "manifest.json").write_text(json.dumps({"name": "demo", "version": "v1", "funnel": [
        {"stage": "verify", "rows_in": df.height + 1, "rows_out": df.height, "dropped": {"no_answer": 1}}]}))
    return v


def test_audit_dataset_version_dir_and_files(tmp_path: Path) -> None:
    df = _frame()
    v = _version_dir(tmp_path, df)
    s = audit_dataset(str(v), v)
    assert s["rows"] == df.height and s["rejected"]["rows"] == 1 and s["funnel"][0]["stage"] == "verify"
    assert (v / "audit" / "report.html").is_file()

    f = tmp_path / "traces.jsonl"
    df.rename({"reasoning": "trace", "answer_text": "final"}).write_ndjson(f)
    s2 = audit_dataset(str(f), tmp_path / "out", mapping={"reasoning": "trace", "answer": "final"})
    assert s2["flag_counts"] == s["flag_counts"]
    with pytest.raises(SourceError, match=r"traces\.jsonl: column 'thoughts' \(mapped to reasoning\) not found"):
        audit_dataset(str(f), tmp_path / "out2", mapping={"reasoning": "thoughts"})
    with pytest.raises(SourceError, match=r"traces\.jsonl: column 'reasoning' not found"):
        audit_dataset(str(f), tmp_path / "out3")
    with pytest.raises(SourceError, match="no such file"):
        audit_dataset(str(tmp_path / "nope.parquet"), tmp_path / "out4")


def test_audit_dataset_messages_in_a_local_hf_dataset(tmp_path: Path) -> None:
    import datasets

    def msgs(assistant: str) -> list[dict]:
        return [{"role": "user", "content": "What is 6 * 7?"}, {"role": "assistant", "content": assistant}]

    body = _body(0)
    rows = [msgs(f"<think>\n{body}\n</think>\n\nThe answer is $\\boxed{{42}}$.") for _ in range(5)]
    rows += [msgs(f"{body}\n</think>\n\n$\\boxed{{42}}$"),  # template-prefilled <think>
             msgs(f"<think>\n{body}"),  # unclosed
             msgs("The answer is $\\boxed{42}$.")]  # no think block
    local = tmp_path / "hf"
    datasets.Dataset.from_dict({"messages": rows}).save_to_disk(str(local))
    out = tmp_path / "rep"
    s = audit_dataset(str(local), out, config=AuditConfig(expect_think=True, require_boxed=True))
    assert s["rows"] == 8
    assert s["flag_counts"]["unclosed_think"] == 1 and s["flag_counts"]["truncated"] == 1
    assert s["flag_counts"]["missing_think"] == 1 and s["flag_counts"]["empty_reasoning"] == 1
    assert s["flag_counts"]["no_answer"] == 1 and s["flag_counts"]["no_boxed"] == 1  # the unclosed one

    # the same rows as a folder of jsonl files, loaded by datasets.load_dataset (the hub-id path)
    folder = tmp_path / "plain"
    folder.mkdir()
    pl.DataFrame({"conv": rows}).write_ndjson(folder / "train.jsonl")
    s2 = audit_dataset(str(folder), tmp_path / "rep2", mapping={"messages": "conv"},
                       config=AuditConfig(expect_think=True))
    assert s2["flag_counts"] == s["flag_counts"]


@pytest.mark.skipif(not TRACES.is_file(), reason="shared bench traces absent")
def test_real_qwen_math_traces(tmp_path: Path) -> None:
    """800 real Qwen2.5-Math CoT samples: the three token-soup samples (rows 201, 365, 387) are
    flagged, and few others are."""
    s = audit_dataset(str(TRACES), tmp_path, mapping={"reasoning": "trace", "correct": "is_correct"})
    assert s["rows"] == 800
    # each row is shown once, under its first flag
    soup = {r["row"] for ex in json.loads((tmp_path / "audit" / "summary.json").read_text())["examples"].values() for r in ex}
    assert {201, 365, 387} <= soup
    assert s["flag_counts"]["language_mix"] == 3
    assert s["rows_flagged"] / s["rows"] < 0.03
    assert s["reasoning_tokens_by_correct"]["incorrect"]["p50"] > s["reasoning_tokens_by_correct"]["correct"]["p50"]


def test_reasoning_tokens_with_a_local_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from curate.errors import RecipeError

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "wait": 1, "so": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    df = pl.DataFrame({"reasoning": ["wait so 12 plus 30", "so", None]})
    out = audit_frame(df, AuditConfig(tokenizer=str(tmp_path / "tok")))
    assert out["reasoning_tokens"].to_list() == [5, 1, 0]  # whitespace words, not the regex approximation
    assert out["reflections_per_1k"][0] == pytest.approx(200.0)
    s = write_report(tmp_path / "r", df, None, None, AuditConfig(tokenizer=str(tmp_path / "tok")))
    assert s["token_count_method"] == f"tokenizer:{tmp_path / 'tok'}"
    with pytest.raises(RecipeError, match="audit.tokenizer: cannot load tokenizer"):
        audit_frame(df, AuditConfig(tokenizer=str(tmp_path / "missing")))


def test_language_mix_is_relative_to_the_problem_script() -> None:
    zh_body = "我们先计算 $x^2 + 3x = 10$ 的根，然后代入原式得到结果。" * 10
    df = pl.DataFrame({
        "problem": ["求方程的根。", "求方程的根。", "Find the roots.", "Find the roots."],
        "reasoning": [zh_body + " \\boxed{2}",  # Chinese for a Chinese problem (Latin math is fine)
                      zh_body + " итак ответ равен двум " + " \\boxed{2}",  # Cyrillic slips in
                      "We solve $\\alpha + \\beta = 3$ with Greek letters, then " * 5 + "\\boxed{2}",
                      "We solve it. " * 5 + zh_body[:40] + " \\boxed{2}"],
        "answer_text": ["\\boxed{2}"] * 4,
    })
    out = audit_frame(df, AuditConfig(reflection_markers=["等等", "wait"]))
    assert ["language_mix" in f for f in out["flags"].to_list()] == [False, True, False, True]


def test_benchmark_generator_small_recall_and_precision() -> None:
    """The benchmark's planted defects at a small size: the detectors find them, clean rows stay clean."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "audit.py"
    spec = importlib.util.spec_from_file_location("bench_audit", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    df, planted = bench.generate(1500, 4000, seed=1, plant_rate=0.02)
    flags = audit_frame(df, AuditConfig())["flags"].to_list()
    for name in bench.PLANTS:
        rows = [i for i, f in planted.items() if f == name]
        assert sum(name in flags[i] for i in rows) >= 0.9 * len(rows), name
    clean = [i for i in range(len(flags)) if i not in planted]
    assert sum(bool(flags[i]) for i in clean) <= 0.005 * len(clean)


SOUP = " \\] \\]summertheir口径納大自然 lista(area Banc Mirroroccupation械-heavyراح де Sal rapportız púb<X broader 看他mono " * 40


def _plain_traces(tmp_path: Path, texts: list[str]):
    from curate.sources import TracesSource, load_one

    p = tmp_path / "plain.jsonl"
    p.write_text("".join(json.dumps({"problem": "What is $6 \\cdot 7$?", "gold": "42", "trace": t}) + "\n" for t in texts))
    rows, _, _ = load_one(TracesSource(path=str(p), fields={"gold_answer": "gold"}, trace_field="trace"), tmp_path)
    return rows


def test_plain_cot_traces_through_a_traces_source(tmp_path: Path) -> None:
    ok = "We multiply 6 by 7 step by step.\n\nSix sevens are 42.\n\nTherefore, the answer is \\(\\boxed{42}\\)."
    rows = _plain_traces(tmp_path, [ok] * 20 + [ok + SOUP])
    out = audit_frame(rows)
    flags = out["flags"].to_list()
    assert not any("empty_reasoning" in f for f in flags)  # plain CoT has reasoning
    assert out["reasoning_tokens"].min() > 5
    assert "after_answer" in flags[-1] and all("after_answer" not in f for f in flags[:-1])


@pytest.mark.skipif(not TRACES.is_file(), reason="shared bench traces absent")
def test_real_qwen_math_traces_through_a_traces_source(tmp_path: Path) -> None:
    """Issue 17: through a traces source all 800 rows were empty_reasoning and the three token-soup
    traces (text after the boxed answer) were missed."""
    from curate.sources import TracesSource, load_one

    rows, _, info = load_one(TracesSource(path=str(TRACES), fields={"gold_answer": "gold"}, trace_field="trace"), tmp_path)
    assert info["trace_format"] == "plain"
    out = audit_frame(rows.with_row_index("row"))
    empty = out.filter(pl.col("flags").list.contains("empty_reasoning")).height
    assert empty < 0.02 * out.height
    soup = set(out.filter(pl.col("flags").list.contains("after_answer"))["row"].to_list())
    assert {201, 365, 387} <= soup and len(soup) <= 6
    for f in out["flags"].to_list():
        assert len(f) == len(set(f))


def test_audit_dataset_plain_cot_completions(tmp_path: Path) -> None:
    ok = "We multiply 6 by 7 step by step.\n\nSix sevens are 42.\n\nTherefore, the answer is \\(\\boxed{42}\\)."
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"problem": "What is 6*7?", "out": t}) + "\n" for t in [ok] * 20 + [ok + SOUP]))
    s = audit_dataset(str(p), tmp_path / "rep", mapping={"completion": "out"})
    assert s["flag_counts"].get("empty_reasoning", 0) == 0 and s["flag_counts"]["after_answer"] == 1


def test_report_charts_buckets_examples_once_and_rejected_flags(tmp_path: Path) -> None:
    """Issue 17: correct/incorrect lengths as densities (rarer incorrect rows are not a flat line),
    pass rate and difficulty in separate charts, buckets easy -> hard, a row listed under one flag
    only, and the rejected split audited too."""
    rows = [_clean(i) for i in range(30)]
    for i, r in enumerate(rows):
        r["difficulty_bucket"] = ["hard", "easy", "medium"][i % 3]
        r["difficulty"] = {"easy": 0.1, "medium": 0.5, "hard": 0.9}[r["difficulty_bucket"]]
        r["pass_rate"] = 1 - r["difficulty"]
        r["correct"] = i % 10 != 0  # 3 incorrect of 30
    # one row with three flags
    rows.append({**_clean(200), "finish_reason": "length", "answer_text": "",
                 "reasoning": _body(4) + " and then we add two again so" * 20 + " 所以我们需要计算这个数的平方根然后再加上二"})
    df = pl.DataFrame(rows)
    rejected = pl.DataFrame([{**_clean(300), "reasoning": "  ", "dropped_by": "difficulty", "drop_reason": "incorrect_trace"},
                             {**_clean(301), "dropped_by": "dedup", "drop_reason": "near_duplicate"}])
    s = write_report(tmp_path, df, rejected, None, AuditConfig())
    dens = s["length_histogram"]["density"]
    assert abs(sum(dens["correct"]) - 1) < 1e-9 and abs(sum(dens["incorrect"]) - 1) < 1e-9
    assert [g["difficulty_bucket"] for g in s["by_difficulty"]][:3] == ["easy", "medium", "hard"]
    shown = [e["row"] for ex in s["examples"].values() for e in ex]
    assert len(shown) == len(set(shown)) and 30 in shown
    assert s["rejected"]["flag_counts"] == {"empty_reasoning": 1}
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "Pass rate per problem" in html and "Difficulty per problem" in html and "share of rows" in html
    assert "Flags in rejected rows" in html


def test_audit_stage_in_chunks_equals_one_pass(tmp_path: Path, monkeypatch) -> None:
    from curate.stages.audit import AuditStage

    df = _frame()
    whole = AuditStage(AuditConfig()).run(df, Context.for_test(tmp_path))
    monkeypatch.setattr(AuditStage, "CHUNK", 7)  # the progress bar's chunks: same flags
    chunked = AuditStage(AuditConfig()).run(df, Context.for_test(tmp_path))
    assert chunked["flags"].to_list() == whole["flags"].to_list()
    assert chunked["reasoning_tokens"].to_list() == whole["reasoning_tokens"].to_list()
