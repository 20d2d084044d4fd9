"""Restoring a snapshot: checked first, then written exactly, then checked again.

When the target holds data, the archive's sha256 must be the manifest's (``check_bytes``)
and the whole archive is read too (``check``): every entry must pass ``read_tar``'s checks
before the target is emptied. A target that holds nothing (a new volume, ``--into``) has
nothing to lose: the bytes are hashed and the entries checked as they are written, and a
refused archive leaves it empty again. The tree is written directly into a local
volume's directory or a host folder, else through a never-started helper's archive
endpoint (decompressed here, because the Engine API takes no zstd), and the result is
read back and compared with the manifest's tree digest.

Through the Engine API nothing can be deleted, so a volume that holds files is emptied by
removing and recreating it (same driver, options and labels), which Docker allows only
when no container references it; otherwise the restore is refused, saying so.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import docker.errors

from reconciler.backup import engine_io, extract, rehash
from reconciler.backup.archive import CHUNK, Decompressed, Progress, TarWriter, beyond, read_tar
from reconciler.backup.errors import ArchiveError, BackupError, ChecksumError, InUseError
from reconciler.backup.journal import Journal
from reconciler.backup.prefetch import Prefetched, scan_file
from reconciler.backup.run import IterReader
from reconciler.backup.store import Snapshot
from reconciler.backup.tree import (
    DIR,
    FILE,
    Hasher,
    TreeDigest,
    content_hash,
    file_sha256,
    gc_paused,
)
from reconciler.engine import Engine
from reconciler.files import open_regular
from reconciler.snapshot import INSTANCE, new_instance


def _opened(snapshot: Snapshot) -> contextlib.AbstractContextManager[Any]:
    """The archive's bytes: its file, or (``opener``) a store's response read as it comes."""
    if snapshot.opener is not None:
        return snapshot.opener()
    return os.fdopen(open_regular(snapshot.archive), "rb")


def phase(progress: object, what: str, total: int | None) -> None:
    """Tell a meter that shows phases (one with ``phase(what, total)``, as the CLI's) what
    it counts now and out of how much: a known size is shown as one, never as ``?``."""
    announce = getattr(progress, "phase", None)
    if callable(announce):
        announce(what, total)


def check_bytes(snapshot: Snapshot, progress: Progress | None = None) -> None:
    """The archive's sha256 is its manifest's: read before anything decompresses or parses
    it (a few MB of zstd can expand to terabytes), an archive that is not the one its
    manifest names is refused as damaged, whatever a parser would make of it.

    An archive read from a store (``opener``) is not read a time more for this: every
    reading of it hashes it as it goes and refuses it at its end when the sha256 differs,
    before the restore counts (a target that held data is not touched until one whole
    reading passed), and stops decompressing once it holds more than its manifest says."""
    if snapshot.opener is not None:
        return
    try:
        if progress is not None:
            phase(progress, "checking the snapshot", os.stat(snapshot.archive).st_size)
        sha256 = file_sha256(snapshot.archive, progress=progress)
    except OSError as err:
        raise _unreadable(snapshot, err) from err
    _same_bytes(snapshot, sha256)


def check(snapshot: Snapshot, *, contents: bool = True) -> None:
    """Read the whole archive: its sha256, every entry and (``contents``) its tree digest.

    A restore into a target holding data checks the bytes and every entry before it
    touches anything, and the tree digest on what it wrote: hashing each file's content
    twice would be a pass for nothing."""
    check_bytes(snapshot)
    tree = _scan(snapshot, contents=contents)
    if contents and tree.hexdigest() != snapshot.manifest.tree_digest:
        # rewritten, with a matching manifest
        raise ChecksumError(f"snapshot {snapshot.id}: the archive's tree differs from its manifest")
    m = snapshot.manifest
    if contents and (tree.size, tree.files) != (m.size, m.files):
        # a manifest edited to claim more (its size bounds what a restore may write)
        raise ChecksumError(
            f"snapshot {m.id}: the archive holds {tree.files} files of {tree.size} bytes, "
            f"its manifest says {m.files} of {m.size}"
        )


def _scan(snapshot: Snapshot, *, contents: bool) -> TreeDigest:
    """Every entry checked (its bytes already were): the tree read."""
    m = snapshot.manifest
    try:
        with _opened(snapshot) as file:
            sha256, tree = scan_file(
                file,
                contents=contents,
                most=(m.size, m.files),
                hasher=content_hash(m.format_version),
            )
    except OSError as err:
        raise _unreadable(snapshot, err) from err
    except ArchiveError as err:
        raise ArchiveError(f"snapshot {m.id}: {err}") from err
    _same_bytes(snapshot, sha256)  # the file changed since its bytes were checked
    return tree


def _unreadable(snapshot: Snapshot, err: OSError) -> ChecksumError:
    return ChecksumError(f"snapshot {snapshot.id}: cannot read {snapshot.archive}: {err}")


def _same_bytes(snapshot: Snapshot, sha256: str) -> None:
    m = snapshot.manifest
    if sha256 != m.sha256:
        raise ChecksumError(
            f"snapshot {m.id}: checksum mismatch: the archive's sha256 is {sha256}, its "
            f"manifest says {m.sha256}; the archive is damaged"
        )


def restore_volume(
    engine: Engine,
    snapshot: Snapshot,
    volume: str,
    *,
    stop: bool = False,
    via: str = "auto",
    progress: Progress | None = None,
    made: bool = False,
    journal: Journal | None = None,
) -> None:
    """Make the existing volume ``volume`` hold exactly the snapshot's tree.

    ``made``: the caller made the volume for this restore and removes it if it fails.
    Written directly, such a volume (empty, used by nothing) is not read a time more for
    its archive's sha256 first: the writing hashes what it reads (``_write_dir``)."""
    direct_into_new = made and via != "api"
    if not direct_into_new:  # refused before any container is stopped
        check_bytes(snapshot, progress)
    users = engine_io.users(engine, volume=volume)
    running = [u for u in users if u.running]
    if running and not stop:
        names = ", ".join(u.name for u in running)
        raise InUseError(
            f"the volume {volume} is used by running containers ({names}); stop them, or "
            "pass --stop to stop them for the restore and start them again after"
        )
    live = engine_io.inspect_volume(engine, volume)
    if live is None:
        raise BackupError(f"the volume {volume} does not exist")
    with engine_io.stopped(engine, running, journal):
        mountpoint = None if via == "api" else engine_io.local_mountpoint(engine, live, write=True)
        if via == "direct" and mountpoint is None:
            why = engine_io.mounted_elsewhere(live) or "it is not writable from here"
            raise BackupError(
                f"cannot write the volume {volume}'s directory on this host: {why}; use "
                "--via api (a helper container that mounts it)"
            )
        if mountpoint is not None:
            _write_dir(snapshot, mountpoint, progress, checked=not direct_into_new)
        else:
            if direct_into_new:  # through the API after all: its bytes checked first
                check_bytes(snapshot, progress)
            if not made:  # what the API wrote cannot be taken back: every entry checked first
                _scan(snapshot, contents=False)
            phase(progress, "restoring", snapshot.manifest.size)
            _restore_api(engine, snapshot, volume, live, bool(users), progress)


def restore_dir(snapshot: Snapshot, root: str, progress: Progress | None = None) -> None:
    """Make the local directory ``root`` hold exactly the snapshot's tree."""
    _write_dir(snapshot, root, progress)


def _write_dir(
    snapshot: Snapshot, root: str, progress: Progress | None, *, checked: bool = False
) -> None:
    """Empty ``root``, write the tree, read it back.

    A target holding data is emptied only once the archive's sha256 (``check_bytes``)
    and every entry (``_scan``) passed. An empty one is written at once: the bytes read
    are hashed as they are written, within the manifest's size and file count, and a
    refused archive leaves it empty again, its error naming a checksum mismatch when
    that is the cause (not the first thing a parser stumbled on). ``checked``: the
    caller has checked the sha256 already."""
    m = snapshot.manifest
    fresh = extract.is_empty(root)
    if not fresh:  # what it holds is lost once emptied: the whole archive is checked first
        if not checked:
            check_bytes(snapshot, progress)
        _scan(snapshot, contents=False)
        extract.wipe(root)
    phase(progress, "restoring", m.size)
    try:
        with (
            gc_paused(),
            _opened(snapshot) as file,
            Prefetched(file) as source,
        ):
            extract.extract(source, root, progress, most=(m.size, m.files))
            _same_bytes(snapshot, source.finish())  # not the manifest's archive
    except BaseException as err:
        if fresh:  # it held nothing: it holds nothing again
            with contextlib.suppress(OSError):
                extract.wipe(root)
        if isinstance(err, ArchiveError):
            if fresh and not checked:
                check_bytes(snapshot)  # an archive not its manifest's: said so
            raise ArchiveError(f"snapshot {m.id}: {err}") from err
        raise
    with gc_paused():
        _compare(snapshot, rehash.digest_of(root, m.format_version))


def _compare(snapshot: Snapshot, tree: TreeDigest) -> None:
    if tree.hexdigest() != snapshot.manifest.tree_digest:
        raise ChecksumError(
            f"snapshot {snapshot.id}: the restored tree differs from the manifest's tree "
            "digest; the restore is incomplete"
        )


def _restore_api(
    engine: Engine,
    snapshot: Snapshot,
    volume: str,
    live: dict[str, Any],
    referenced: bool,
    progress: Progress | None,
) -> None:
    project = snapshot.manifest.project
    with engine_io.helper(engine, project, volume, read_only=True) as helper_id:
        empty = _is_empty(engine, helper_id)
    if not empty:
        if engine_io.storage_outlives(live):
            raise BackupError(
                f"the volume {volume} holds files in storage that outlives it "
                f"({engine_io.mounted_elsewhere(live)}): removing and making it again, the "
                "only way to empty it through the Engine API, would not empty it, and "
                "restoring over its files would mix both trees; empty it, or restore --into "
                "a new volume"
            )
        if referenced:
            raise BackupError(
                f"the volume {volume} holds files and containers reference it; through the "
                "Engine API dsr can only empty a volume by recreating it, which Docker "
                "refuses while it is referenced: remove those containers, or restore --into "
                "a new volume"
            )
        engine.api.remove_volume(volume)
        engine.api.create_volume(
            name=volume,
            driver=live.get("Driver") or "local",
            driver_opts=live.get("Options") or None,
            labels=live.get("Labels") or None,
        )
    with engine_io.helper(engine, project, volume, read_only=False) as helper_id:
        engine.api.put_archive(helper_id, "/", _prefixed(snapshot, progress))
        chunks, _ = engine.api.get_archive(helper_id, engine_io.MOUNT, chunk_size=CHUNK)
        hasher = content_hash(snapshot.manifest.format_version)
        _compare(snapshot, _digest_of_stream(IterReader.of(chunks), hasher))


def _is_empty(engine: Engine, helper_id: str) -> bool:
    chunks, _ = engine.api.get_archive(helper_id, engine_io.MOUNT, chunk_size=CHUNK)
    entries = read_tar(IterReader.of(chunks))
    try:
        next(entries)  # the root
        next(entries)
        return False
    except StopIteration:
        return True
    finally:
        # Stop reading the rest of the volume: the generator's end closes the response.
        with contextlib.suppress(Exception):
            entries.close()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            chunks.close()


def _digest_of_stream(stream: Any, hasher: Hasher) -> TreeDigest:
    tree = TreeDigest()
    for entry, content in read_tar(stream):
        if entry.kind == FILE:
            digest = hasher()
            for block in content:
                digest.update(block)
            entry.sha256 = digest.hexdigest()
        tree.add(entry)
    return tree


class _Queue:
    """A file-like ``write`` that hands 1 MiB chunks to a bounded queue."""

    def __init__(
        self, out: queue.Queue[bytes | BaseException | None], stop: threading.Event
    ) -> None:
        self.out = out
        self.stop = stop
        self.buffer = bytearray()

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:  # a consumer that gave up stops reading: do not block forever
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise BackupError("the restore stopped") from None

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._put(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self._put(bytes(self.buffer))
            self.buffer.clear()
        self._put(None)


def _prefixed(snapshot: Snapshot, progress: Progress | None) -> Iterator[bytes]:
    """The snapshot's tree as plain tar under ``v/``, for ``put_archive`` into ``/``.

    A thread decompresses and re-writes the (checked) entries into a bounded queue, so
    memory stays at a few chunks whatever the archive's size."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
    stop = threading.Event()

    def produce() -> None:
        sink = _Queue(chunks, stop)
        try:
            writer = TarWriter(sink, TreeDigest(), prefix="v/", progress=progress)  # type: ignore[arg-type]
            m = snapshot.manifest
            size = files = 0
            with _opened(snapshot) as file:
                source = Decompressed(file)
                for entry, content in read_tar(source.plain()):
                    if stop.is_set():
                        return
                    size += entry.size  # refused before its content is read
                    files += entry.kind != DIR
                    if size > m.size or files > m.files:
                        raise beyond((m.size, m.files))
                    writer.add(entry, content)
                source.drain()
            _same_bytes(snapshot, source.digest.hexdigest())  # before the tar's end is sent
            writer.close()
            sink.flush()
        except BaseException as err:  # handed to the consumer, which raises it
            with contextlib.suppress(BackupError):
                sink._put(err)

    thread = threading.Thread(target=produce, name="dsr-restore", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise BackupError(f"snapshot {snapshot.id}: {item}") from item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                chunks.get_nowait()


def create_volume(
    engine: Engine, name: str, driver: str, options: dict[str, str], labels: dict[str, str]
) -> None:
    """A new volume for ``restore --into``; refused when the name is taken."""
    if engine_io.inspect_volume(engine, name) is not None:
        raise BackupError(f"the volume {name} exists already; --into needs a new name")
    try:
        engine.api.create_volume(
            name=name,
            driver=driver,
            driver_opts=options or None,
            labels={**labels, INSTANCE: new_instance()},  # another volume than the backup's
        )
    except docker.errors.APIError as err:
        raise BackupError(f"cannot create the volume {name}: {err.explanation or err}") from err


__all__ = ["check", "check_bytes", "create_volume", "restore_dir", "restore_volume"]
