"""Sources streamed into parquet shards: the shards, sorted by __rid, are load_sources' rows exactly
(every kind of source, several shards and chunks), problems never straddle shards, and the rejected
rows and infos are load_sources' own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.columns import ROW_ID
from curate.errors import SourceError
from curate.source_shards import shard_of, shard_path, write_source_shards
from curate.sources import FileSource, TracesSource, load_sources


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _shards_equal_load_sources(configs, base: Path, out: Path, *, limit=None, shard_rows=3, chunk_rows=2):
    want, want_bad, want_infos = load_sources(configs, base, limit)
    res = write_source_shards(configs, base, limit, out, shard_rows, chunk_rows=chunk_rows)
    files = sorted(out.glob("part-*.parquet"))
    assert [f.name for f in files] == [shard_path(out, i).name for i in range(res.n_shards)]
    parts = [pl.read_parquet(f) for f in files]
    expect = want.with_row_index(ROW_ID).with_columns(pl.col(ROW_ID).cast(pl.Int64))
    assert_frame_equal(pl.concat(parts).sort(ROW_ID), expect)
    owners: dict[str, int] = {}
    for i, part in enumerate(parts):
        assert part[ROW_ID].is_sorted()
        assert part.columns == res.columns == expect.columns
        if part.height:
            assert set(shard_of(part["problem_id"], res.n_shards).to_list()) == {i}
        for pid in part["problem_id"].unique().to_list():
            assert owners.setdefault(pid, i) == i, "a problem straddles two shards"
    assert res.rows == want.height
    assert_frame_equal(res.sample, expect.head(10_000))
    assert res.infos == want_infos
    assert_frame_equal(res.bad, want_bad)
    return res, want


def _traces_rows(n: int, per: int, *, think: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        gens = [(f"<think>try {j} of {i}</think>The answer is \\boxed{{{i + j % 2}}}" if think
                 else f"Work {j}.\n\nSo \\boxed{{{i}}}") for j in range(per)]
        rows.append({"problem": f"Problem {i % (n - 2)}: what is {i % (n - 2)}?", "answer": str(i),
                     "generations": gens, "model": f"m{i % 3}", "subject": ["a", "b"][i % 2]})
    return rows


def test_problem_files_of_every_format_with_globs_duplicates_and_bad_rows(tmp_path):
    rows = [{"question": f"Q{i}?", "answer": f"#### {i}", "subject": "s" if i % 2 else None} for i in range(9)]
    rows[3]["question"] = "  "
    rows[6]["question"] = "q1?"  # the same problem as row 1 once normalised
    _jsonl(tmp_path / "a-0.jsonl", rows[:5])
    _jsonl(tmp_path / "a-1.jsonl", [{**r, "answer": i} for i, r in enumerate(rows[5:])])  # int answers here
    pl.DataFrame(rows).write_parquet(tmp_path / "p.parquet", row_group_size=2)
    pl.DataFrame(rows).write_csv(tmp_path / "c.csv")
    (tmp_path / "j.json").write_text(json.dumps(rows))
    m = {"fields": {"problem": "question", "gold_answer": "answer"}, "meta_fields": ["subject"]}
    configs = [
        FileSource(path="a-*.jsonl", answer_extractor="gsm8k", **m),
        FileSource(path="p.parquet", name="pq", **m),
        FileSource(path="c.csv", name="csv", limit=7, **m),
        FileSource(path=["j.json"], name="js", **m),
    ]
    res, want = _shards_equal_load_sources(configs, tmp_path, tmp_path / "out")
    assert res.n_shards > 1 and want.height == 7  # 9 problems, one empty, one repeated
    assert set(res.bad["drop_reason"].to_list()) == {"empty_problem", "duplicate_problem"}


def test_traces_sources_mixed_with_problems_renumber_across_sources_and_chunks(tmp_path):
    rows = _traces_rows(12, 3)
    pl.DataFrame(rows).write_parquet(tmp_path / "t.parquet", row_group_size=5)
    single = [{"problem": r["problem"], "trace": g, "model": r["model"]} for r in rows[:6] for g in r["generations"]]
    _jsonl(tmp_path / "u.jsonl", single)
    _jsonl(tmp_path / "probs.jsonl", [{"problem": rows[0]["problem"]}, {"problem": "Fresh?"}, {"problem": "fresh?"}])
    configs = [
        FileSource(path="probs.jsonl"),
        TracesSource(path="t.parquet", fields={"gold_answer": "answer"}, trace_field="generations",
                     teacher_field="model", meta_fields=["subject"]),
        TracesSource(path="u.jsonl", trace_field="trace", teacher="r1", limit=10),
    ]
    res, want = _shards_equal_load_sources(configs, tmp_path, tmp_path / "out", shard_rows=7, chunk_rows=4)
    assert res.n_shards > 2
    # the traces of one problem are numbered once over both traces sources (repeats of a problem
    # across the two sources continue the count)
    traces = want.filter(pl.col("sample_id").is_not_null())
    counts = traces.group_by("problem_id").agg(pl.col("sample_index").sort())
    assert all(v == list(range(len(v))) for v in counts["sample_index"].to_list())
    assert traces["sample_id"].n_unique() == traces.height


def test_one_shard_is_load_sources_frame_in_order(tmp_path):
    _jsonl(tmp_path / "t.jsonl", _traces_rows(20, 2, think=False))
    configs = [TracesSource(path="t.jsonl", trace_field="generations", trace_format="plain")]
    res, want = _shards_equal_load_sources(configs, tmp_path, tmp_path / "out", shard_rows=1000, chunk_rows=3)
    assert res.n_shards == 1
    assert_frame_equal(pl.read_parquet(shard_path(tmp_path / "out", 0)).drop(ROW_ID), want)


@pytest.mark.parametrize("block_bytes", [None, 60])
def test_jsonl_types_that_change_between_chunks_read_as_the_whole_file(tmp_path, monkeypatch, block_bytes):
    if block_bytes:  # blocks cut by size as well as by line count
        monkeypatch.setattr("curate.readers._BLOCK_BYTES", block_bytes)
    # whole-file inference makes `answer` a string and `extra` a struct with both keys: chunks must agree
    lines = [{"problem": f"p{i}", "answer": i, "extra": {"x": i}} for i in range(5)]
    lines += [{"problem": "p5", "answer": 2.5, "extra": {"y": "z"}}, {"problem": "p6", "answer": "seven"}]
    _jsonl(tmp_path / "d.jsonl", lines)
    configs = [FileSource(path="d.jsonl", fields={"gold_answer": "answer"}, meta_fields=["extra"])]
    _, want = _shards_equal_load_sources(configs, tmp_path, tmp_path / "out", chunk_rows=3)
    assert want["gold_answer"].to_list()[:2] == ["0", "1"]
    assert json.loads(want["meta"][0]) == {"extra": {"x": 0, "y": None}}


def test_format_detection_and_limits_read_the_same_rows_as_a_whole_read(tmp_path):
    # 2,100 rows: the first 2,000 (what the format detection reads) span many chunks
    rows = _traces_rows(2100, 1, think=True)
    pl.DataFrame(rows).write_parquet(tmp_path / "t.parquet", row_group_size=300)
    configs = [TracesSource(path="t.parquet", trace_field="generations", teacher_field="model"),
               FileSource(path="t.parquet", name="again", limit=50)]
    res, _ = _shards_equal_load_sources(configs, tmp_path, tmp_path / "out", limit=2050, shard_rows=500, chunk_rows=256)
    assert res.infos[0]["trace_format"] == "think" and res.n_shards == 5


def test_shuffled_source_falls_back_to_a_whole_read(tmp_path):
    _jsonl(tmp_path / "d.jsonl", [{"problem": f"p{i}"} for i in range(30)])
    configs = [FileSource(path="d.jsonl", shuffle=True, seed=3, limit=20), FileSource(path="d.jsonl", name="b")]
    _shards_equal_load_sources(configs, tmp_path, tmp_path / "out", shard_rows=10, chunk_rows=4)


def test_shard_count_comes_from_a_cheap_estimate(tmp_path):
    pl.DataFrame(_traces_rows(100, 8)).write_parquet(tmp_path / "t.parquet")
    res = write_source_shards([TracesSource(path="t.parquet", trace_field="generations")], tmp_path, None,
                              tmp_path / "out", 200, chunk_rows=64)
    assert res.rows == 800 and res.n_shards == 4  # 100 rows x 8 traces / 200


def test_shard_of_is_stable_across_processes():
    ids = [f"{i:016x}" for i in range(50)]
    here = shard_of(pl.Series(ids), 7).to_list()
    code = ("import polars as pl, sys; from curate.source_shards import shard_of; "
            f"print(shard_of(pl.Series({ids!r}), 7).to_list())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert json.loads(other) == here and len(set(here)) > 1
    assert shard_of(pl.Series(ids), 7).dtype == pl.UInt32


def test_a_bad_line_in_a_later_chunk_is_named_and_leaves_no_shards(tmp_path):
    lines = [json.dumps({"problem": f"p{i}"}) for i in range(6)] + ['{"problem": oops}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"d.jsonl:7: malformed JSON line"):
        write_source_shards([FileSource(path="d.jsonl")], tmp_path, None, tmp_path / "out", 2, chunk_rows=2)
    assert not list((tmp_path / "out").glob("part-*")) if (tmp_path / "out").exists() else True
