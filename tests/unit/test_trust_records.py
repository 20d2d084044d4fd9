"""Issue 17, class 6: a project's record is keyed by a digest of its whole name; records
of earlier versions (``records/NAME.json``) are read once and moved, only when that name
can only have been this project's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.statedir import StateDir

A = "a" * 80 + "-first"
B = "a" * 80 + "-second"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (A, B),  # the same first 80 characters
        ("web", "web_"),
        ("x" * 300, "x" * 299),
        ("p-1", "p_1"),
    ],
)
def test_two_projects_never_share_a_record(one: str, two: str, tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    state.write_record(one, {"volumes": {"data": {"reclaim": "retain"}}})
    state.write_record(two, {"volumes": {"data": {"reclaim": "delete"}}})
    assert state.record(one) != state.record(two)
    assert state.read_record(one) == {"volumes": {"data": {"reclaim": "retain"}}}
    assert state.read_record(two) == {"volumes": {"data": {"reclaim": "delete"}}}


def test_an_old_record_is_moved_to_the_new_name(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    old = tmp_path / "records" / "web.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"volumes": {"data": {"reclaim": "delete"}}}))
    assert state.read_record("web") == {"volumes": {"data": {"reclaim": "delete"}}}
    state.write_record("web", state.read_record("web"))
    assert not old.exists()
    assert json.loads(Path(state.record("web")).read_text())["volumes"]["data"]


def test_an_ambiguous_old_record_is_never_read(tmp_path: Path) -> None:
    """The old name of a long project was its first 80 characters: possibly another's."""
    state = StateDir(str(tmp_path))
    shared = tmp_path / "records" / ("a" * 80 + ".json")
    shared.parent.mkdir()
    shared.write_text(json.dumps({"volumes": {"data": {"reclaim": "delete"}}}))
    assert state.read_record(A) == {}
    assert state.read_record(B) == {}
    state.write_record(A, {"volumes": {}})
    assert shared.exists()  # not A's to remove


@pytest.mark.parametrize(
    "kind", ["fifo", "symlink-to-zero", "huge", "list", "garbage", "deep", "nan", "symlink-out"]
)
def test_a_hostile_record_reads_as_empty_without_hanging(kind: str, tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    path = Path(state.record("web"))
    path.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-to-zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(17 << 20)
    elif kind == "list":
        path.write_text("[1, 2]")
    elif kind == "deep":  # beyond the parser's recursion: no RecursionError escapes
        path.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    elif kind == "nan":
        path.write_text('{"volumes": {"data": {"size": NaN}}}')
    elif kind == "symlink-out":  # a record elsewhere (another project's, any file)
        (tmp_path / "elsewhere.json").write_text('{"volumes": {"data": {"reclaim": "delete"}}}')
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        path.write_text("{")
    assert state.read_record("web") == {}
