"""The data contract has one home: stages use curate.columns' names and dtypes."""

from __future__ import annotations

from curate import columns
from curate.sampling import SAMPLE_COLUMNS, SAMPLE_SCHEMA
from curate.sources import PROBLEM_COLUMNS
from curate.stages.base import DROP
from curate.verify.equiv import VERDICTS


def test_every_module_uses_the_contract():
    assert SAMPLE_COLUMNS == columns.SAMPLE_COLUMNS and SAMPLE_SCHEMA == columns.SAMPLE_SCHEMA
    assert tuple(PROBLEM_COLUMNS) == columns.PROBLEM_COLUMNS
    assert VERDICTS == columns.VERDICTS and DROP == columns.DROP_REASON


def test_sample_id_scheme():
    a = columns.sample_id("abc", 0)
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != columns.sample_id("abc", 1) != columns.sample_id(columns.trace_origin("abc"), 1)
    assert a == columns.sample_id("abc", 0)
