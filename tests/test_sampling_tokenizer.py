"""Tokenizer identity of an API teacher's logprob rows (offline KD): ``teacher.tokenizer`` loaded and
hashed into the ``tokenizer`` column, ``<model>@`` without it, and the training check's messages."""

from __future__ import annotations

import polars as pl
import pytest

from curate.errors import RecipeError, SourceError
from curate.sampling import SampleConfig, sample_rows
from curate.stages.base import Context
from curate.testing.openai_server import OpenAIServer
from curate.tokenizer import split_tag, tokenizer_hash, tokenizer_tag

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "c": 3}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("tok") / "teacher-tok"
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(path)
    return path


def _cfg(srv, **teacher) -> SampleConfig:
    return SampleConfig(
        teacher={"backend": "openai", "model": "teacher-x", "base_url": srv.base_url, "token_ids": True,
                 "max_retries": 0, **teacher},
        logprobs=2,
        max_tokens=8,
    )


def _problems() -> pl.DataFrame:
    return pl.DataFrame({"problem_id": ["p0", "p1"], "problem": ["What is 1 + 1?", "What is 2 + 2?"]})


def test_teacher_tokenizer_is_hashed_into_the_column(tok_dir, tmp_path):
    want = tokenizer_tag(transformers.AutoTokenizer.from_pretrained(tok_dir), "teacher-x")
    with OpenAIServer(script=lambda m, p, i: "a b c") as srv:
        cfg = _cfg(srv, tokenizer=str(tok_dir))
        df = sample_rows(_problems(), cfg, Context.for_test(tmp_path))
        assert df["tokenizer"].to_list() == [want, want]
        name, digest = split_tag(want)
        assert name == "teacher-x" and len(digest) == 16
        # all from the durable log (no backend built): the same tag
        again = sample_rows(_problems(), cfg, Context.for_test(tmp_path))
        assert srv.count() == 2 and again["tokenizer"].to_list() == [want, want]


def test_no_teacher_tokenizer_stores_the_name_without_a_hash(tmp_path):
    with OpenAIServer(script=lambda m, p, i: "a b c") as srv:
        df = sample_rows(_problems(), _cfg(srv), Context.for_test(tmp_path))
        assert df["tokenizer"].to_list() == ["teacher-x@", "teacher-x@"]
        assert split_tag("teacher-x@") == ("teacher-x", "")
        again = sample_rows(_problems(), _cfg(srv), Context.for_test(tmp_path))  # from the log
        assert srv.count() == 2 and again["tokenizer"].to_list() == ["teacher-x@", "teacher-x@"]


def test_unloadable_teacher_tokenizer_is_one_line(tmp_path):
    with OpenAIServer() as srv:
        with pytest.raises(RecipeError) as e:
            sample_rows(_problems(), _cfg(srv, tokenizer=str(tmp_path / "no-such-tokenizer")), Context.for_test(tmp_path))
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("teacher.tokenizer: cannot load") and "no-such-tokenizer" in msg
        assert srv.count() == 0


class _Rows:
    """The two things check_tokenizer reads from a datasets.Dataset."""

    def __init__(self, tags):
        self.column_names = ["tokenizer"]
        self._tags = tags

    def __getitem__(self, col):
        return self._tags


def test_train_check_says_no_hash_was_recorded(tok_dir):
    from curate.train.data import check_tokenizer

    student = transformers.AutoTokenizer.from_pretrained(tok_dir)
    check_tokenizer(_Rows([tokenizer_tag(student, "teacher-x")]), student, "data.jsonl")  # same vocabulary: ok
    for tags in (["teacher-x@"], ["teacher-x"], [None]):
        with pytest.raises(SourceError) as e:
            check_tokenizer(_Rows(tags), student, "data.jsonl")
        msg = str(e.value)
        assert "no tokenizer hash recorded for the teacher" in msg and "set teacher.tokenizer when sampling" in msg
        assert "kd.check_tokenizer: false" in msg and "hashes to" not in msg and "\n" not in msg
    with pytest.raises(SourceError, match="hashes to " + tokenizer_hash(student)):  # a real mismatch
        check_tokenizer(_Rows(["other@0123456789abcdef"]), student, "data.jsonl")
