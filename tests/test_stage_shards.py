"""The shard contract (issue 18) for verify, decontaminate, difficulty, curriculum and select, on real-shaped
frames (synthetic traces loaded by the real ``traces`` source, verified by the real verifier).

* scope "problem" stages: run() on the whole frame == run() on each part of a problem-disjoint split (rows in
  order, same columns), and merge_stats(per-part stats) == the whole frame's stats.
* scope "global" stages: run() on only the columns ``reads`` names (+ ``__rid``; problem-constant strings as
  Categorical) joined back onto the full rows by ``__rid`` == run() on the full frame (rows, columns, stats).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.columns import ROW_ID
from curate.errors import RecipeError
from curate.sources import TracesSource, load_sources
from curate.stages.base import Context
from curate.stages.curriculum import CurriculumConfig, CurriculumStage
from curate.stages.decontaminate import DecontaminateConfig, DecontaminateStage
from curate.stages.dedup import DedupConfig, DedupStage
from curate.stages.difficulty import DifficultyConfig, DifficultyStage
from curate.stages.select import SelectConfig, SelectStage
from curate.stages.verify import VerifyStage, VerifyStageConfig
from support.ray_synth import write_traces

PROBLEM_CONSTANT = ("problem_id", "problem", "gold_answer", "source", "meta")


def _load(tmp: Path, rows: int, seed: int) -> pl.DataFrame:
    path = write_traces(tmp / f"syn{seed}.jsonl", rows=rows, seed=seed)
    src = TracesSource(path=str(path), fields={"problem": "problem", "gold_answer": "answer"},
                       trace_field="generations", teacher="t")
    df, _, _ = load_sources([src], tmp)
    # a subject in meta (select's category: a meta key) and the runner's row id
    subj = pl.col("problem_id").hash(7) % 4
    meta = pl.concat_str([pl.lit('{"subject": "s'), subj.cast(pl.Utf8), pl.lit('"}')])
    return df.with_columns(meta.alias("meta"), pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_ID))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    raw = _load(tmp, 1200, seed=11)
    verified = VerifyStage(VerifyStageConfig(num_proc=0)).run(raw, Context.for_test(tmp, num_proc=1))
    return tmp, raw, verified


def _ctx(tmp: Path) -> Context:
    return Context.for_test(tmp, num_proc=1, seed=5)


def _parts(df: pl.DataFrame, k: int = 3) -> list[pl.DataFrame]:
    """A problem-disjoint split, interleaved in row order (like shards by hash of problem_id)."""
    part = [zlib.crc32(str(p).encode()) % k for p in df["problem_id"].to_list()]
    tagged = df.with_columns(pl.Series("_part", part))
    return [tagged.filter(pl.col("_part") == i).drop("_part") for i in range(k)]


def _check_problem_stage(stage, df: pl.DataFrame, tmp: Path) -> tuple[pl.DataFrame, dict]:
    whole_ctx = _ctx(tmp)
    whole = stage.run(df, whole_ctx)
    whole_stats = stage.merge_stats([whole_ctx.stats])
    outs, stats = [], []
    fresh = tmp / f"parts-{zlib.crc32(repr(stage.config).encode())}"  # its own work dir (caches start cold)
    fresh.mkdir(exist_ok=True)
    for part in _parts(df):
        assert part.height > 0
        c = _ctx(fresh)
        outs.append(stage.run(part, c))
        stats.append(c.stats)
    for part, out in zip(_parts(df), outs):  # each part: exactly its rows of the whole run, in order
        assert_frame_equal(out, whole.filter(pl.col(ROW_ID).is_in(part[ROW_ID].implode())))
    assert_frame_equal(pl.concat(outs).sort(ROW_ID), whole.sort(ROW_ID))
    merged = stage.merge_stats(stats)
    assert merged == whole_stats
    assert "_merge" not in merged
    assert json.loads(json.dumps(merged)) == merged
    return whole, whole_stats


def _narrow(stage, df: pl.DataFrame) -> pl.DataFrame:
    cols = stage.reads(df.columns)
    assert cols is not None and ROW_ID not in cols and len(set(cols)) == len(cols)
    assert set(cols) <= set(df.columns)
    narrow = df.select([*cols, ROW_ID])
    cat = [c for c in PROBLEM_CONSTANT if c in narrow.columns and narrow.schema[c] == pl.Utf8]
    return narrow.with_columns([pl.col(c).cast(pl.Categorical) for c in cat])


def _timeless(x):
    """Stats without wall-clock fields (a sampler's seconds)."""
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if k != "seconds"}
    return x


