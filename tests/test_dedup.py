"""dedup: tokens, datasketch-compatible signatures, LSH clustering, the stage's scope/keep/reasons."""

from __future__ import annotations

import random
import string

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from curate.dedup import MinHashParams, choose_kept, find_duplicates, shingle_set, signatures, tokenize
from curate.dedup.minhash import fold32, lean, make_lsh, signature
from curate.dedup.text import (
    TOKEN_RE,
    batch_shingles,
    batch_token_hashes,
    exact_key,
    jaccard,
    normalize,
    shingle_hashes,
    word_token_hashes,
)
from curate.errors import RecipeError
from curate.registry import get_stage
from curate.stages.base import Context
from curate.stages.dedup import DedupConfig, DedupStage

WORDS = [w for w in "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega".split()]


def doc(rng: random.Random, n: int = 300) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def edit(text: str, rng: random.Random, k: int) -> str:
    w = text.split()
    for i in rng.sample(range(len(w)), k):
        w[i] = "zz" + str(rng.randrange(10**6))
    return " ".join(w)


def test_tokenize_fast_path_matches_regex():
    rng = random.Random(0)
    alphabet = string.printable + "\x00\x1f"
    for _ in range(500):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        assert tokenize(s) == TOKEN_RE.findall(normalize(s))
    assert tokenize("Janet’s ducks: $c$ .") == ["janet", "'", "s", "ducks", ":", "$", "c", "$", "."]
    assert tokenize("x\u2212y — Ünïcode ok") == ["x", "-", "y", "-", "ünïcode", "ok"]
    assert tokenize("The value of $c$.") == tokenize("the  value of $c$ .")


def test_vectorised_token_ids_match_tokens():
    rng = random.Random(5)
    alphabet = string.printable + "\x00\x1c’é—ß漢"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(80))) for _ in range(400)] + ["", None]
    batched = batch_token_hashes(texts, max_bytes=300)
    ids_of: dict[str, int] = {}
    for t, ids in zip(texts, batched):
        toks = tokenize(t)
        assert np.array_equal(ids, word_token_hashes(t)) and len(ids) == len(toks)
        for tok, h in zip(toks, ids.tolist()):
            assert ids_of.setdefault(tok, h) == h  # a token always gets the same id
    assert len(set(ids_of.values())) == len(ids_of)  # and different tokens different ids


@pytest.mark.parametrize("kind,n", [("word", 1), ("word", 2), ("word", 5), ("char", 4)])
def test_batched_shingles_equal_per_text(kind, n):
    rng = random.Random(6)
    texts = ["".join(rng.choice(string.ascii_lowercase + "  .,") for _ in range(rng.randrange(50))) for _ in range(300)]
    texts += ["", None, "a", "a b"]
    flat, off, keys = batch_shingles(texts, n, kind)
    for i, t in enumerate(texts):
        assert np.array_equal(flat[off[i] : off[i + 1]], shingle_hashes(t, n, kind))
        assert keys[i] == exact_key(t)
    assert exact_key("A  b.") == exact_key("a b .") != exact_key("a b")


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_signatures_equal_datasketch(scheme):
    from datasketch import MinHash

    rng = random.Random(1)
    params = MinHashParams(num_perm=64, seed=7, scheme=scheme, ngram=3)
    for text in [doc(rng, 40), "short", ""]:
        hv = fold32(shingle_hashes(text, 3))
        ref = MinHash(num_perm=64, seed=7, scheme=scheme, hashfunc=int)
        ref.update_batch(list(hv))
        assert np.array_equal(signature(hv, params).astype(np.uint64), ref.hashvalues.astype(np.uint64))


