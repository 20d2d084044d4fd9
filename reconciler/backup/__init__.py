"""Backups of volumes and host folders: snapshots, restic's retention, verified restores."""
