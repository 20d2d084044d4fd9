"""A restore tells its meter each phase with the size it knows (the archive's while it
checks its bytes, the manifest's while it writes), so a terminal shows ``N/300.0 MB``, not
``N/? MB`` or a counter stuck at 0 while the check runs."""

from __future__ import annotations

from pathlib import Path

from reconciler.backup import restore, store
from reconciler.backup.run import backup_path


class Meter:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int | None]] = []
        self.counted: list[int] = []

    def __call__(self, n: int) -> None:
        self.counted[-1] += n

    def phase(self, what: str, total: int | None) -> None:
        self.phases.append((what, total))
        self.counted.append(0)


def test_each_phase_is_counted_against_its_known_total(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.bin").write_bytes(b"a" * 3_000_000)
    (source / "sub" / "b.txt").write_text("b" * 1000)
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    meter = Meter()
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old").write_text("replaced")  # checked before it is emptied
    restore.restore_dir(snapshot, str(tmp_path / "target"), meter)
    assert meter.phases == [
        ("checking the snapshot", manifest.archive_size),
        ("restoring", manifest.size),
    ]
    # Each phase counts up to the total it announced.
    assert meter.counted == [manifest.archive_size, manifest.size]
    assert (tmp_path / "target" / "a.bin").stat().st_size == 3_000_000
    # An empty target is written at once: its bytes are hashed as they are written.
    meter = Meter()
    (tmp_path / "empty").mkdir()
    restore.restore_dir(snapshot, str(tmp_path / "empty"), meter)
    assert meter.phases == [("restoring", manifest.size)]
    assert meter.counted == [manifest.size]


def test_a_plain_counter_still_counts(tmp_path: Path) -> None:
    """A meter without phases (the daemon's, a caller's own function) is only counted."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(b"x" * 5000)
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    seen: list[int] = []
    (tmp_path / "target").mkdir()
    restore.restore_dir(snapshot, str(tmp_path / "target"), seen.append)
    assert sum(seen) == manifest.size