def test_lean_minhash_in_datasketch_lsh_and_estimate():
    rng = random.Random(2)
    a = doc(rng)
    b = edit(a, rng, 2)  # Jaccard ~0.94: a sure LSH hit at 0.5
    c = doc(rng)
    params = MinHashParams()
    sigs, keys = signatures([a, b, c], params)
    assert sigs.shape == (3, 128) and sigs.dtype == np.uint32 and len(set(keys.tolist())) == 3
    lsh = make_lsh(0.5, 128)
    lsh.insert("a", lean(sigs[0], params))
    lsh.insert("c", lean(sigs[2], params))
    assert lsh.query(lean(sigs[1], params)) == ["a"]
    true_j = jaccard(shingle_set(a, 5), shingle_set(b, 5))
    assert abs((sigs[0] == sigs[1]).mean() - true_j) < 0.15


def test_parallel_signatures_match_serial():
    rng = random.Random(3)
    texts = [doc(rng, 60) for _ in range(40)]
    p = MinHashParams()
    s1, k1 = signatures(texts, p, num_proc=1)
    s2, k2 = signatures(texts, p, num_proc=2, chunk=7, min_parallel=1)
    assert np.array_equal(s1, s2) and np.array_equal(k1, k2)
    s3, k3 = signatures(pl.Series(texts), p, num_proc=2, chunk=7, min_parallel=1)  # the stage passes a Series
    assert np.array_equal(s1, s3) and np.array_equal(k1, k3)


def test_find_duplicates_exact_near_and_far():
    rng = random.Random(4)
    base = doc(rng)
    texts = [base, doc(rng), base.upper().replace(" ", "  "), edit(base, rng, 4), edit(base, rng, 80), doc(rng)]
    res = find_duplicates(texts, MinHashParams(), 0.8)
    lab = res.labels
    assert lab[0] == lab[2] == lab[3]  # exact (case/space) and near copies
    assert len({lab[0], lab[1], lab[4], lab[5]}) == 4  # heavy edit and unrelated docs stay apart
    assert res.keys[0] == res.keys[2] != res.keys[3]
    pairs = {(int(i), int(j)) for i, j in zip(res.pairs_i, res.pairs_j)}
    assert (0, 3) in pairs and all(s >= 0.8 for s in res.similarity)
    # exact only: the near copy is its own cluster
    lab2 = find_duplicates(texts, MinHashParams(), 0.8, near=False).labels
    assert lab2[0] == lab2[2] and lab2[3] != lab2[0]


