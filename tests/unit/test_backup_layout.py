"""Folder snapshots live in DESTINATION/PROJECT/ID/ (the contract); those an older dsr wrote
in DESTINATION/PROJECT/SOURCE/ID/ are still listed, restored and pruned where they lie, and
a folder that is neither is never taken for an unfinished backup.

dsr runs as a process here: its ``main`` sets up logging and output streams for a whole
process, which an in-process call would leave behind for the tests after it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.backup.store import Source, find


def _dsr(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSR_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def snapshots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(spec folder, the older snapshot's folder, the newer one's)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("hello")
    spec = tmp_path / "layout"
    spec.mkdir()
    (spec / "spec.yaml").write_text(
        f"version: 1\nbackups:\n  nightly:\n    paths: [{tmp_path}/data]\n"
        f"    destination: {tmp_path}/dest\n    keep: {{last: 5}}\n"
    )
    for moment in ("2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"):
        done = _dsr(tmp_path, "backup", str(spec), "--time", moment)
        assert done.returncode == 0, done.stderr
    folders = sorted((tmp_path / "dest" / "layout").iterdir())
    assert len(folders) == 2
    return spec, folders[0], folders[1]


def test_new_snapshots_are_where_the_contract_says(snapshots: tuple[Path, Path, Path]) -> None:
    _, first, second = snapshots
    for folder in (first, second):
        assert folder.parent.name == "layout" and folder.parent.parent.name == "dest"
        assert (folder / "archive.tar.zst").is_file() and (folder / "manifest.json").is_file()


def test_an_older_dsrs_snapshots_are_listed_restored_and_pruned_where_they_lie(
    snapshots: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    spec, first, second = snapshots
    manifest = json.loads((first / "manifest.json").read_text())
    legacy = first.parent / Source.parse(manifest["source"]).folder
    legacy.mkdir()
    moved = legacy / first.name
    shutil.move(first, moved)
    # Something that is neither a snapshot nor an old SOURCE folder: never touched.
    foreign = first.parent / "notes" / "keep"
    foreign.mkdir(parents=True)
    (foreign / "f").write_text("mine")

    listed = _dsr(tmp_path, "backups", "list", str(spec), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    statuses = {b["id"]: b["status"] for b in json.loads(listed.stdout)["backups"]}
    assert statuses == {first.name: "complete", second.name: "complete"}
    found = find([str(tmp_path / "dest")], "layout")
    assert str(foreign.parent) not in found.unfinished
    assert sorted(Path(s.folder) for s in found.snapshots) == sorted([moved, second])

    target = tmp_path / "restored"
    restored = _dsr(
        tmp_path, "restore", str(spec), f"{tmp_path}/data", "--backup", first.name,
        "--into", str(target),
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert (target / "f").read_text() == "hello"

    rules = (spec / "spec.yaml").read_text().replace("keep: {last: 5}", "keep: {last: 1}")
    (spec / "spec.yaml").write_text(rules)
    pruned = _dsr(tmp_path, "backups", "prune", str(spec))
    assert pruned.returncode == 0, pruned.stderr
    assert not moved.exists() and second.exists()
    assert (foreign / "f").read_text() == "mine"
