"""Prune never deletes good snapshots because a verify once could not read them: a damaged
status is read again before prune decides, and only damage it confirms is removed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def listed(dsr: DsrRunner, spec: Path) -> dict[str, str]:
    out = dsr("backups", "list", spec, "--format", "json", check=0).stdout
    return {b["id"]: b["status"] for b in json.loads(out)["backups"]}


def test_archives_unreadable_during_verify_are_not_pruned(
    tmp_spec: SpecWriter, tmp_path: Path, dsr: DsrRunner
) -> None:
    site, destination = tmp_path / "site", tmp_path / "dest"
    site.mkdir()
    (site / "a").write_bytes(os.urandom(50_000))
    spec = tmp_spec(f"""
        version: 1
        backups:
          files:
            paths: [{site}]
            destination: {destination}
            keep: {{last: 3}}
        """)
    for hour in (1, 2, 3, 4):
        dsr("backup", spec, "--time", f"2026-12-0{hour}T03:00:00+00:00", check=0)
    archives = sorted(destination.rglob("archive.tar.zst"))
    assert len(archives) == 4
    # Unreadable for a moment: gone while verify runs, back after.
    for archive in archives:
        archive.rename(archive.with_suffix(".away"))
    assert dsr("backups", "verify", spec).returncode == 1
    for archive in archives:
        archive.with_suffix(".away").rename(archive)
    assert set(listed(dsr, spec).values()) == {"damaged"}

    dsr("backups", "prune", spec, check=0)
    after = listed(dsr, spec)
    assert len(after) == 3 and set(after.values()) == {"complete"}, after

    # Damage that is real is confirmed by the re-read and removed; the rule still keeps 3.
    dsr("backup", spec, "--time", "2026-12-05T03:00:00+00:00", check=0)
    newest = max(destination.rglob("archive.tar.zst"), key=lambda p: str(p))
    with open(newest, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    dsr("backups", "verify", spec)
    dsr("backups", "prune", spec, check=0)
    after = listed(dsr, spec)
    assert len(after) == 3 and set(after.values()) == {"complete"}, after
    assert not newest.exists()
