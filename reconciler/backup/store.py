"""Where snapshots live, and what is there.

Layout under a destination (a rule's ``destination``, else the state directory's
``backups/``)::

    DEST/PROJECT/ID/
        archive.tar.zst   the tree, a PAX tar compressed with zstd
        manifest.json     written last, by atomic rename
        verify.json       the last ``dsr backups verify`` of it, when there was one

as the contract has it, in folders and S3 alike. ID is ``NAME-20261129T030000Z`` (the
source's short name and the UTC time; ``-2``, ``-3`` … when taken). dsr before 0.2 wrote
``DEST/PROJECT/SOURCE/ID/``, SOURCE being ``volume-NAME`` or ``path-...``: such snapshots
are still found, listed, verified, restored and pruned where they are. A snapshot folder
without a manifest is a backup that did not finish: it is invisible to every command and
removed by the next prune.

A ``Place`` is one destination seen through one interface (list the snapshots, store one,
fetch one's archive, remove one manifest first); ``Folder`` is the folder store, and
``reconciler.backup.s3store`` the S3 one. Commands work per place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler import logs
from reconciler.backup.errors import BackupError
from reconciler.backup.manifest import (
    ARCHIVE,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    parse_manifest,
    signature_problem,
)
from reconciler.escape import escape_controls
from reconciler.files import parse_json, read_regular, remove_below, write_json

log = logs.get_logger("dsr.backup")

VERIFY = "verify.json"
MAX_VERIFY_BYTES = 64 << 10
COMPLETE, DAMAGED = "complete", "damaged"
# The start of the problem of a snapshot whose manifest this state directory's key did not
# sign: never restored, and never removed by a prune either (a lost key must not cost
# every backup; an attacker who can edit manifests can delete them anyway).
UNSIGNED = "not signed here: "


@dataclass(frozen=True)
class Source:
    """What one snapshot copies: a volume (by name) or a host folder (absolute path)."""

    kind: str  # volume | path
    name: str

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, _, name = text.partition(":")
        return cls(kind, name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def folder(self) -> str:
        """One file name for this source, readable, distinct for distinct sources."""
        if self.kind == "volume":
            return f"volume-{self.name}"
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name.strip("/"))[:60] or "root"
        return f"path-{readable}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"

    @property
    def short(self) -> str:
        """The name a snapshot id starts with."""
        return self.name if self.kind == "volume" else os.path.basename(self.name) or "root"


@dataclass(frozen=True)
class Snapshot:
    """A snapshot folder with a valid manifest, and whether its archive is still good."""

    manifest: Manifest
    folder: str  # a folder on this host, or the snapshot's key prefix in its place
    status: str
    problem: str = ""
    place: Place | None = field(default=None, compare=False)
    # Read from a store rather than a file: a context manager giving a file-like of the
    # archive's bytes, checked as they are read (``reconciler.backup.restore``).
    opener: Callable[[], AbstractContextManager[Any]] | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def time(self) -> datetime:
        """The backup's time in its recorded zone (retention buckets read this)."""
        return self.manifest.zoned_time()

    @property
    def archive(self) -> str:
        return os.path.join(self.folder, ARCHIVE)

    def listing(self) -> dict[str, object]:
        """This snapshot as ``dsr backups list --format json`` shows it."""
        m = self.manifest
        return {
            "id": m.id,
            "policy": m.policy,
            "source": m.source,
            "time": m.time.isoformat(),
            "size": m.size,
            "files": m.files,
            "sha256": m.sha256,
            "status": self.status,
            **({"destination": self.place.url} if self.place else {}),
        }


@dataclass(frozen=True)
class Found:
    """Everything under the destinations for one project."""

    snapshots: tuple[Snapshot, ...]
    unfinished: tuple[str, ...]  # snapshot folders without a manifest
    unreadable: tuple[str, ...]  # folders whose manifest is invalid (left alone)


