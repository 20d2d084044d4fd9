"""Errors of backups and restores, under the root of ``reconciler.errors``.

The tree::

    DsrError
    └── BackupError             a backup, prune, verify or restore could not be done
        ├── ArchiveError        an archive holds an entry dsr refuses (``..``, devices, ...)
        ├── ChecksumError       an archive or a restored tree differs from its manifest
        └── InUseError          a running container uses the volume (restore without --stop)
"""

from __future__ import annotations

from reconciler.errors import DsrError


class BackupError(DsrError):
    """A backup, prune, verify or restore could not be done; the text says why."""


class ArchiveError(BackupError):
    """An archive is damaged, or holds an entry that could escape the folder it restores to."""


class ChecksumError(BackupError):
    """An archive's sha256 or a tree's digest is not the one its manifest recorded."""


class InUseError(BackupError):
    """A running container uses the volume to restore, and ``--stop`` was not given."""