def _check_global_stage(stage, df: pl.DataFrame, tmp: Path, prepared: pl.DataFrame | None = None,
                        reorders: bool = False) -> pl.DataFrame:
    """``prepared``: the frame after the stage's map_shard (default: ``df`` itself). The narrow rows come
    shard after shard (as the runner reads them), not in the frame's order; ``reorders``: the stage sets
    the row order (curriculum), which must then be the whole run's order."""
    whole_ctx = _ctx(tmp)
    whole = stage.run(df, whole_ctx)
    narrow = pl.concat(_parts(_narrow(stage, df if prepared is None else prepared)))
    (tmp / "narrow").mkdir(exist_ok=True)
    nctx = _ctx(tmp / "narrow")  # its own work dir: a probe or judge is asked afresh
    got = stage.run(narrow, nctx)
    assert ROW_ID in got.columns and got.height == df.height
    assert sorted(got[ROW_ID].to_list()) == sorted(df[ROW_ID].to_list())
    back = got.drop(ROW_ID).columns
    for c in back:  # a problem-constant column handed over as Categorical comes back unchanged
        if got.schema[c] == pl.Categorical:
            assert c in narrow.columns
            assert got[c].cast(pl.Utf8).to_list() == df.join(got.select(ROW_ID), on=ROW_ID, how="right")[c].to_list()
            got = got.with_columns(pl.col(c).cast(df.schema[c]))
    removed = [c for c in narrow.columns if c not in got.columns]  # given and not returned: gone (the runner's rule)
    rest = df.drop([c for c in [*back, *removed] if c in df.columns])
    joined = got.join(rest, on=ROW_ID, how="left", maintain_order="left")
    if not reorders:  # the runner keeps the dataset's order: compare in it
        joined = whole.select(ROW_ID).join(joined, on=ROW_ID, how="left", maintain_order="left")
    assert sorted(joined.columns) == sorted(whole.columns)
    assert_frame_equal(joined.select(whole.columns), whole)
    assert _timeless(nctx.stats) == _timeless(whole_ctx.stats)
    return whole


# ----------------------------------------------------------------------------------------------- verify


@pytest.mark.parametrize("cfg", [dict(), dict(mode="filter", pass_k=[1, 2, 4, 8])])
def test_verify_on_problem_shards_equals_whole(frames, cfg):
    tmp, raw, _ = frames
    stage = VerifyStage(VerifyStageConfig(num_proc=0, **cfg))
    _, stats = _check_problem_stage(stage, raw, tmp)
    assert stats["problems"] == raw["problem_id"].n_unique()
    assert sum(stats["verdicts"].values()) == raw.height
    assert 0 < stats["pass@1"] < stats["pass@4"] <= 1 and "pass@8" not in stats  # 4 samples per problem


def test_verify_merge_of_uneven_parts_recomputes_the_median_and_means(frames):
    """Parts with different samples per problem: pass@k's k <= median rule and the means over all problems."""
    tmp, raw, _ = frames
    pids = raw["problem_id"].unique(maintain_order=True).to_list()
    # drop samples so that problem sizes differ between the parts
    cut = raw.filter(~(pl.col("problem_id").is_in(pids[::3]) & (pl.col("sample_index") >= 1)))
    stage = VerifyStage(VerifyStageConfig(num_proc=0, pass_k=[1, 2, 4]))
    _, stats = _check_problem_stage(stage, cut, tmp)
    assert "pass@4" in stats and stats["mean_samples_per_problem"] < 4