def test_choose_kept():
    labels = np.array([0, 1, 0, 2, 1, 0])
    score = np.array([5.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    assert choose_kept(labels, score).tolist() == [2, 1, 2, 3, 1, 2]


def _samples() -> pl.DataFrame:
    base = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell?"
    probs = {
        "p0": base,
        "p1": base.upper(),  # exact duplicate after normalisation
        "p2": base.replace("How many clips did she sell?", "How many clips did Natalia sell?"),  # near duplicate
        "p3": "Weng earns $12 an hour for babysitting. Yesterday she did 50 minutes. How much did she earn?",
    }
    rows = []
    for pid, text in probs.items():
        for s in range(3):
            rows.append(
                {
                    "problem_id": pid,
                    "problem": text,
                    "sample_id": f"{pid}-{s}",
                    "reasoning": f"trace {pid} {s} " + "step " * (5 + 7 * s),
                    "correct": (pid == "p2") or s == 0,
                    "completion_tokens": 10 + 7 * s + (3 if pid == "p1" else 0),
                }
            )
    return pl.DataFrame(rows)


# Real-shaped pairs (MATH-500, GSM8K and the Qwen2.5-Math traces of issue 17): near in word
# 2-grams, but distinct problems with distinct gold answers
FALSE_MERGES = [
    ("Find $\\frac{1}{2}\\left(\\frac{3}{4}\\right)^3$.", "\\frac{27}{128}",
     "Find $\\frac{2}{3} \\left(\\frac{2}{3}\\right)^{2} \\frac{2}{3}$.", "\\frac{16}{81}"),
    ("Zack's locker is half as big as Timothy's locker. Peter's locker is 1/4 as big as Zack's locker. If Peter's "
     "locker is 5 cubic inches, how big is Timothy's locker in cubic inches?", "40",
     "Timothy's locker is 24 cubic inches. Zack's locker is half as big as Timothy's locker. Peter's locker is 1/4 as "
     "big as Zack's locker. How big is Peter's locker in cubic inches?", "3"),
]


@pytest.mark.parametrize("pair", FALSE_MERGES, ids=["math-frac", "gsm8k-locker"])
def test_problems_with_different_answers_or_numbers_are_not_merged(tmp_path, pair):
    a, ga, b, gb = pair
    rows = [{"problem_id": pid, "problem": t, "gold_answer": g, "sample_id": f"{pid}-{k}", "correct": True}
            for pid, t, g in (("a", a, ga), ("b", b, gb)) for k in range(4)]
    df = pl.DataFrame(rows)
    ctx = Context.for_test(tmp_path)
    # the texts are near duplicates by the shingle measure alone ...
    res = find_duplicates([a, b], MinHashParams(ngram=2), 0.3 if "locker" in a else 0.6)
    assert res.labels[0] == res.labels[1]
    # ... but neither their answers nor their numbers agree: both problems and all 8 traces stay
    out = DedupStage(DedupConfig(keep="most_correct", threshold=0.3)).run(df, ctx)
    assert out["drop_reason"].null_count() == 8
    assert ctx.stats["kept_apart"]["different_answers"] == 1
    # without gold answers the numbers still tell them apart
    out = DedupStage(DedupConfig(threshold=0.3)).run(df.drop("gold_answer"), ctx)
    assert out["drop_reason"].null_count() == 8 and ctx.stats["kept_apart"]["different_numbers"] == 1
    # opted in: merged as before
    cfg = DedupConfig(threshold=0.3, merge_different_answers=True, merge_different_numbers=True)
    out = DedupStage(cfg).run(df, ctx)
    assert out["drop_reason"].to_list().count("near_duplicate") == 4


def test_same_answer_written_differently_still_merges(tmp_path):
    base = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell?"
    df = pl.DataFrame({"problem_id": ["a", "b"], "problem": [base, base.replace("she sell?", "Natalia sell?")],
                       "gold_answer": ["72", "72.0"]})
    out = DedupStage(DedupConfig()).run(df, Context.for_test(tmp_path))
    assert out["drop_reason"].to_list() == [None, "near_duplicate"]


def test_stage_problem_scope_takes_all_samples(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert get_stage("dedup") is DedupStage
    df = _samples()
    out = DedupStage(DedupConfig()).run(df, ctx)
    assert out.height == df.height and out.columns[: len(df.columns)] == df.columns
    by = {r["sample_id"]: r for r in out.to_dicts()}
    assert all(by[f"p1-{s}"]["drop_reason"] == "exact_duplicate" for s in range(3))
    assert all(by[f"p2-{s}"]["drop_reason"] == "near_duplicate" for s in range(3))
    assert all(by[f"p0-{s}"]["drop_reason"] is None and by[f"p3-{s}"]["drop_reason"] is None for s in range(3))
    assert by["p2-1"]["duplicate_of"] == "p0" and by["p2-1"]["cluster_id"] == "p0"
    assert by["p0-0"]["duplicate_of"] is None and by["p3-0"]["cluster_id"] == "p3"
    assert ctx.stats["exact_duplicates"] == 1 and ctx.stats["near_duplicates"] == 1 and ctx.stats["rows_dropped"] == 6


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_stage_keep_most_correct(tmp_path, scheme):
    ctx = Context.for_test(tmp_path)
    out = DedupStage(DedupConfig(keep="most_correct", scheme=scheme)).run(_samples(), ctx)
    kept = out.filter(pl.col("drop_reason").is_null())["problem_id"].unique().sort().to_list()
    assert kept == ["p2", "p3"]  # p2 has three correct samples, p0/p1 one each
    assert out.filter(pl.col("problem_id") == "p0")["drop_reason"].to_list() == ["near_duplicate"] * 3
    assert out.filter(pl.col("problem_id") == "p1")["drop_reason"].to_list() == ["near_duplicate"] * 3
    assert set(out.filter(pl.col("problem_id") == "p1")["duplicate_of"].to_list()) == {"p2"}


@pytest.mark.parametrize("keep,expect", [("shortest", 0), ("longest", 2), ("first", 0)])
def test_stage_sample_scope_keep_length(tmp_path, keep, expect):
    # three traces that differ in one appended line are near duplicates of each other
    body = " ".join(f"step{i} we add {i} and {i + 1} to get {2 * i + 1}." for i in range(40))
    df = pl.DataFrame(
        {
            "problem_id": ["p"] * 3 + ["q"],
            "problem": ["P"] * 3 + ["Q"],
            "sample_id": ["s0", "s1", "s2", "s3"],
            "reasoning": [body, body + " check one.", body + " check one. check two, fine.", "something else entirely " * 20],
            "completion_tokens": [100, 105, 110, 80],
        }
    )
    ctx = Context.for_test(tmp_path)
    out = DedupStage(DedupConfig(field="reasoning", keep=keep)).run(df, ctx)
    reasons = out["drop_reason"].to_list()
    assert reasons[3] is None
    assert [r is None for r in reasons[:3]] == [i == expect for i in range(3)]
    assert set(out["cluster_id"].to_list()[:3]) == {f"s{expect}"}


def test_stage_method_exact_and_already_dropped(tmp_path):
    df = _samples().with_columns(
        pl.when(pl.col("problem_id") == "p0").then(pl.lit("truncated")).otherwise(None).alias("drop_reason")
    )
    ctx = Context.for_test(tmp_path)
    out = DedupStage(DedupConfig(method="exact")).run(df, ctx)
    by = {r["sample_id"]: r["drop_reason"] for r in out.to_dicts()}
    assert by["p0-0"] == "truncated"  # an earlier reason is kept; p0 takes no part
    assert by["p1-0"] is None and by["p2-0"] is None  # p1 is first of its exact group now; p2 is near only


def test_config_and_input_errors(tmp_path):
    ctx = Context.for_test(tmp_path)
    df = _samples().drop("correct")
    with pytest.raises(RecipeError, match="'correct'"):
        DedupStage(DedupConfig(keep="most_correct")).run(df, ctx)
    with pytest.raises(RecipeError, match="field 'answer_text'"):
        DedupStage(DedupConfig(field="answer_text")).run(df, ctx)
    with pytest.raises(ValidationError, match="scope: sample"):
        DedupConfig(field="reasoning", scope="problem")
    with pytest.raises(ValidationError):
        DedupConfig(keep="best")
    assert DedupConfig().ngram == 2 and DedupConfig(field="reasoning").ngram == 5
    assert DedupConfig(field="both").scope == "sample"


def test_empty_input(tmp_path):
    df = _samples().head(0)
    out = DedupStage(DedupConfig()).run(df, Context.for_test(tmp_path))
    assert out.height == 0 and "cluster_id" in out.columns


def test_sample_scope_without_unique_ids_and_field_both(tmp_path):
    body = " ".join(f"line {i}: multiply {i} by 3 to get {3 * i}." for i in range(30))
    df = pl.DataFrame({"problem": ["A", "A", "B"], "reasoning": [body, body + " ok.", body]})
    out = DedupStage(DedupConfig(field="reasoning")).run(df, Context.for_test(tmp_path))
    assert out.height == 3 and out["drop_reason"].to_list() == [None, "near_duplicate", "exact_duplicate"]
    assert out["duplicate_of"].to_list() == [None, "0", "0"]  # row positions stand in for missing ids
    out = DedupStage(DedupConfig(field="both")).run(df, Context.for_test(tmp_path))
    assert out["drop_reason"].to_list() == [None, "near_duplicate", "near_duplicate"]  # B: no longer exact