class Place(ABC):
    """One destination: where snapshots are stored, listed, fetched and removed."""

    url: str  # as the spec writes it
    remote = False  # its archives are read through ``fetched``, not in place
    recipients: tuple[str, ...] = ()  # age recipients its new snapshots are encrypted to

    @property
    def encrypts(self) -> bool:
        return bool(self.recipients)

    @property
    def key(self) -> str:
        """Two places with the same key are the same store."""
        return self.url

    @abstractmethod
    def find(self, project: str) -> Found:
        """Every snapshot of ``project`` here."""

    def taken(self, project: str) -> set[str]:
        """Snapshot ids in use here, finished or not (a new one takes another)."""
        return {s.id for s in self.find(project).snapshots}

    @abstractmethod
    def stream(self, project: str, snapshot_id: str) -> Any:
        """A ``tee.Sink`` that stores a new snapshot's archive here as it is made (its
        bytes encrypted already when this place encrypts), the manifest last: it lists
        only once all is stored and checked."""

    @abstractmethod
    def remove(self, snapshot: Snapshot) -> None:
        """Remove a whole snapshot, its manifest first."""

    @abstractmethod
    def remove_unfinished(self, item: str) -> None:
        """Remove what a backup that did not finish left (``Found.unfinished``)."""

    @abstractmethod
    def record_verify(self, snapshot: Snapshot, error: str | None) -> None:
        """Remember a verify's outcome, so that a damaged snapshot never counts as good."""

    @contextlib.contextmanager
    def fetched(self, snapshot: Snapshot) -> Iterator[Snapshot]:
        """The snapshot with its archive in a folder on this host, for as long as needed."""
        yield snapshot


class Folder(Place):
    """A folder on this host (the layout above), written in place. ``guard``: why a new
    snapshot may not be written under a resolved path (the admin policy), asked again as
    the snapshot's folder is made, since the destination may have become a link."""

    def __init__(self, path: str, recipients: Iterable[str] = ()) -> None:
        self.url = path
        self.recipients = tuple(recipients)
        self.guard: Callable[[str], str | None] | None = None

    @property
    def key(self) -> str:
        return os.path.realpath(project_root(self.url, "x"))

    def find(self, project: str) -> Found:
        found = find([self.url], project)
        return Found(
            tuple(_placed(s, self) for s in found.snapshots), found.unfinished, found.unreadable
        )

    def taken(self, project: str) -> set[str]:
        return {os.path.basename(f) for f in snapshot_dirs(project_root(self.url, project))}

    def stream(self, project: str, snapshot_id: str) -> Any:
        from reconciler.backup.tee import FolderSink

        target = snapshot_folder(self.url, project, snapshot_id)
        return FolderSink(self, target, ARCHIVE + (".age" if self.encrypts else ""))

    def write_manifest_in(self, folder: str, manifest: Manifest, dir_fd: int | None = None) -> None:
        """The last step of a snapshot stored here: its manifest, whole or not at all."""
        write_manifest(folder, manifest, dir_fd)

    def remove(self, snapshot: Snapshot) -> None:
        remove(snapshot.folder, self.url)

    def remove_unfinished(self, item: str) -> None:
        remove(item, self.url)

    def record_verify(self, snapshot: Snapshot, error: str | None) -> None:
        record_verify(snapshot, error)


def _placed(snapshot: Snapshot, place: Place) -> Snapshot:
    return Snapshot(snapshot.manifest, snapshot.folder, snapshot.status, snapshot.problem, place)


def project_root(destination: str, project: str) -> str:
    return os.path.join(destination, project)


def snapshot_folder(destination: str, project: str, snapshot_id: str) -> str:
    """Where a new snapshot ``snapshot_id`` of ``project`` goes under ``destination``."""
    return os.path.join(project_root(destination, project), snapshot_id)


def folder_of(destination: str, manifest: Manifest) -> str:
    """The folder of the snapshot ``manifest`` describes, under ``destination``."""
    return snapshot_folder(destination, manifest.project, manifest.id)


# The SOURCE folder of the layout before 0.2 (``Source.folder``), which holds snapshot
# folders.
_LEGACY_SOURCE = re.compile(r"volume-.+|path-.*-[0-9a-f]{8}")


