"""Errors of backups and restores, under the root of ``reconciler.errors``.

The tree::

    DsrError
    └── BackupError             a backup, prune, verify or restore could not be done
        ├── ArchiveError        an archive holds an entry dsr refuses (``..``, devices, ...)
        ├── ChecksumError       an archive or a restored tree differs from its manifest
        ├── PlacesFailed        a snapshot did not reach some of its rule's places
        └── InUseError          a running container uses the volume (restore without --stop)
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import DsrError


class BackupError(DsrError):
    """A backup, prune, verify or restore could not be done; the text says why."""


class ArchiveError(BackupError):
    """An archive is damaged, or holds an entry that could escape the folder it restores to."""


class ChecksumError(BackupError):
    """An archive's sha256 or a tree's digest is not the one its manifest recorded."""


class InUseError(BackupError):
    """A running container uses the volume to restore, and ``--stop`` was not given."""


class PlacesFailed(BackupError):
    """A snapshot was not stored in some places of its rule (``missed``: url -> why); it
    is in ``stored``, described by ``manifest``, or nowhere when that is ``None``."""

    def __init__(self, manifest: Any, stored: list[str], missed: dict[str, str]) -> None:
        self.manifest = manifest
        self.stored = list(stored)
        self.missed = dict(missed)
        lost = "; ".join(f"{url}: {why}" for url, why in self.missed.items())
        if manifest is None or not stored:
            text = f"the snapshot was stored nowhere: {lost}"
        else:
            text = f"snapshot {manifest.id} is stored in {', '.join(stored)}; not in {lost}"
        super().__init__(text)
