"""Backups of volumes and host folders: snapshots, restic's retention, verified restores.

The API the planner and the applier reuse (``reclaim: backup-then-delete``,
``on_change: migrate``)::

    manifest = backup_volume(engine, project, volume, destination, Options(policy="migrate"))
    snapshot = store.load(folder_of(destination, manifest), project)   # or find(...)
    verify(snapshot)                       # raises ChecksumError / ArchiveError
    restore_volume(engine, snapshot, volume, stop=True)

``backup_volume`` returns only once the archive, hashed as written, is on the disk, and
``restore_volume`` checks the archive before it touches the volume and the written tree
against the manifest's digest after. The commands themselves are in ``ops``.
"""

from reconciler.backup.errors import ArchiveError, BackupError, ChecksumError, InUseError
from reconciler.backup.manifest import Manifest
from reconciler.backup.restore import check as verify
from reconciler.backup.restore import restore_dir, restore_volume
from reconciler.backup.retention import apply_keep
from reconciler.backup.run import Options, backup_path, backup_volume
from reconciler.backup.store import Snapshot, Source, find, folder_of, load

__all__ = [
    "ArchiveError",
    "BackupError",
    "ChecksumError",
    "InUseError",
    "Manifest",
    "Options",
    "Snapshot",
    "Source",
    "apply_keep",
    "backup_path",
    "backup_volume",
    "find",
    "folder_of",
    "load",
    "restore_dir",
    "restore_volume",
    "verify",
]
