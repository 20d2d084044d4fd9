"""The project record is one typed value with one parser and one locked read-modify-write
(``reconciler.record``, ``StateDir.update_record``)."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import pytest

from reconciler.record import Migration, ProjectRecord, VolumeRecord
from reconciler.statedir import StateDir

OLD = {
    "volumes": {
        "data": {"reclaim": "backup-then-delete", "destination": "/b"},
        "gone": {"reclaim": "delete", "destination": "", "instance": "abc"},
    },
    "migrations": {"data": "/b/web/1", "logs": {"folder": "/b/web/2", "original": "i"}},
    "adopted": {"volume": {"legacy": "2024-01-01T00:00:00Z"}, "network": {"net": "f00"}},
    "networks": True,
    "interrupted": {"stopped": {"c0ffee": "web"}, "restoring": {}},
}


def test_a_record_written_by_an_earlier_version_reads_typed() -> None:
    record = ProjectRecord.parse(OLD)
    assert record.volumes["data"] == VolumeRecord("backup-then-delete", "/b")
    assert record.volumes["gone"].instance == "abc"
    assert record.migrations == {
        "data": Migration("/b/web/1"),
        "logs": Migration("/b/web/2", "i"),
    }
    assert record.adoptions("volume") == {"legacy": "2024-01-01T00:00:00Z"}
    assert record.adoptions("network") == {"net": "f00"}
    assert record.networks is True
    assert record.table("stopped") == {"c0ffee": "web"}
    # Written back, it reads the same (the string form of a migration becomes the mapping).
    assert ProjectRecord.parse(json.loads(json.dumps(record.public()))) == record


@pytest.mark.parametrize(
    ("damage", "left"),
    [
        ({"volumes": [1, 2]}, {}),
        ({"volumes": {"data": {"reclaim": 5}, "ok": {}}}, {"ok": VolumeRecord()}),
        ({"volumes": {"data": "delete"}}, {}),
        ({"migrations": {"data": 7, "ok": "/b/1"}}, {"ok": Migration("/b/1")}),
        ({"migrations": {"data": {"folder": ["/etc"]}}}, {}),
        ({"migrations": {"data": ""}}, {}),
        ({"adopted": {"volume": {"x": 1, "y": "t"}}}, {"volume": {"y": "t"}}),
        ({"adopted": "everything"}, {}),
        ({"networks": "yes"}, False),
        ({"interrupted": {"stopped": {"id": None}}}, {"stopped": {}}),
    ],
)
def test_an_entry_of_the_wrong_type_is_dropped_not_trusted(
    damage: dict[str, object], left: object
) -> None:
    record = ProjectRecord.parse({**OLD, **damage})
    key = next(iter(damage))
    assert getattr(record, key) == left
    # The other parts of the record are read as they are.
    assert record.public() | {key: None} == ProjectRecord.parse(OLD).public() | {key: None}


def test_keys_of_a_newer_dsr_are_kept_as_they_are() -> None:
    record = ProjectRecord.parse({**OLD, "future": {"x": [1]}})
    assert record.public()["future"] == {"x": [1]}


def test_garbage_reads_as_an_empty_record(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    path = Path(state.record("web"))
    path.parent.mkdir()
    path.write_text("[1, 2]")
    assert state.load_record("web") == ProjectRecord()


def _add(root: str, worker: int) -> None:
    state = StateDir(root)
    for i in range(25):
        state.update_record(
            "web",
            lambda r, key=f"{worker}-{i}": r.with_adoptions(
                "volume", {**r.adoptions("volume"), key: "x"}
            ),
        )


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    """Four processes each add 25 entries: the lock makes every read-modify-write whole."""
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add, args=(str(tmp_path), n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(StateDir(str(tmp_path)).load_record("web").adoptions("volume")) == 100


def test_only_the_state_directory_reads_or_writes_the_record_file() -> None:
    """Everything else goes through the typed record (no dict guards at each reader)."""
    root = Path(__file__).resolve().parents[2] / "reconciler"
    users = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "statedir.py"
        and re.search(r"\.(read|write)_record\(", path.read_text(encoding="utf-8"))
    ]
    assert users == []
