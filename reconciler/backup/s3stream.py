"""Archives streamed into and out of an S3 store, with no copy on this host's disk.

Backing up, the compressing thread hands the archive's bytes to a ``tee.Tee``: with
``encrypt_to`` they go through age once (``Encrypting``: pyrage, on a thread of its own
that reads them from a bounded queue), then into each place's sink; an S3 place's is
``Streamed``, the multipart ``Upload``, whose parts are sent on a small pool of threads
while the next ones fill. Each stage holds a bounded number of pieces, so the memory stays
the same whatever the volume's size. The upload is completed and its size checked by
``finish``; the manifest is written after that (``commit``); until then ``abort`` aborts
the upload (its parts go with it) or deletes the completed object.

Restoring, ``opened`` gives the archive as a file-like read from the store's response
(through age on a thread when it is encrypted). The reader checks the archive's sha256 as
it goes (``archive.Decompressed``); a restore compares it with the manifest before it
counts, and one into a target that holds data reads the archive twice: once to check it
whole, then to write it (see ``reconciler.backup.restore``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from reconciler.backup import crypt
from reconciler.backup.errors import BackupError
from reconciler.backup.s3io import READ, Upload

DEPTH = 1  # pieces (a frame each, at most ~2 MiB) waiting for age
PIECE = 1 << 20  # decrypted bytes per piece handed to the restore
RESTORE_DEPTH = 8


class _Stopped(BackupError):
    """The other side of a pipe gave up (its own error is the one reported)."""


class Encrypting:
    """``write`` of plain bytes, encrypted with age on a thread into ``into`` (whose
    ``error``, once set, is the reason it stopped taking them)."""

    def __init__(self, into: Any, to: Sequence[Any]) -> None:
        self.into = into
        self.to = list(to)
        self.items: queue.Queue[bytes | None] = queue.Queue(maxsize=DEPTH)
        self.current = b""
        self.at = 0
        self.ended = False
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dsr-age", daemon=True)
        self.thread.start()

    # -- the age thread (pyrage reads from here) -------------------------------------------

    def _run(self) -> None:
        try:
            crypt.encrypt_stream(self, self.into, self.to)
        except BaseException as err:
            self.error = err

    def read(self, size: int = -1, /) -> bytes:
        while self.at >= len(self.current):
            if self.ended:
                return b""
            item = self._get()
            if item is None:
                self.ended = True
                return b""
            self.current, self.at = item, 0
        left = len(self.current) - self.at
        n = left if size < 0 else min(size, left)
        data = self.current[self.at : self.at + n]
        self.at += n
        return data

    def readable(self) -> bool:
        return True

    def _get(self) -> bytes | None:
        while True:
            if self.stopped.is_set():
                raise _Stopped("the upload stopped")
            with contextlib.suppress(queue.Empty):
                return self.items.get(timeout=0.1)

    # -- the compressing thread ---------------------------------------------------------

    def write(self, data: bytes) -> int:
        self._put(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    def _put(self, item: bytes | None) -> None:
        while True:
            if not self.thread.is_alive():
                raise self._failure()
            with contextlib.suppress(queue.Full):
                self.items.put(item, timeout=0.1)
                return

    def _failure(self) -> BaseException:
        return self.into.error or self.error or BackupError("age encryption stopped")

    def close(self) -> None:
        """The last bytes given: age's last chunk written into the upload."""
        self._put(None)
        self.thread.join()
        if self.error is not None or self.into.error is not None:
            raise self._failure()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


