"""One archive streamed into every place of a rule at once, with no copy staged on the host.

A rule's ``destination`` may list several places (a folder and a bucket, two buckets).
The archive is made once; its compressed bytes are encrypted once (when the rule has
``encrypt_to``: every place gets the same encrypted archive) and each chunk is written
into each place's ``Sink`` in turn: a folder's file, an S3 multipart upload. A sink that
is slow holds the others back (its ``write`` blocks while its parts travel), so the
memory stays that of one chunk plus what each sink holds itself, whatever the tree's size.

A place that fails (a store that stops answering, a bucket that refuses the credentials,
a full disk) is dropped there and then: its sink is aborted (no manifest, nothing that
lists there) and the others go on. Each surviving sink is finished (every byte stored and
checked), then given the manifest, last. The places missed are said by ``PlacesFailed``,
with the manifest when some place holds the snapshot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

from reconciler import logs
from reconciler.backup.errors import BackupError, PlacesFailed
from reconciler.backup.manifest import Manifest
from reconciler.backup.s3stream import Encrypting, Streamed
from reconciler.backup.sink import FileOutput

log = logs.get_logger("dsr.backup")


class Sink(Protocol):
    """One place's side of a new snapshot: its archive's bytes, then its manifest."""

    @property
    def url(self) -> str: ...

    def write(self, data: bytes) -> int: ...

    def finish(self, sha256: str, size: int) -> None:
        """Every byte written is stored and checked; ``size`` is the count of the bytes
        given (encrypted ones when the place encrypts), ``sha256`` the archive's (``""``
        when encrypted)."""

    def commit(self, manifest: Manifest) -> None:
        """Store the manifest, last: the snapshot lists here from now on."""

    def abort(self) -> None:
        """Remove what was stored (nothing lists); safe to call twice, or after commit."""


def said(err: BaseException) -> str:
    return str(err) or type(err).__name__


class Tee:
    """``run.Stream`` over several places' sinks; ``failed`` (url -> why) gains each place
    that drops out, and ``commit`` gives the urls that hold the snapshot."""

    def __init__(self, sinks: Sequence[Sink], failed: dict[str, str], to: Sequence[Any]) -> None:
        self.fan = _Fan(sinks, failed)
        self.age = Encrypting(self.fan, to) if to else None

    def write(self, data: bytes) -> int:
        if self.age is not None:
            return self.age.write(data)
        return self.fan.write(data)

    def finish(self, sha256: str, size: int) -> None:
        if self.age is not None:
            self.age.close()  # age's last chunk written into every sink
            sha256, size = "", self.fan.count  # of the encrypted bytes: no manifest holds it
        self.fan.flush()
        self.fan.each(lambda sink: sink.finish(sha256, size))

    def commit(self, manifest: Manifest) -> list[str]:
        self.fan.each(lambda sink: sink.commit(manifest))
        return [sink.url for sink in self.fan.live]

    def abort(self) -> None:
        if self.age is not None:
            self.age.stop()
        for sink in self.fan.live:
            with contextlib.suppress(Exception):
                sink.abort()


class _Fan:
    """``write`` into every live sink; one that fails is aborted and dropped.

    With several stores, the bytes are gathered here into whole parts, each handed to
    every sink as one object: each upload sends that part as it is (``s3io.Upload``), so
    the stores share one part filling and one travelling (each store's own, 8 MiB and 8
    MiB, was 16 MB more at the peak a store), and as many parts travel as for one store."""

    def __init__(self, sinks: Sequence[Sink], failed: dict[str, str]) -> None:
        self.live = list(sinks)
        self.failed = failed
        self.count = 0
        self.error: BaseException | None = None  # set once no place is left
        uploads = [sink.upload for sink in sinks if isinstance(sink, Streamed)]
        self.part: bytearray | None = bytearray() if len(uploads) > 1 else None
        for upload in uploads if self.part is not None else ():
            upload.most_ahead = 1

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.part is None:
            self.each(lambda sink: sink.write(data))
            return len(data)
        self.part += data
        uploads = [sink.upload for sink in self.live if isinstance(sink, Streamed)]
        if len(self.part) >= max((upload.part for upload in uploads), default=0):
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Hand on the part gathered (the last one: fewer bytes)."""
        if self.part:
            part, self.part = self.part, bytearray()
            self.each(lambda sink: sink.write(part))

    def each(self, step: Any) -> None:
        for sink in list(self.live):
            try:
                step(sink)
            except Exception as err:  # this place's failure only: the others go on
                self.drop(sink, err)
        if not self.live:
            self.error = PlacesFailed(None, [], dict(self.failed))
            raise self.error

    def drop(self, sink: Sink, err: BaseException) -> None:
        self.live.remove(sink)
        self.failed[sink.url] = said(err)
        log.error("store_failed", destination=sink.url, error=said(err))
        with contextlib.suppress(Exception):
            sink.abort()


class FolderSink:
    """A folder place's new snapshot: its archive written in place as it is made and
    flushed to the disk while the backup goes on (``sink.FileOutput``).

    The snapshot's folder is made through descriptors (``store.open_folder``) from the
    destination's resolved path, judged by the place's ``guard`` (the admin policy) as it
    is made: a destination that became a link to a folder the policy refuses, before the
    backup or while it runs, gets nothing written there; the archive, the manifest and an
    abort's removal all go through the snapshot folder's own descriptor."""

    def __init__(self, place: Any, target: str, name: str) -> None:
        from reconciler.backup.store import MadeFolder

        self.place = place
        self.target = target
        self.name = name
        real = os.path.realpath(place.url)
        guard = getattr(place, "guard", None)
        problem = guard(real) if guard is not None else None
        if problem:
            raise BackupError(problem)
        project, snapshot_id = os.path.relpath(target, place.url).split(os.sep)
        self.folder = MadeFolder(real, project, [snapshot_id], taken=f"{target} exists already")
        try:
            self.fd = self.folder.create(name)
        except BaseException:
            self.folder.undo()
            self.folder.close()
            raise
        self.path = os.path.join(target, name)
        self.out = FileOutput(self.fd, sha256=False)  # the Tee hashes once for every place
        self.kept = False

    @property
    def url(self) -> str:
        return str(self.place.url)

    def write(self, data: bytes) -> int:
        return self.out.write(data)

    def finish(self, sha256: str, size: int) -> None:
        self.out.flush()
        if self.out.count != size or os.fstat(self.fd).st_size != size:
            raise BackupError(f"{self.path} is not the size written ({size} bytes)")

    def commit(self, manifest: Manifest) -> None:
        self._close()
        self.place.write_manifest_in(self.target, manifest, dir_fd=self.folder.fd)
        self.kept = True
        self.folder.close()

    def abort(self) -> None:
        self.out.stop()
        self._close()
        if not self.kept:
            self.folder.undo()  # through its descriptors: wherever the paths lead now
        self.folder.close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
