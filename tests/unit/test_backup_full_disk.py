"""A write that fails mid-way (a full disk, here a file-size limit: EFBIG is ENOSPC's
twin for a process) leaves no manifest.json.tmp and no snapshot folder behind."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.backup.run import backup_path


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("limit", [200, 40_000])  # the manifest, then the archive too
def test_a_failed_write_leaves_no_snapshot_and_no_tmp(tmp_path: Path, limit: int) -> None:
    site, dest = tmp_path / "site", tmp_path / "dest"
    site.mkdir()
    (site / "a").write_bytes(b"x" * 100)  # compresses far below 200 bytes
    if limit > 1000:
        (site / "random").write_bytes(os.urandom(100_000))
    with file_size_limit(limit), pytest.raises(OSError):
        backup_path(None, "web", str(site), str(dest))
    assert not [p for p in dest.rglob("*") if p.is_file()], sorted(dest.rglob("*"))
    assert not list(dest.rglob("*.tmp"))
    manifest = backup_path(None, "web", str(site), str(dest))  # room again: it works
    assert manifest.files >= 1
