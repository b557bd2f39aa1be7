"""decontaminate: n-gram + MinHash matches, the contamination table, sources, cache, errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from curate.errors import SourceError
from curate.registry import get_stage
from curate.stages.base import Context
from curate.stages.decontaminate import DecontaminateConfig, DecontaminateStage

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench" / "dedup"

BENCH_ROWS = [
    {"question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
     "for her friends every day with four. How much does she make every day at the farmers' market?", "answer": "18"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
     "answer": "3"},
    {"question": "Toula went to the bakery and bought various types of pastries. She bought 3 dozen donuts which "
     "cost $68 per dozen, 2 dozen mini cupcakes which cost $80 per dozen. How much was the total cost?", "answer": "694"},
]
COPY = "janet's ducks lay 16 eggs per day.  She eats three for breakfast every morning and bakes muffins, what then?"
LIGHT_EDIT = ("Toula visited the bakery and purchased several kinds of pastries. She purchased 3 dozen donuts costing "
              "$68 each dozen, 2 dozen mini cupcakes costing $80 each dozen. What was the total cost?")
CLEAN = "How many positive divisors does 36 have? Count them carefully and explain."


def frame() -> pl.DataFrame:
    probs = [COPY, LIGHT_EDIT, CLEAN]
    return pl.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(3) for _ in range(2)],
            "sample_id": [f"p{i}-{s}" for i in range(3) for s in range(2)],
            "problem": [p for p in probs for _ in range(2)],
        }
    )


def write(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    p = tmp_path / name
    if name.endswith(".jsonl"):
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        df = pl.DataFrame(rows)
        df.write_parquet(p) if name.endswith(".parquet") else df.write_csv(p)
    return p


def test_ngram_and_minhash_matches_table_and_reasons(tmp_path):
    write(tmp_path, "gsm.jsonl", BENCH_ROWS)
    ctx = Context.for_test(tmp_path)
    assert get_stage("decontaminate") is DecontaminateStage
    cfg = DecontaminateConfig(benchmarks=[{"name": "gsm8k", "path": "gsm.jsonl", "field": "question"}])
    out = DecontaminateStage(cfg).run(frame(), ctx)
    assert out.height == 6
    assert out["drop_reason"].to_list() == ["contaminated:gsm8k"] * 4 + [None, None]
    t = ctx.stats["contamination"]["gsm8k"]
    assert t["checked"] == 6 and t["contaminated"] == 4
    assert t["method_counts"] == {"ngram": 2, "minhash": 2}
    ex = {e["method"]: e for e in t["examples"]}
    assert ex["ngram"]["matched"] == "janet s ducks lay 16 eggs per day"  # words and numbers only
    assert ex["ngram"]["benchmark_index"] == 0 and ex["ngram"]["problem"] == COPY
    assert ex["minhash"]["matched"].startswith("(MinHash") and 0.5 <= ex["minhash"]["similarity"] < 1.0
    assert ex["minhash"]["benchmark_index"] == 2
    assert set(ex["ngram"]) == {"problem", "benchmark_index", "matched", "method", "similarity", "score"}
    # the benchmark's own text never goes to the stats (manifest, card); the row's text is cut short
    stats = json.dumps(ctx.stats)
    assert "Toula went to the bakery" not in stats and "She eats three for breakfast every morning and bakes muffins for" not in stats
    assert len(ex["minhash"]["problem"]) <= 120 and LIGHT_EDIT.startswith(ex["minhash"]["problem"].rstrip("…"))
    # n-gram only: the light edit shares no 8-gram and stays
    out2 = DecontaminateStage(DecontaminateConfig(benchmarks=cfg.benchmarks, minhash=False)).run(frame(), ctx)
    assert out2["drop_reason"].to_list() == ["contaminated:gsm8k"] * 2 + [None] * 4


@pytest.mark.parametrize("name", ["b.parquet", "b.csv"])
def test_local_parquet_csv_and_index_cache(tmp_path, name):
    write(tmp_path, name, BENCH_ROWS)
    cfg = DecontaminateConfig(benchmarks=[{"path": name, "field": "question"}], minhash=False)
    ctx = Context.for_test(tmp_path)
    DecontaminateStage(cfg).run(frame(), ctx)
    assert ctx.stats["index_cached"] == {"b": False}
    files = list((ctx.work_dir / "decontam_index").glob("*.npz"))
    assert len(files) == 1
    out = DecontaminateStage(cfg).run(frame(), ctx)
    assert ctx.stats["index_cached"] == {"b": True}
    assert out["drop_reason"].to_list()[:2] == ["contaminated:b"] * 2
    # other content -> another key
    write(tmp_path, name, BENCH_ROWS[1:])
    DecontaminateStage(cfg).run(frame(), ctx)
    assert ctx.stats["index_cached"] == {"b": False} and ctx.stats["contamination"]["b"]["contaminated"] == 0


def test_hub_path_with_local_dataset_dir(tmp_path):
    d = tmp_path / "hubcopy"
    d.mkdir()
    write(d, "test.jsonl", BENCH_ROWS)  # datasets infers the split 'test' from the file name
    cfg = DecontaminateConfig(benchmarks=[{"name": "gsm", "hub": str(d), "split": "test", "field": "question"}])
    ctx = Context.for_test(tmp_path)
    out = DecontaminateStage(cfg).run(frame(), ctx)
    assert out["drop_reason"].to_list().count("contaminated:gsm") == 4
    assert ctx.stats["contamination"]["gsm"]["benchmark_rows"] == 3


def test_benchmark_index_counts_rows_with_empty_text(tmp_path):
    write(tmp_path, "gsm.jsonl", [{"question": ""}, {"question": None}] + BENCH_ROWS)
    cfg = DecontaminateConfig(benchmarks=[{"name": "gsm8k", "path": "gsm.jsonl", "field": "question"}])
    ctx = Context.for_test(tmp_path)
    DecontaminateStage(cfg).run(frame(), ctx)
    t = ctx.stats["contamination"]["gsm8k"]
    assert t["benchmark_rows"] == 3
    assert sorted(e["benchmark_index"] for e in t["examples"]) == [2, 4]  # rows of the file, empties counted


def test_fingerprint_follows_benchmark_content_and_hub_coordinates(tmp_path):
    write(tmp_path, "gsm.jsonl", BENCH_ROWS)
    ctx = Context.for_test(tmp_path)
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=[{"path": "gsm.jsonl", "field": "question"}]))
    f1 = stage.fingerprint(ctx)
    assert f1 == stage.fingerprint(ctx) and len(f1) == 64
    write(tmp_path, "gsm.jsonl", BENCH_ROWS[1:])
    assert stage.fingerprint(ctx) != f1
    (tmp_path / "gsm.jsonl").unlink()
    assert stage.fingerprint(ctx) not in (None, f1)  # no error here: run() reports the missing file

    def hub(**kw):
        return DecontaminateStage(DecontaminateConfig(benchmarks=[{"hub": "org/set", **kw}])).fingerprint(ctx)

    assert hub(revision="a") != hub(revision="b") != hub() and hub(split="dev") != hub()
    assert hub() == hub(split="test")  # the default split, spelled out, is the same set
    assert DecontaminateStage(DecontaminateConfig(benchmarks=["gsm8k"])).fingerprint(ctx) != hub()
    # a local folder given as hub: its files count
    d = tmp_path / "hubcopy"
    d.mkdir()
    write(d, "test.jsonl", BENCH_ROWS)
    local = DecontaminateStage(DecontaminateConfig(benchmarks=[{"name": "g", "hub": "hubcopy", "field": "question"}]))
    f2 = local.fingerprint(ctx)
    write(d, "test.jsonl", BENCH_ROWS[:1])
    assert local.fingerprint(ctx) != f2


def test_edited_benchmark_file_reruns_the_stage(tmp_path, monkeypatch):
    from curate.recipe import load_recipe
    from curate.runner import execute

    monkeypatch.setenv("CURATE_HOME", str(tmp_path / ".curate"))
    (tmp_path / "probs.jsonl").write_text(
        "".join(json.dumps({"problem": p, "answer": str(i)}) + "\n" for i, p in enumerate([COPY, LIGHT_EDIT, CLEAN]))
    )
    write(tmp_path, "bench.jsonl", BENCH_ROWS[1:2])  # the robe only: nothing contaminated yet
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: decontam-cache\nversion: 0.1.0\nlicense: mit\n"
        "sources:\n  - kind: file\n    path: probs.jsonl\n    fields: {problem: problem, gold_answer: answer}\n"
        "stages:\n  - type: decontaminate\n    benchmarks: [{name: gsm8k, path: bench.jsonl, field: question}]\n"
        "    minhash: false\n"
        "output:\n  dir: out\n"
    )
    r1 = execute(load_recipe(recipe))
    assert r1.executed[-1] == "decontaminate" and r1.rejected.height == 0
    r2 = execute(load_recipe(recipe))  # nothing changed: served from the cache
    assert r2.records[-1].cached and "decontaminate" not in r2.executed
    write(tmp_path, "bench.jsonl", BENCH_ROWS)  # Janet's ducks joins the benchmark
    r3 = execute(load_recipe(recipe))
    assert not r3.records[-1].cached and r3.executed[-1] == "decontaminate"
    assert r3.rejected["drop_reason"].to_list() == ["contaminated:gsm8k"]
    assert r3.rejected["problem"].to_list() == [COPY] and r3.train.height == 2
    assert r3.records[-1].cache_key != r1.records[-1].cache_key


def test_hub_failure_is_one_line_source_error(tmp_path, monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = DecontaminateConfig(benchmarks=["gsm8k"])
    with pytest.raises(SourceError) as e:
        DecontaminateStage(cfg).run(frame(), Context.for_test(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "'gsm8k'" in msg and "openai/gsm8k" in msg and "path:" in msg


def test_bad_inputs(tmp_path):
    ctx = Context.for_test(tmp_path)
    write(tmp_path, "b.jsonl", BENCH_ROWS)
    with pytest.raises(SourceError, match=r"b\.jsonl.*field 'problem' not found"):
        DecontaminateStage(DecontaminateConfig(benchmarks=[{"path": "b.jsonl"}])).run(frame(), ctx)
    with pytest.raises(SourceError, match="does not exist"):
        DecontaminateStage(DecontaminateConfig(benchmarks=[{"path": "nope.jsonl"}])).run(frame(), ctx)
    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\n{not json\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2"):
        DecontaminateStage(DecontaminateConfig(benchmarks=[{"path": "bad.jsonl", "field": "question"}])).run(frame(), ctx)
    with pytest.raises(ValidationError, match="unknown benchmark preset"):
        DecontaminateConfig(benchmarks=["gsm9k"])
    assert DecontaminateConfig(benchmarks="data/t.jsonl").benchmarks[0].path == "data/t.jsonl"
    with pytest.raises(ValidationError, match="exactly one of"):
        DecontaminateConfig(benchmarks=[{"path": "a.jsonl", "hub": "x/y"}])
    with pytest.raises(ValidationError, match="unique"):
        DecontaminateConfig(benchmarks=[{"path": "a.jsonl"}, {"path": "other/a.jsonl"}])


def test_quickstart_planted_faults_caught(tmp_path):
    from curate.stages.dedup import DedupConfig, DedupStage

    data = ROOT / "recipes" / "data"
    rows = []
    for i, line in enumerate((data / "quickstart_traces.jsonl").read_text().splitlines()):
        r = json.loads(line)
        rows += [{"problem_id": f"q{i}", "sample_id": f"q{i}-{k}", "problem": r["problem"]} for k in range(len(r["generations"]))]
    df = pl.DataFrame(rows)
    ctx = Context.for_test(tmp_path)
    ctx.base_dir = data
    out = DedupStage(DedupConfig()).run(df, ctx)
    dropped = out.filter(pl.col("drop_reason").is_not_null()).unique("problem_id", maintain_order=True)
    assert sorted(dropped["drop_reason"].to_list()) == ["exact_duplicate", "exact_duplicate", "near_duplicate"]
    cfg = DecontaminateConfig(benchmarks=[{"name": "gsm8k", "path": "benchmarks/gsm8k_test_excerpt.jsonl", "field": "question"}])
    out = DecontaminateStage(cfg).run(df, ctx)
    hit = out.filter(pl.col("drop_reason") == "contaminated:gsm8k")["problem"].unique().to_list()
    assert len(hit) == 1 and hit[0].startswith("Janet")


# MATH-style problems (LaTeX, Asymptote) against AIME-style benchmark rows: before issue 17 every
# symbol was a token, so runs such as "\\frac { 1 } { 2 }" or "draw ( ( 0 ," were shared 8-grams
AIME_ROWS = [
    {"problem": "Let $f(x) = \\frac{1}{2}x^2 + \\frac{1}{2}$ and $g(x) = \\frac{1}{2}(x+1)$. The probability is "
                "$\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive integers. Find $m+n$."},
    {"problem": "A bag has $\\frac{1}{2}$ red balls. [asy] draw((0,0)--(1,0)--(1,1)--(0,1)--cycle); "
                "label(\"$A$\",(0,0),SW); [/asy] The answer is $\\frac{m}{n}$, where $m$ and $n$ are relatively "
                "prime positive integers. Find $m+n$."},
    {"problem": "Jen enters a lottery by picking $4$ distinct numbers from $S=\\{1,2,3,\\cdots,9,10\\}.$ The "
                "probability of her winning the grand prize given that she won a prize is $\\tfrac{m}{n}$ where $m$ "
                "and $n$ are relatively prime positive integers. Find $m+n$."},
]
MATH_ROWS = [
    # shares only LaTeX runs and a drawing with the first two rows
    "If $f(x) = \\frac{1}{2}x^2 + \\frac{1}{2}$, what is $f(3)$? [asy] draw((0,0)--(1,0)--(1,1)--(0,1)--cycle); "
    "label(\"$A$\",(0,0),SW); [/asy]",
    # shares only the stock phrase that three benchmark rows repeat
    "Two dice are rolled. The probability of a sum of 7 is $\\frac{m}{n}$, where $m$ and $n$ are relatively "
    "prime positive integers. Find $m+n$.",
    # the third benchmark row re-typeset (other LaTeX spacing, \\frac instead of \\tfrac): contaminated
    "Jen enters a lottery by picking 4 distinct numbers from $S = \\{ 1, 2, 3, \\ldots, 9, 10 \\}$. The "
    "probability of her winning the grand prize given that she won a prize is $\\frac{m}{n}$ where $m$ and "
    "$n$ are relatively prime positive integers. Find $m + n$.",
]


def test_latex_punctuation_and_stock_phrases_are_not_evidence(tmp_path):
    write(tmp_path, "aime.jsonl", AIME_ROWS)
    ctx = Context.for_test(tmp_path)
    cfg = DecontaminateConfig(benchmarks=[{"name": "aime", "path": "aime.jsonl"}], minhash=False)
    out = DecontaminateStage(cfg).run(pl.DataFrame({"problem": MATH_ROWS}), ctx)
    assert out["drop_reason"].to_list() == [None, None, "contaminated:aime"]
    ex = ctx.stats["contamination"]["aime"]["examples"][0]
    assert ex["benchmark_index"] == 2 and ex["score"] >= 2
    assert all(c.isalnum() or c == " " for c in ex["matched"])  # words and numbers only
    # open-r1's rule (any shared n-gram, uniform weight) is min_overlap 1 on distinct texts
    from curate.dedup.contamination import contam_tokens

    assert contam_tokens("$f(x) = \\frac{1}{2}$ [asy]draw((0,0)--(1,1));[/asy] Find $m+n$.") == \
        ["f", "x", "1", "2", "find", "m", "n"]


def test_per_benchmark_counts_add_up_to_the_funnel(tmp_path):
    write(tmp_path, "a.jsonl", BENCH_ROWS)
    write(tmp_path, "b.jsonl", BENCH_ROWS[:1])  # Janet's ducks is in both sets
    ctx = Context.for_test(tmp_path)
    cfg = DecontaminateConfig(benchmarks=[{"name": "a", "path": "a.jsonl", "field": "question"},
                                          {"name": "b", "path": "b.jsonl", "field": "question"}])
    out = DecontaminateStage(cfg).run(frame(), ctx)
    dropped = out["drop_reason"].drop_nulls()
    t = ctx.stats["contamination"]
    # the table's "contaminated" is what each benchmark dropped: it sums to the funnel's drops
    assert {k: v["contaminated"] for k, v in t.items()} == {"a": dropped.to_list().count("contaminated:a"),
                                                            "b": dropped.to_list().count("contaminated:b")}
    assert t["a"]["contaminated"] + t["b"]["contaminated"] == dropped.len() == ctx.stats["rows_contaminated"]
    assert t["b"]["contaminated"] == 0 and t["b"]["matched"] == 2  # matched b, dropped for a


BENCH_PROBLEMS = ROOT.parent / "shared" / "bench" / "problems"


@pytest.mark.skipif(not BENCH_PROBLEMS.exists(), reason="../shared/bench absent")
def test_math500_is_not_contaminated_by_aime_amc_minerva(tmp_path):
    """Disjoint sets: open-r1's 8-gram rule flags 3/500 MATH-500 problems (stock phrases), the
    symbol tokenisation of issue 17 flagged 121; the words-and-numbers rule stays in that range."""
    def rows(name, field="problem"):
        return [json.loads(x)[field] for x in (BENCH_PROBLEMS / name).open()]

    benches = [{"name": n, "path": str(BENCH_PROBLEMS / f)} for n, f in
               [("aime24", "aime24_nemoskills.jsonl"), ("aime25", "aime25_nemoskills.jsonl"),
                ("amc23", "amc23_qwen25math.jsonl"), ("minerva", "minerva_math_qwen25math.jsonl")]]
    m500, gsm = rows("math500_test.jsonl"), rows("gsm8k_test.jsonl", "question")
    ctx = Context.for_test(tmp_path)
    out = DecontaminateStage(DecontaminateConfig(benchmarks=benches)).run(
        pl.DataFrame({"problem": m500 + gsm, "set": ["m"] * len(m500) + ["g"] * len(gsm)}), ctx)
    flagged = out.filter(pl.col("drop_reason").is_not_null())
    assert flagged.filter(pl.col("set") == "m").height <= 5
    assert flagged.filter(pl.col("set") == "g").height == 0


@pytest.mark.skipif(not BENCH.exists(), reason="../shared/bench absent")
def test_lexical_confirmed_pairs_caught(tmp_path):
    """33 MATH-500 / training pairs a person confirmed. 8-gram overlap of words and numbers catches
    the copies and the shared-sentence templates; the misses are vector templates whose only shared
    text is LaTeX (pmatrix) structure with other numbers, which this rule does not count as evidence."""
    lex = [json.loads(x) for x in (BENCH / "math500_train_lexical_contamination_confirmed.jsonl").open()]
    write(tmp_path, "m500.jsonl", [{"problem": r["text1"]} for r in lex])
    ctx = Context.for_test(tmp_path)
    cfg = DecontaminateConfig(benchmarks=[{"name": "math500", "path": "m500.jsonl"}], minhash=False)
    out = DecontaminateStage(cfg).run(pl.DataFrame({"problem": [r["text2"] for r in lex]}), ctx)
    caught = out["drop_reason"].is_not_null().to_list()
    assert sum(caught) >= 24
    for r, c in zip(lex, caught):
        if r["contamination_reason"] == "identical":
            assert c
        if not c:
            assert r["contamination_reason"] == "template_variant"