class Streamed:
    """One new snapshot's archive (encrypted already, when it is) on its way into an S3
    place: a ``tee.Sink``."""

    def __init__(self, store: Any, base: str, key: str) -> None:
        self.store = store
        self.base = base  # the snapshot's "folder": its manifest goes there
        self.key = key
        self.upload = Upload(store, key)
        self.completed = False
        self.kept = False

    @property
    def url(self) -> str:
        return str(self.store.url)

    def write(self, data: bytes) -> int:
        return self.upload.write(data)

    def finish(self, sha256: str, size: int) -> None:
        """Every part stored and checked (their Content-MD5), the object's size too."""
        self.upload.complete()
        self.completed = True

    def commit(self, manifest: Any) -> None:
        """The manifest, last: from now on the snapshot lists."""
        self.store.put_manifest(self.base, manifest)
        self.kept = True
        self.store.forget_upload(self.key)

    def abort(self) -> None:
        """Undo what is not a snapshot: the open upload, or the completed object."""
        if self.kept:
            return
        self.upload.abort()
        if self.completed:
            with contextlib.suppress(Exception):
                self.store.quick_client.delete_object(Bucket=self.store.bucket, Key=self.key)
            self.completed = False
        # the record stays: the abort may not have reached the store (the next run's does)


class _Body:
    """``read(n)`` of a response body, its errors said as the store's."""

    def __init__(self, store: Any, body: Any, key: str) -> None:
        self.store = store
        self.body = body
        self.key = key
        self.error: BaseException | None = None
        self.piece = b""
        self.at = 0

    def read(self, size: int = -1, /) -> bytes:
        # age asks for 8 KiB at a time: served from a piece of READ bytes, so that the
        # response is read (through botocore and urllib3) 128 times less often.
        if self.at >= len(self.piece):
            try:
                with self.store._errors(f"download {self.key}"):
                    self.piece = self.body.read(max(size, READ))
            except BaseException as err:
                self.error = err  # age only says it could not read: this is why
                raise
            self.at = 0
        n = len(self.piece) - self.at if size is None or size < 0 else size
        data = self.piece[self.at : self.at + n]
        self.at += len(data)
        return data

    def readable(self) -> bool:
        return True


class Decrypting:
    """``read(n)`` of an age-encrypted body's plain bytes, decrypted on a thread."""

    def __init__(self, source: _Body, keys: Sequence[Any], what: str) -> None:
        self.source = source
        self.keys = list(keys)
        self.what = what
        self.items: queue.Queue[bytes | BaseException | None] = queue.Queue(RESTORE_DEPTH)
        self.buffer = bytearray()
        self.left = b""
        self.at = 0
        self.ended = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dsr-age-d", daemon=True)
        self.thread.start()

    # -- the age thread (pyrage writes here) ----------------------------------------------

    def _run(self) -> None:
        try:
            crypt.decrypt_stream(self.source, self, self.keys, self.what)
            if self.buffer:
                self._put(bytes(self.buffer))
            self._put(None)
        except _Stopped:
            return
        except BaseException as err:
            with contextlib.suppress(_Stopped):
                self._put(self.source.error or err)

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= PIECE:
            self._put(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self.stopped.is_set():
                raise _Stopped("the restore stopped")
            with contextlib.suppress(queue.Full):
                self.items.put(item, timeout=0.1)
                return

    # -- the reading thread -------------------------------------------------------------

    def read(self, size: int = -1, /) -> bytes:
        while self.at >= len(self.left):
            if self.ended:
                return b""
            item = self.items.get()
            if isinstance(item, BaseException):
                self.ended = True
                raise item
            if item is None:
                self.ended = True
                return b""
            self.left, self.at = item, 0
        n = len(self.left) - self.at if size < 0 else min(size, len(self.left) - self.at)
        data = self.left[self.at : self.at + n]
        self.at += n
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.items.get_nowait()
        self.thread.join()


@contextlib.contextmanager
def opened(store: Any, key: str, encrypted: bool) -> Iterator[Any]:
    """The archive stored as ``key``, as a file-like of its (decrypted) bytes."""
    with store._errors(f"download {key}"):
        body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    source = _Body(store, body, key)
    try:
        if not encrypted:
            yield source
            return
        reader = Decrypting(source, store.identities, key)
        try:
            yield reader
        finally:
            reader.close()
    finally:
        with contextlib.suppress(Exception):
            body.close()