def snapshot_dirs(root: str) -> list[str]:
    """The snapshot folders under a project's folder ``root``, finished or not: its own
    subfolders, and those of an older dsr's SOURCE folders. A snapshot folder holds files
    only, so a folder without a manifest that holds folders is a SOURCE folder when named
    like one (read inside), else nothing dsr made (left alone: never listed as an
    unfinished backup, which prune would remove)."""
    found = []
    for entry in _subdirs(root):
        if _has_manifest(entry) or not _subdirs(entry):
            found.append(entry)
        elif _LEGACY_SOURCE.fullmatch(os.path.basename(entry)):
            found += _subdirs(entry)
    return found


def _has_manifest(folder: str) -> bool:
    return any(os.path.lexists(os.path.join(folder, MANIFEST + s)) for s in ("", ".age"))


def find(
    destinations: Iterable[str],
    project: str,
    sealed: Callable[[str], Snapshot | None] | None = None,
) -> Found:
    """Every snapshot of ``project`` under ``destinations`` (each real folder read once);
    ``sealed`` reads an encrypted one (``manifest.json.age``), which is left out without."""
    snapshots: list[Snapshot] = []
    unfinished: list[str] = []
    unreadable: list[str] = []
    seen: set[str] = set()
    for destination in destinations:
        root = os.path.join(os.path.realpath(destination), project)
        if os.path.islink(root):  # prune would follow it out of the destination
            log.warning("project_folder_is_a_link", folder=escape_controls(root))
            continue
        if root in seen or not os.path.isdir(root):
            continue
        seen.add(root)
        for folder in snapshot_dirs(root):
            plain = os.path.lexists(os.path.join(folder, MANIFEST))
            if not plain and os.path.lexists(os.path.join(folder, MANIFEST + ".age")):
                if sealed is None:
                    continue
            elif not plain:
                unfinished.append(folder)
                continue
            snapshot = load(folder, project) if plain else sealed(folder)  # type: ignore[misc]
            if snapshot is None:
                unreadable.append(folder)
            else:
                snapshots.append(snapshot)
    snapshots.sort(key=lambda s: (s.manifest.policy, s.manifest.source, -s.time.timestamp()))
    return Found(tuple(snapshots), tuple(unfinished), tuple(unreadable))


