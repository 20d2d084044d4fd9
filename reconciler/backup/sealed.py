"""A folder store that also holds age-encrypted snapshots (a rule with ``encrypt_to``).

Same layout as the plain folder store; an encrypted snapshot's folder holds
``archive.tar.zst.age`` and ``manifest.json.age`` (written last, by atomic rename). It is
read with the identities given (``--identity``, ``DSR_AGE_IDENTITY``), or, on the host that
wrote it, from the plain copy of its manifest kept in the state directory while the
encrypted file is unchanged (same size, inode and mtime): the host that backs up can list
and prune its snapshots without holding the key that decrypts them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from reconciler import logs
from reconciler.backup import crypt, staging
from reconciler.backup.errors import BackupError, ChecksumError
from reconciler.backup.manifest import ARCHIVE, MANIFEST, Manifest
from reconciler.backup.store import (
    Folder,
    Found,
    Snapshot,
    find,
    placed_in,
    write_last,
)
from reconciler.files import parse_json, write_json

log = logs.get_logger("dsr.backup")

SEALED_ARCHIVE = ARCHIVE + crypt.SUFFIX
SEALED_MANIFEST = MANIFEST + crypt.SUFFIX


class SealedFolder(Folder):
    """A folder destination: plain snapshots as ever, encrypted ones for ``recipients``."""

    def __init__(
        self,
        path: str,
        recipients: tuple[str, ...] = (),
        identities: tuple[Any, ...] = (),
        staging_dir: str = "",
        known: str = "",
    ) -> None:
        super().__init__(path, recipients)
        self.identities = identities
        self.staging = staging_dir
        self.known = known

    def find(self, project: str) -> Found:
        found = find([self.url], project, sealed=lambda f: self._load(f, project))
        return Found(
            tuple(_placed(s, self) for s in found.snapshots), found.unfinished, found.unreadable
        )

    def _load(self, folder: str, project: str) -> Snapshot | None:
        path = os.path.join(folder, SEALED_MANIFEST)
        data = self._known(path)
        if data is None or self.identities:
            try:
                with open(path, "rb") as handle:
                    sealed = handle.read(1 << 20)
            except OSError as err:
                log.warning("manifest_unreadable", folder=folder, error=str(err))
                return None
            data = crypt.decrypt(sealed, self.identities, path)
        try:
            manifest = Manifest.model_validate_json(data)
        except (ValidationError, ValueError):
            return None
        return placed_in(folder, project, manifest, SEALED_ARCHIVE)

    def write_manifest_in(self, folder: str, manifest: Manifest, dir_fd: int | None = None) -> None:
        if not self.encrypts:
            super().write_manifest_in(folder, manifest, dir_fd)
            return
        body = crypt.encrypt(
            json.dumps(manifest.to_json(), indent=2).encode(), crypt.recipients(self.recipients)
        )
        write_last(folder, SEALED_MANIFEST, body, dir_fd)  # last: now it lists
        self._remember(os.path.join(folder, SEALED_MANIFEST), manifest)

    @contextlib.contextmanager
    def fetched(self, snapshot: Snapshot) -> Iterator[Snapshot]:
        sealed = os.path.join(snapshot.folder, SEALED_ARCHIVE)
        if not os.path.lexists(sealed):
            yield snapshot
            return
        with staging.folder(self.staging, "-fetch") as local:
            path = os.path.join(local, ARCHIVE)
            try:
                with open(sealed, "rb") as source, open(path, "xb") as out:
                    crypt.decrypt_stream(source, out, self.identities, sealed)
            except OSError as err:
                raise BackupError(f"cannot decrypt {sealed} into {local}: {err}") from err
            if os.path.getsize(path) != snapshot.manifest.archive_size:
                raise ChecksumError(f"snapshot {snapshot.id}: {sealed} decrypts to other bytes")
            yield Snapshot(snapshot.manifest, local, snapshot.status, snapshot.problem, None)

    def _known_file(self, path: str) -> str:
        digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()
        return os.path.join(self.known, digest[:2], digest + ".json")

    @staticmethod
    def _stamp(path: str) -> list[int]:
        st = os.lstat(path)
        return [st.st_size, st.st_ino, st.st_mtime_ns]

    def _known(self, path: str) -> bytes | None:
        if not self.known:
            return None
        try:
            with open(self._known_file(path), encoding="utf-8") as handle:
                doc = parse_json(handle.read(1 << 20))
            if not isinstance(doc, dict) or doc.get("stamp") != self._stamp(path):
                return None
        except (OSError, ValueError):
            return None
        manifest = doc.get("manifest")
        return json.dumps(manifest).encode() if isinstance(manifest, dict) else None

    def _remember(self, path: str, manifest: Manifest) -> None:
        if not self.known:
            return
        with contextlib.suppress(OSError):
            known = self._known_file(path)
            os.makedirs(os.path.dirname(known), mode=0o700, exist_ok=True)
            write_json(known, {"stamp": self._stamp(path), "manifest": manifest.to_json()})


def _placed(snapshot: Snapshot, place: SealedFolder) -> Snapshot:
    return Snapshot(snapshot.manifest, snapshot.folder, snapshot.status, snapshot.problem, place)