def test_verify_judges_missing_gold_over_all_shards(frames):
    """One shard without any gold answer is no reason to refuse a frame that mostly has them; a frame that
    mostly lacks them is refused (in merge_stats, over every shard) with the one-line recipe error."""
    tmp, raw, _ = frames
    parts = _parts(raw)

    def without_gold(k: int) -> pl.DataFrame:
        gone = pl.concat([p.select(ROW_ID) for p in parts[:k]])[ROW_ID].implode()
        return raw.with_columns(pl.when(pl.col(ROW_ID).is_in(gone)).then(None).otherwise(pl.col("gold_answer"))
                                .alias("gold_answer"))

    stage = VerifyStage(VerifyStageConfig(num_proc=0))
    _, stats = _check_problem_stage(stage, without_gold(1), tmp)
    assert parts[0].height >= stats["verdicts"]["no_gold"] > parts[0].height // 2  # (truncated ones stay truncated)
    most = without_gold(2)
    stats = []
    for part in _parts(most):
        c = _ctx(tmp)
        stage.run(part, c)
        stats.append(c.stats)
    with pytest.raises(RecipeError, match="rows .* have no gold answer"):
        stage.merge_stats(stats)
    with pytest.raises(RecipeError, match="have no gold answer"):  # a frame without __rid: refused in run()
        stage.run(most.drop(ROW_ID), _ctx(tmp))


def test_verify_merge_with_an_empty_shard(frames):
    tmp, raw, _ = frames
    stage = VerifyStage(VerifyStageConfig(num_proc=0))
    stats = []
    for part in [raw.head(0), *_parts(raw.head(200)), raw.head(0)]:
        c = _ctx(tmp)
        stage.run(part, c)
        stats.append(c.stats)
    c = _ctx(tmp)
    stage.run(raw.head(200), c)
    assert stage.merge_stats(stats) == stage.merge_stats([c.stats])


def test_merge_stats_of_one_part_is_that_part(frames, tmp_path):
    tmp, raw, _ = frames
    stage = VerifyStage(VerifyStageConfig(num_proc=0))
    ctx = _ctx(tmp)
    stage.run(raw.head(40), ctx)
    one = stage.merge_stats([ctx.stats])
    assert one == {k: v for k, v in ctx.stats.items() if k != "_merge"}


# ----------------------------------------------------------------------------------------------- decontaminate


def test_decontaminate_on_problem_shards_equals_whole(frames):
    tmp, raw, _ = frames
    probs = raw.unique("problem_id", maintain_order=True)["problem"].to_list()
    bench = tmp / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": p}) + "\n" for p in probs[5:200:9]))
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=[{"name": "b", "path": str(bench)}], max_examples=4))
    _, stats = _check_problem_stage(stage, raw, tmp)
    t = stats["contamination"]["b"]
    assert t["contaminated"] >= 4 * 20 and len(t["examples"]) == 4


def test_decontaminate_examples_of_texts_shared_by_several_shards(frames):
    """answer texts repeat across problems (so across parts): the merged examples are the whole run's first N."""
    tmp, raw, _ = frames
    answers = [a for a in raw["answer_text"].unique(maintain_order=True).to_list() if a and "answer is" in a][:30]
    bench = tmp / "answers.jsonl"
    bench.write_text("".join(json.dumps({"problem": a}) + "\n" for a in answers[::3]))
    other = tmp / "other.jsonl"
    other.write_text("".join(json.dumps({"problem": a}) + "\n" for a in answers[1::2]))
    cfg = DecontaminateConfig(benchmarks=[{"name": "a", "path": str(bench)}, {"name": "o", "path": str(other)}],
                              field="answer_text", ngram=3, min_overlap=1, minhash=False, max_examples=6)
    _, stats = _check_problem_stage(DecontaminateStage(cfg), raw, tmp)
    ex = stats["contamination"]["a"]["examples"]
    assert len(ex) == 6 and len({e["problem"] for e in ex}) == 6