def _subdirs(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def load(folder: str, project: str) -> Snapshot | None:
    """The snapshot in ``folder``; ``None`` when its manifest is unreadable or not its own."""
    manifest, problem = read_manifest(folder, project)
    if manifest is None:
        log.warning("manifest_unreadable", folder=escape_controls(folder), error=problem)
        return None
    status, problem = _status(folder, manifest)
    return Snapshot(manifest, folder, status, problem)


def read_manifest(folder: str, project: str) -> tuple[Manifest | None, str]:
    """The manifest in ``folder`` (read as hostile input), or ``None`` and why not, in one
    escaped line."""
    path = os.path.join(folder, MANIFEST)
    try:
        manifest = parse_manifest(read_regular(path, MAX_MANIFEST_BYTES))
    except (OSError, ManifestError) as err:
        return None, escape_controls(f"its manifest is unreadable: {err}")[:500]
    if not _placed_in(folder, project, manifest):
        return None, "its manifest describes another snapshot than its folder"
    return manifest, ""


def _placed_in(folder: str, project: str, manifest: Manifest) -> bool:
    """The manifest is the one of ``folder``: its id names the folder, which lies in its
    project's folder (or in its source's folder there, as an older dsr wrote it)."""
    parent = os.path.dirname(folder)
    if manifest.id != os.path.basename(folder) or manifest.project != project:
        return False
    if os.path.basename(parent) == project:
        return True
    source = Source.parse(manifest.source)
    return (
        source.folder == os.path.basename(parent)
        and os.path.basename(os.path.dirname(parent)) == project
    )


def placed_in(
    folder: str, project: str, manifest: Manifest, archive: str = ARCHIVE
) -> Snapshot | None:
    """The snapshot a manifest read some other way (decrypted) describes, if it is the
    one of ``folder``; ``archive``: its archive's file name."""
    if not _placed_in(folder, project, manifest):
        log.warning("manifest_misplaced", folder=escape_controls(folder), id=manifest.id)
        return None
    status, problem = _status(folder, manifest, archive)
    return Snapshot(manifest, folder, status, problem)


def _status(folder: str, manifest: Manifest, archive: str = ARCHIVE) -> tuple[str, str]:
    """Cheap checks only (size, the last verify): ``verify`` reads the archive itself."""
    try:
        info = os.lstat(os.path.join(folder, archive))
    except OSError:
        return DAMAGED, "the archive is missing"
    if not stat.S_ISREG(info.st_mode):
        return DAMAGED, "the archive is not a regular file"
    size = info.st_size
    if archive != ARCHIVE:  # age adds a header and 16 bytes a 64 KiB chunk
        if size < manifest.archive_size + (manifest.archive_size // (64 << 10) + 1) * 16:
            return DAMAGED, f"the archive has {size} bytes, too few for its manifest"
    elif size != manifest.archive_size:
        return DAMAGED, f"the archive has {size} bytes, its manifest says {manifest.archive_size}"
    try:
        verified = parse_json(read_regular(os.path.join(folder, VERIFY), MAX_VERIFY_BYTES))
    except FileNotFoundError:
        return COMPLETE, ""
    except (OSError, ValueError) as err:  # a verify result dsr did not write: not good
        return DAMAGED, escape_controls(f"its verify.json is unreadable: {err}")[:500]
    if not isinstance(verified, dict) or not isinstance(verified.get("ok"), bool):
        return DAMAGED, "its verify.json is not one dsr wrote"
    if verified["ok"] is False:
        error = verified.get("error")
        text = error if isinstance(error, str) else "the last verify failed"
        return DAMAGED, escape_controls(text)[:1000]
    return COMPLETE, ""


def record_verify(snapshot: Snapshot, error: str | None) -> None:
    """Remember the outcome of a verify, so that a damaged archive never counts as good."""
    now = datetime.now(UTC).isoformat()
    write_json(
        os.path.join(snapshot.folder, VERIFY),
        {"time": now, "ok": error is None, **({"error": error} if error else {})},
    )


def remove(folder: str, destination: str) -> None:
    """Remove a snapshot folder lying in ``destination``: the manifest first, so that a
    half-removed one is invisible. Walked by directory descriptors from the destination
    (``files.remove_below``): DEST/PROJECT or a SOURCE folder swapped for a symlink at any
    moment fails the walk, so nothing outside the destination is ever removed. A failure
    is logged, not raised (the next prune tries again)."""
    anchor = os.path.abspath(destination)  # find() names folders under its real path
    if not os.path.abspath(folder).startswith(anchor + os.sep):
        anchor = os.path.realpath(destination)
    try:
        remove_below(anchor, folder, (MANIFEST, MANIFEST + ".age"))
    except (OSError, RecursionError) as err:
        log.warning("snapshot_not_removed", folder=escape_controls(folder), error=str(err))


def write_manifest(folder: str, manifest: Manifest, dir_fd: int | None = None) -> None:
    """The last step of a backup: the manifest appears whole, or not at all. ``dir_fd``:
    the snapshot folder's descriptor, written through instead of the path ``folder``."""
    body = json.dumps(manifest.to_json(), indent=2).encode()
    write_last(folder, MANIFEST, body, dir_fd)


def write_last(folder: str, name: str, body: bytes, dir_fd: int | None = None) -> None:
    """``name`` in ``folder`` (or the folder ``dir_fd``), whole or not at all (a temp file
    renamed), synced with its folder."""
    at = dir_fd if dir_fd is not None else folder
    tmp = name + ".tmp" if dir_fd is not None else os.path.join(folder, name + ".tmp")
    path = name if dir_fd is not None else os.path.join(folder, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:  # ENOSPC: no half-written NAME.tmp stays behind
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    fsync_dir(at)


def fsync_dir(folder: str | int) -> None:
    if isinstance(folder, int):
        os.fsync(folder)
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(real: str, names: Iterable[str] = (), mode: int = 0o700) -> list[int]:
    """Descriptors of the folder ``real`` (an absolute path as ``realpath`` gives it, with
    no link on its way: the one a policy judged) and of ``names`` below it, each created
    when missing. Walked from ``/`` by ``O_NOFOLLOW`` opens relative to the one before: a
    folder on the way swapped for a link since it was judged fails the walk instead of
    leading out of it, and what is written through the descriptors stays where they are
    however the paths change after. The caller closes them."""
    parts = [p for p in real.split("/") if p]
    if not os.path.isabs(real) or any(p in (".", "..") for p in parts):
        raise BackupError(f"{escape_controls(real)} is not a resolved folder")
    fds = [os.open("/", _DIR)]
    try:
        for n, part in enumerate([*parts, *names]):
            if n >= len(parts) or not _exists_at(fds[-1], part):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fds[-1])
            try:
                fd = os.open(part, _DIR, dir_fd=fds[-1])
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = escape_controls(os.path.join(real, *names))
                    raise BackupError(
                        f"{where}: {escape_controls(part)} on its way is a link or not a "
                        "folder (it changed since it was checked?)"
                    ) from err
                raise
            if n < len(parts):  # the walk to ``real``: only its last descriptor is kept
                os.close(fds.pop())
            fds.append(fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _exists_at(fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    return True


def signed(found: Found, key: bytes) -> Found:
    """``found`` with every snapshot whose manifest ``key`` did not sign marked damaged
    (``UNSIGNED``): an edited manifest is refused by its id, and the others still show."""
    out = []
    for snapshot in found.snapshots:
        problem = signature_problem(snapshot.manifest, key)
        if problem is not None and snapshot.status == COMPLETE:  # a damaged one stays so
            snapshot = dataclasses.replace(snapshot, status=DAMAGED, problem=UNSIGNED + problem)
        out.append(snapshot)
    return dataclasses.replace(found, snapshots=tuple(out))


def is_unsigned(snapshot: Snapshot) -> bool:
    return snapshot.problem.startswith(UNSIGNED)


class MadeFolder:
    """A new snapshot's folder ``DEST/PROJECT/ID`` made through descriptors from DEST's
    resolved path (``open_folder``): its files are created, its manifest written and, on
    a failure, everything in it removed through the folder's own descriptor, wherever the
    paths lead by then. ``ids``: the names to try, the first free one is taken
    (``taken``: the error when none is)."""

    def __init__(
        self, real: str, project: str, ids: Iterable[str], taken: str | None = None
    ) -> None:
        dest_fd, self.parent = open_folder(real, [project])
        os.close(dest_fd)
        self.fd = -1
        self.id = ""
        try:
            for name in ids:
                try:
                    os.mkdir(name, 0o700, dir_fd=self.parent)
                except FileExistsError:
                    continue
                self.id = name
                self.fd = os.open(name, _DIR, dir_fd=self.parent)
                return
            raise BackupError(
                taken or f"{escape_controls(real)}/{project}: every snapshot name is taken"
            )
        except BaseException:
            self.close()
            raise

    def create(self, name: str) -> int:
        """A new file ``name`` in the folder, open for reading and writing."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(name, flags, 0o600, dir_fd=self.fd)

    def undo(self) -> None:
        """Remove the folder and what is in it (its manifest first); best effort."""
        if self.fd >= 0 and self.id:
            names: list[str] = []
            with contextlib.suppress(OSError), os.scandir(self.fd) as it:
                names = [e.name for e in it]
            for name in sorted(names, key=lambda n: not n.startswith(MANIFEST)):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self.fd)
            with contextlib.suppress(OSError):
                os.rmdir(self.id, dir_fd=self.parent)
            self.id = ""

    def close(self) -> None:
        for name in ("fd", "parent"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
