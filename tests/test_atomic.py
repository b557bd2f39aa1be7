"""The one atomic-directory helper: complete folders appear whole or not at all."""

from __future__ import annotations

import os
import time

import pytest

from curate.atomic import atomic_dir, stale_tmp_dirs


def test_written_whole_and_never_overwritten(tmp_path):
    target = tmp_path / "v" / "0.1.0"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not target.exists()  # nothing visible until the block completes
    assert (target / "a.txt").read_text() == "a"
    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    assert [p.name for p in target.parent.iterdir()] == ["0.1.0"]


def test_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "partial").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_keep_and_replace(tmp_path):
    target = tmp_path / "entry"
    with atomic_dir(target, on_exists="keep") as tmp:
        (tmp / "v").write_text("first")
    with atomic_dir(target, on_exists="keep") as tmp:
        (tmp / "v").write_text("second")
    assert (target / "v").read_text() == "first"
    with atomic_dir(target, on_exists="replace") as tmp:
        (tmp / "v").write_text("third")
    assert (target / "v").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_stale_tmp_dirs(tmp_path):
    old = tmp_path / ".tmp-0.1.0-123-abcd"
    old.mkdir()
    past = time.time() - 7200
    os.utime(old, (past, past))
    (tmp_path / ".tmp-fresh-1-ef").mkdir()
    assert stale_tmp_dirs(tmp_path) == [old]