# ----------------------------------------------------------------------------------------------- difficulty

DIFFICULTY = [
    dict(),
    dict(methods=[{"method": "pass_rate", "source": "teacher"}, {"method": "length", "weight": 0.5}],
         max_correct_per_problem=2, prefer="shortest", unsolved="keep", keep_incorrect=True),
    dict(buckets={"edges": [0.3, 0.6]}, min_pass_rate=0.2, max_pass_rate=0.9, window="interval",
         max_correct_per_problem=1, prefer="random", keep_ungraded=False),
]


@pytest.mark.parametrize("cfg", DIFFICULTY)
def test_difficulty_on_its_read_columns_equals_whole(frames, cfg):
    tmp, _, verified = frames
    stage = DifficultyStage(DifficultyConfig(**cfg))
    out = _check_global_stage(stage, verified, tmp)
    assert out["difficulty_bucket"].null_count() < out.height


@pytest.mark.parametrize("cfg", DIFFICULTY[:2])
def test_difficulty_after_map_shard_reads_no_trace_text(frames, cfg):
    """map_shard counts each row's tokens (per shard, all columns); run() then needs no reasoning text."""
    tmp, _, verified = frames
    stage = DifficultyStage(DifficultyConfig(**cfg))
    prepared = pl.concat([stage.map_shard(p, _ctx(tmp)) for p in _parts(verified)]).sort(ROW_ID)
    assert not {"reasoning", "answer_text", "prompt"} & set(stage.reads(prepared.columns))
    _check_global_stage(stage, verified, tmp, prepared=prepared)


@pytest.mark.parametrize("cfg", DIFFICULTY)
def test_difficulty_planned_on_shards_equals_whole_and_plans_over_problems(frames, cfg):
    """The runner's path (issue 18): per shard one row per problem goes to ``plan`` (not a column of every
    row), and each shard gets the whole frame's scores, buckets and filters."""
    from support.planned import run_planned

    tmp, _, verified = frames
    stage = DifficultyStage(DifficultyConfig(**cfg))
    whole_ctx = _ctx(tmp)
    whole = stage.run(verified, whole_ctx)
    parts = [stage.map_shard(p, _ctx(tmp)) for p in _parts(verified)]
    got, stats, sums = run_planned(stage, parts, lambda: _ctx(tmp))
    assert [s["problems"].height for s in sums] == [p["problem_id"].n_unique() for p in parts]
    assert not {"reasoning", "answer_text", "problem", "prompt"} & set(sums[0]["problems"].columns)
    rest = verified.drop([c for c in got.columns if c != ROW_ID and c in verified.columns])
    joined = whole.select(ROW_ID).join(got.join(rest, on=ROW_ID, how="left"), on=ROW_ID, how="left", maintain_order="left")
    assert_frame_equal(joined.select(whole.columns), whole)
    assert stats == whole_ctx.stats


def test_difficulty_over_an_earlier_difficulty_run(frames):
    """Columns an earlier difficulty stage left (judge_score, the buckets) are replaced or removed alike."""
    tmp, _, verified = frames
    again = DifficultyStage(DifficultyConfig()).run(verified, _ctx(tmp)).with_columns(pl.lit(6.0).alias("judge_score"))
    _check_global_stage(DifficultyStage(DifficultyConfig(buckets={"n": 4})), again.drop("drop_reason"), tmp)


