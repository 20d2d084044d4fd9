"""Folder snapshots live in DESTINATION/PROJECT/ID/ (the contract); those an older dsr wrote
in DESTINATION/PROJECT/SOURCE/ID/ are still listed, restored and pruned where they lie, and
a folder that is neither is never taken for an unfinished backup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.backup.store import Source, find
from tests.unit.test_trust_readback import _run, two_snapshots  # noqa: F401  (a fixture)


def _ids(spec: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    code, out, err = _run(["backups", "list", str(spec), "--format", "json"], capsys)
    assert code == 0, err
    return {b["id"]: b["status"] for b in json.loads(out)["backups"]}


def test_new_snapshots_are_where_the_contract_says(
    two_snapshots: tuple[Path, Path, Path],  # noqa: F811
) -> None:
    _, first, second = two_snapshots
    for folder in (first, second):
        assert folder.parent.name == "t17" and folder.parent.parent.name == "dest"
        assert (folder / "archive.tar.zst").is_file() and (folder / "manifest.json").is_file()


def test_an_older_dsrs_snapshots_are_listed_restored_and_pruned_where_they_lie(
    two_snapshots: tuple[Path, Path, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, first, second = two_snapshots
    manifest = json.loads((first / "manifest.json").read_text())
    legacy = first.parent / Source.parse(manifest["source"]).folder
    legacy.mkdir()
    moved = legacy / first.name
    shutil.move(first, moved)
    # Something that is neither a snapshot nor an old SOURCE folder: never touched.
    foreign = first.parent / "notes" / "keep"
    foreign.mkdir(parents=True)
    (foreign / "f").write_text("mine")

    assert _ids(spec, capsys) == {first.name: "complete", second.name: "complete"}
    found = find([str(tmp_path / "dest")], "t17")
    assert str(foreign.parent) not in found.unfinished
    assert sorted(Path(s.folder) for s in found.snapshots) == sorted([moved, second])

    target = tmp_path / "restored"
    code, _, err = _run(
        ["restore", str(spec), f"{tmp_path}/data", "--backup", first.name, "--into", str(target)],
        capsys,
    )
    assert code == 0, err
    assert (target / "f").read_text() == "hello"

    (spec / "spec.yaml").write_text(
        (spec / "spec.yaml").read_text().replace("keep: {last: 5}", "keep: {last: 1}")
    )
    code, _, err = _run(["backups", "prune", str(spec)], capsys)
    assert code == 0, err
    assert not moved.exists() and second.exists()
    assert (foreign / "f").read_text() == "mine"
