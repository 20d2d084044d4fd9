"""Decompressing an archive on a thread while the caller parses and writes its entries.

A restore reads each archive three times (its sha256 alone, then the check of every
entry, then the writing), and zstd is a third of the last two: ``Prefetched`` runs it (and the sha256 of the compressed bytes) on a worker
that fills a bounded queue with 1 MiB pieces, so at most a few MiB wait whatever the
archive's size. An error on the worker (a damaged frame) is raised in the caller at the
read that reaches it; a caller that stops early (``close``) stops the worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from typing import BinaryIO

import zstandard

from reconciler.backup.archive import CHUNK, Decompressed, beyond, read_tar
from reconciler.backup.errors import ArchiveError
from reconciler.backup.sink import big_buffers_to_the_os
from reconciler.backup.tree import FILE, Hasher, TreeDigest
from reconciler.files import open_regular

DEPTH = 8  # pieces waiting in the queue
TRAILER = 1 << 20  # plain bytes allowed after the end-of-archive blocks (tar pads records)


class Prefetched:
    """``read(n)`` of the plain bytes of the zstd file ``file`` (pieces of at most n
    bytes, as ``tarread`` asks); ``digest`` is its sha256 once it has been read whole."""

    def __init__(self, file: BinaryIO) -> None:
        big_buffers_to_the_os()
        self.source = Decompressed(file)
        self.pieces: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=DEPTH)
        self.stopped = threading.Event()
        self.left = b""
        self.ended = False
        self.worker = threading.Thread(target=self._work, name="dsr-decompress", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        try:
            plain = self.source.plain()
            while not self.stopped.is_set():
                piece = plain.read(CHUNK)
                if not piece:
                    self.source.drain()  # the sha256 covers the whole file
                    self._put(b"")
                    return
                self._put(piece)
        except zstandard.ZstdError as err:
            self._put(ArchiveError(f"the archive is damaged: {err}"))
        except BaseException as err:  # raised in the caller
            self._put(err)

    def _put(self, item: bytes | BaseException) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(queue.Full):
                self.pieces.put(item, timeout=0.1)
                return

    def read(self, size: int = -1, /) -> bytes:
        if not self.left:
            if self.ended:
                return b""
            item = self.pieces.get()
            if isinstance(item, BaseException):
                self.ended = True
                raise item
            if not item:
                self.ended = True
                return b""
            self.left = item
        if 0 <= size < len(self.left):
            data, self.left = self.left[:size], self.left[size:]
            return data
        data, self.left = self.left, b""
        return data

    def finish(self) -> str:
        """Read what follows the tar's end-of-archive blocks (at most ``TRAILER`` bytes,
        else refused): the compressed file's sha256."""
        after = 0
        while block := self.read(CHUNK):
            after += len(block)
            if after > TRAILER:
                raise ArchiveError("the archive goes on after its end (more than 1 MiB)")
        return self.hexdigest()

    def hexdigest(self) -> str:
        """The compressed file's sha256, once ``read`` has given its end."""
        if not self.ended:
            raise ValueError("the archive has not been read to its end")
        self.worker.join()
        return self.source.digest.hexdigest()

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.pieces.get_nowait()
        self.worker.join()

    def __enter__(self) -> Prefetched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan(
    path: str,
    *,
    contents: bool = True,
    most: tuple[int, int] | None = None,
    hasher: Hasher = hashlib.sha256,
) -> tuple[str, TreeDigest]:
    """Read a whole archive file: (sha256 of its bytes, digest of its checked tree; without
    ``contents``, files are skipped unhashed and the digest is not the tree's).

    ``most`` is (bytes, entries other than folders) its manifest records: an archive that
    holds more is refused as soon as it does, as is one with more than ``TRAILER`` bytes
    after its end, so a crafted archive cannot keep dsr decompressing for hours."""
    with os.fdopen(open_regular(path), "rb") as file:
        return scan_file(file, contents=contents, most=most, hasher=hasher)


def scan_file(
    file: BinaryIO,
    *,
    contents: bool = True,
    most: tuple[int, int] | None = None,
    hasher: Hasher = hashlib.sha256,
) -> tuple[str, TreeDigest]:
    """``scan`` of an archive read from ``file`` (a file, or a store's response)."""
    tree = TreeDigest()
    with Prefetched(file) as source:
        for entry, content in read_tar(source):
            # The size a header claims is compared before any of it is read: an 8 GiB
            # entry in a small archive is refused before it is decompressed and hashed.
            if most is not None and tree.size + entry.size > most[0]:
                raise beyond(most)
            if entry.kind == FILE and contents:
                digest = hasher()
                for block in content:
                    digest.update(block)
                entry.sha256 = digest.hexdigest()
            try:
                tree.add(entry)  # also refuses duplicates and hard links to non-files
            except ValueError as err:
                raise ArchiveError(str(err)) from err
            if most is not None and (tree.size > most[0] or tree.files > most[1]):
                raise beyond(most)
        return source.finish(), tree