def test_difficulty_reads_only_what_its_config_needs(frames):
    _, _, verified = frames
    cols = verified.columns
    plain = DifficultyStage(DifficultyConfig()).reads(cols)
    assert "problem" not in plain and "prompt" not in plain and "gold_answer" not in plain
    assert {"problem_id", "correct", "verdict", "finish_reason", "completion_tokens"} <= set(plain)
    assert "sample_id" not in plain and "sample_id" in DifficultyStage(DifficultyConfig(max_correct_per_problem=1)).reads(cols)
    resample = DifficultyStage(DifficultyConfig(unsolved="resample")).reads(cols)
    assert {"problem", "gold_answer", "source", "meta"} <= set(resample) and "prompt" not in resample


def test_difficulty_probe_and_judge_on_a_narrow_frame(frames):
    """The probe and the judge sample from the narrow frame's problems (Categorical text) through the real
    openai client against the loopback server; same rows, columns and stats as on the full frame."""
    pytest.importorskip("aiohttp")
    from curate.testing.openai_server import OpenAIServer, Reply

    tmp, _, verified = frames
    few = verified.filter(pl.col("problem_id").is_in(verified["problem_id"].unique(maintain_order=True).head(12).implode()))
    gold = dict(zip(few["problem"].to_list(), few["gold_answer"].to_list()))

    def script(messages, params, index):
        problem = next(p for p in gold if p in messages[-1]["content"])
        h = zlib.crc32(problem.encode())
        if params["model"] == "judge":
            return Reply(content=f"Difficulty: {1 + h % 10}")
        return Reply(content=f"\\boxed{{{gold[problem] if index < h % 4 else 'wrong'}}}")

    with OpenAIServer(script=script, latency=0.0) as srv:
        def model(name: str) -> dict:
            return {"teacher": {"backend": "openai", "model": name, "base_url": srv.base_url, "max_retries": 0,
                                "api_key_env": "CURATE_TEST_NO_KEY"}, "n": 4, "max_tokens": 64}

        cfg = DifficultyConfig(methods=[{"method": "pass_rate", "source": "probe"}, {"method": "judge"},
                                        {"method": "pass_rate", "source": "teacher"}],
                               probe=model("probe"), judge=model("judge"), unsolved="keep")
        stage = DifficultyStage(cfg)
        assert {"problem", "gold_answer"} <= set(stage.reads(few.columns))
        out = _check_global_stage(stage, few, tmp / "llm")
    assert out["judge_score"].null_count() == 0 and out["n_samples"].min() == 4


# ----------------------------------------------------------------------------------------------- curriculum / select


@pytest.fixture(scope="module")
def rated(frames):
    tmp, _, verified = frames
    return DifficultyStage(DifficultyConfig(keep_incorrect=True, unsolved="keep")).run(verified, _ctx(tmp))


@pytest.mark.parametrize("cfg", [dict(), dict(order="hard_to_easy"), dict(order="staged"), dict(order="staged", stages=4),
                                 dict(order="interleaved", ratio=[1, 2, 1]), dict(order="random", seed=3)])
def test_curriculum_on_its_read_columns_equals_whole(frames, rated, cfg):
    tmp = frames[0]
    stage = CurriculumStage(CurriculumConfig(**cfg))
    assert not {"reasoning", "problem", "prompt", "answer_text"} & set(stage.reads(rated.columns))
    out = _check_global_stage(stage, rated, tmp, reorders=True)
    assert out["curriculum_rank"].to_list() == list(range(out.height))


