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
import queue
import threading
from typing import BinaryIO

import zstandard

from reconciler.backup.archive import CHUNK, Decompressed, read_tar
from reconciler.backup.errors import ArchiveError
from reconciler.backup.tree import FILE, TreeDigest

DEPTH = 8  # pieces waiting in the queue


class Prefetched:
    """``read(n)`` of the plain bytes of the zstd file ``file`` (pieces of at most n
    bytes, as ``tarread`` asks); ``digest`` is its sha256 once it has been read whole."""

    def __init__(self, file: BinaryIO) -> None:
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


def scan(path: str, *, contents: bool = True) -> tuple[str, TreeDigest]:
    """Read a whole archive file: (sha256 of its bytes, digest of its checked tree; without
    ``contents``, files are skipped unhashed and the digest is not the tree's)."""
    tree = TreeDigest()
    with open(path, "rb") as file, Prefetched(file) as source:
        for entry, content in read_tar(source):
            if entry.kind == FILE and contents:
                digest = hashlib.sha256()
                for block in content:
                    digest.update(block)
                entry.sha256 = digest.hexdigest()
            try:
                tree.add(entry)  # also refuses duplicates and hard links to non-files
            except ValueError as err:
                raise ArchiveError(str(err)) from err
        while source.read(CHUNK):  # what follows the end-of-archive blocks
            pass
        return source.hexdigest(), tree