@pytest.mark.parametrize("order", ["easy_to_hard", "hard_to_easy"])
@pytest.mark.parametrize("bucket", [True, False])
def test_curriculum_planned_on_shards_gives_the_order_of_the_whole_sort(frames, rated, order, bucket, monkeypatch):
    """The runner's path (issue 18): per shard one row per problem goes to ``plan``; each shard's rows get
    their stage, rank and ``__pos``, which are exactly the whole frame's sort (rows, order and stats)."""
    from support.planned import run_planned

    from curate.columns import ROW_POS

    tmp = frames[0]
    df = rated if bucket else rated.drop("difficulty_bucket")
    stage = CurriculumStage(CurriculumConfig(order=order))
    assert stage.planned()
    sorted_ctx = _ctx(tmp)
    monkeypatch.setattr(CurriculumStage, "planned", lambda self: False)
    whole = stage.run(df, sorted_ctx)  # the sort over every row
    monkeypatch.undo()
    planned_ctx = _ctx(tmp)
    assert_frame_equal(stage.run(df, planned_ctx), whole)
    assert planned_ctx.stats == sorted_ctx.stats
    got, stats, sums = run_planned(stage, _parts(df), lambda: _ctx(tmp))
    assert [s.height for s in sums] == [p["problem_id"].n_unique() for p in _parts(df)]
    assert sorted(got[ROW_POS].to_list()) == list(range(df.height))
    got = got.sort(ROW_POS)
    assert got[ROW_ID].to_list() == whole[ROW_ID].to_list()
    assert got["curriculum_rank"].to_list() == whole["curriculum_rank"].to_list()
    assert got["curriculum_stage"].to_list() == whole["curriculum_stage"].to_list()
    assert stats == sorted_ctx.stats


@pytest.mark.parametrize("cfg", [dict(n=40), dict(n=25, category="subject", spread="proportional"),
                                 dict(n=90, unit="rows", category="source"), dict(n=30, by="pass_rate", strength=0)])
def test_select_on_its_read_columns_equals_whole(frames, rated, cfg):
    tmp = frames[0]
    stage = SelectStage(SelectConfig(**cfg))
    assert not {"reasoning", "problem", "prompt", "answer_text"} & set(stage.reads(rated.columns))
    out = _check_global_stage(stage, rated, tmp)
    assert 0 < out.filter(pl.col("drop_reason").is_null()).height < out.height


# ----------------------------------------------------------------------------------------------- dedup


@pytest.mark.parametrize("cfg", [dict(), dict(keep="most_correct", threshold=0.5), dict(method="exact"),
                                 dict(merge_different_answers=True, merge_different_numbers=True, keep="shortest")])
def test_dedup_by_problem_planned_on_shards_equals_whole(frames, cfg):
    """By problem, the runner's path (issue 18): per shard one row per live problem (its text, not its
    samples) goes to ``plan``; each shard's rows get the whole run's clusters and drops."""
    from support.planned import run_planned

    tmp, _, verified = frames
    # some problems re-asked under another id (exact) or with a word changed (near)
    ids = verified["problem_id"].unique(maintain_order=True).to_list()
    text = dict(zip(verified["problem_id"].to_list(), verified["problem"].to_list()))
    copy = {ids[i]: text[ids[i + 1]] + (" again" if i % 4 == 0 else "") for i in range(0, 40, 2)}
    df = verified.with_columns(pl.col("problem_id").replace_strict(copy, default=pl.col("problem")).alias("problem"))
    stage = DedupStage(DedupConfig(**cfg))
    assert stage.planned()
    whole_ctx = _ctx(tmp)
    whole = stage.run(df, whole_ctx)
    got, stats, sums = run_planned(stage, _parts(df), lambda: _ctx(tmp))
    assert [s.height for s in sums] == [p["problem_id"].n_unique() for p in _parts(df)]
    assert not {"reasoning", "answer_text", "prompt"} & {c for s in sums for c in s.columns}
    rest = df.drop([c for c in got.columns if c != ROW_ID and c in df.columns])
    joined = whole.select(ROW_ID).join(got.join(rest, on=ROW_ID, how="left"), on=ROW_ID, how="left", maintain_order="left")
    assert_frame_equal(joined.select(whole.columns), whole)
    assert stats == whole_ctx.stats
    assert stats["exact_duplicates"] > 0 and stats["rows_dropped"] > 0


def test_dedup_by_sample_is_not_planned():
    assert not DedupStage(DedupConfig(scope="sample", field="reasoning")).planned()
