"""The archive file being written: tar bytes in, compressed, hashed and written on a thread.

A backup is CPU-bound: walking, reading and hashing files is Python on the calling
thread, compressing (as much work again) is C. ``ArchiveSink`` hands the tar bytes, in
batches of a few MiB, to two threads that compress each batch into a zstd frame of its
own, and one thread writes the frames in order, hashing them (the archive's sha256), so
both cores work even while the calling thread only waits (a large file's bytes).

The batches are large for a reason: each time a thread needs the GIL back it may wait
for the calling thread's Python, so it must need it rarely; one batch is one frame and
one write. A bounded queue keeps the memory at a few batches whatever the tree's size.
An error on a thread (a full disk) is raised in the caller at its next ``write`` or at
``close``.

Dirty pages are flushed while the backup runs (``fdatasync`` each 32 MiB written, on a
thread that only waits for the disk), so the final ``fsync`` finds little left to do: one
final ``fsync`` of the whole archive took twice as long.

Nothing is read back (decided for issue 20). Reading the archive back right after writing
it, as dsr did until then, read the pages dsr had just written, still in the page cache:
it showed that the kernel held what dsr wrote, never that the disk did. That is what the
sha256 computed here of every byte handed to ``write`` already says, with ``write``'s
counts and the file's size checked at the end; ``fdatasync`` and ``fsync`` succeeding is
the only word the disk gives, and a later ``dsr backups verify`` (reading the file once it
is out of the cache) is what checks the disk's copy. An ``O_DIRECT`` read-back would check
it, at the price of reading the whole archive from the disk in every backup. A store's
upload (``Passed``) is no different: the store checks each part's Content-MD5 and the
object's size, and nothing on this host is read back.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import zstandard

BATCH = 2 << 20  # tar bytes per zstd frame (4 MiB: 20 MB more at the peak, no faster)
COMPRESSORS = 2  # threads compressing frames (zstd lets go of the GIL meanwhile)
QUEUE = 4  # frames waiting for the writer: with BATCH, the memory this sink may hold
SYNC_EVERY = 32 << 20  # compressed bytes between background flushes and read-backs
ZSTD_LEVEL = 3  # zstd's own default, the level `zstd` uses without -#
_END = b""


def big_buffers_to_the_os() -> None:
    """Have glibc give every buffer over 2 MiB back to the system when it is freed.

    By default glibc raises its mmap threshold to the size of the largest block freed so
    far (up to 32 MiB), after which the batches and parts of a backup or restore are
    carved from the heap and stay counted in the process's memory once freed: 30 MB more
    at the peak, measured. Setting the threshold fixes it (and turns that rule off).
    Not lower: at 1 MiB every block a large file is read in (1 MiB and a header) was a
    fresh mapping whose pages the kernel zeroed and faulted in, 0.25 s of system time for
    a 1 GiB tree; at 2 MiB they are reused from the heap, while the 2 MiB batches and the
    store's parts still go back (at 4 MiB an encrypted upload's peak was 6 MB higher)."""
    global _THRESHOLD_SET
    if _THRESHOLD_SET:
        return
    _THRESHOLD_SET = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 2 << 20)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD_SET = False


def compressor(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    # zstd's own worker threads (``threads=``) cost more CPU per byte here than this
    # sink's threads, each compressing frames of its own (measured: 2.35 s against 1.3 s
    # of CPU for 1.1 GB of tar), and small jobs, needed to keep their buffers small, more.
    return zstandard.ZstdCompressor(level=level)


class ArchiveSink:
    """A file-like ``write`` of tar bytes into ``fd``, compressed; ``close`` gives
    (sha256 of the compressed bytes, their count) once they are all on disk.

    Each batch of tar bytes becomes a zstd frame of its own, compressed on one of
    ``COMPRESSORS`` threads; a writer thread takes the frames in order and writes them.
    Concatenated frames are one zstd stream (``zstd -d`` reads them; dsr reads across
    frames). One stream on one thread was measured: compressing was half of a backup's
    CPU, and while the large files of a tree went by the walking thread waited for it."""

    def __init__(
        self,
        fd: int,
        level: int = ZSTD_LEVEL,
        *,
        durable: bool = True,
        output: Output | None = None,
    ) -> None:
        big_buffers_to_the_os()
        self.level = level
        self.durable = durable
        self.output: Output = output if output is not None else FileOutput(fd, durable)
        self.parts: list[bytes] = []
        self.pending = 0
        # Frames in the making or made, in archive order: with BATCH, the memory held.
        # A store's upload holds parts of its own: fewer wait here then.
        self.frames: queue.Queue[Future[bytes] | None] = queue.Queue(
            maxsize=QUEUE if output is None else 1
        )
        self.pool = ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="dsr-compress")
        self.local = threading.local()  # each thread's compressor: they are not shared
        self.error: BaseException | None = None
        self.aborted = False
        self.worker = threading.Thread(target=self._work, name="dsr-write", daemon=True)
        self.worker.start()

    # -- the calling thread ------------------------------------------------------------

    def write(self, data: bytes) -> int:
        size = len(data)
        if size:
            self.parts.append(data)
            self.pending += size
            if self.pending >= BATCH:
                self._send()
        return size

    def _send(self) -> None:
        if self.parts:
            parts = self.parts
            self.parts = []
            self.pending = 0
            self._put(self.pool.submit(self._frame, parts))

    def _put(self, item: Future[bytes] | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue  # the writer is busy, or died: look again

    def close(self) -> tuple[str, int]:
        """Write what is left and ``fsync``: (sha256 of the bytes written, their count)."""
        try:
            self._send()
            self._put(None)
        except BaseException:
            self.abort()  # no thread outlives a failed backup
            raise
        self.worker.join()
        self.pool.shutdown()
        if self.error is not None:
            raise self.error
        return self.output.digest.hexdigest(), self.output.count

    def abort(self) -> None:
        """Stop the threads without finishing the file (it is being thrown away)."""
        self.aborted = True
        self.parts = []
        while self.worker.is_alive():
            try:
                self.frames.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self.worker.join()
        self.pool.shutdown(cancel_futures=True)

    # -- the compressing threads -------------------------------------------------------

    def _frame(self, parts: list[bytes]) -> bytes:
        """One zstd frame of ``parts`` (its size left out of the header: the parameters
        zstd picks for a known 4 MiB cost a third more CPU for the same ratio)."""
        if self.aborted:
            return b""
        zstd: zstandard.ZstdCompressor | None = getattr(self.local, "zstd", None)
        if zstd is None:
            zstd = self.local.zstd = compressor(self.level)
        frame = zstd.compressobj()
        out = [frame.compress(part) for part in parts]
        out.append(frame.flush())
        return b"".join(out)

    # -- the writer --------------------------------------------------------------------

    def _work(self) -> None:
        out = self.output
        try:
            written = False
            while (item := self.frames.get()) is not None and not self.aborted:
                frame = item.result()
                if frame:
                    out.write(frame)
                    written = True
            if not self.aborted:
                if not written:  # an empty stream is still a zstd frame
                    out.write(self._frame([]))
                out.finish()
        except BaseException as err:  # raised in the caller
            self.error = err
        finally:
            out.stop()


class Output(Protocol):
    """Where the worker's compressed bytes go: ``digest``/``count`` of what was written;
    ``finish`` (after the last write) stores them for good and gives their sha256."""

    digest: Any
    count: int

    def write(self, data: bytes) -> int: ...

    def finish(self) -> str: ...

    def stop(self) -> None: ...


class Passed:
    """The compressed bytes handed on to ``into`` (a store's upload), hashed and counted.

    Nothing is written to this host's disk: the store checks each part it is sent (its
    Content-MD5), and the upload checks the stored object's size before it counts."""

    def __init__(self, into: Any) -> None:
        self.into = into
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.count += len(data)
        self.into.write(data)
        return len(data)

    def finish(self) -> str:
        return self.digest.hexdigest()

    def stop(self) -> None:
        pass


class FileOutput:
    """Where the frames are written (on the writer): hashed (the archive's sha256, the
    manifest's), written, and flushed to the disk now and then. Without ``sha256`` (a place
    of a ``tee.Tee``, whose bytes are hashed once for all places) nothing is hashed."""

    def __init__(self, fd: int, durable: bool = True, *, sha256: bool = True) -> None:
        self.fd = fd
        self.digest: Any = hashlib.sha256() if sha256 else None
        self.count = 0
        self.durable = durable
        self.flusher = Flusher(fd)

    def finish(self) -> str:
        """The archive's sha256, once the disk has it (``fsync``) when ``durable``."""
        if self.durable:  # not: a staged copy, which the store's upload rehashes as it reads
            self.flush()
        return str(self.digest.hexdigest())

    def flush(self) -> None:
        """``fsync``: every byte written is on the disk (an error writing it is raised)."""
        self.flusher.finish()

    def stop(self) -> None:
        self.flusher.stop()

    def write(self, data: bytes) -> int:
        if self.digest is not None:
            self.digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        before = self.count
        self.count += len(data)
        if self.durable and self.count // SYNC_EVERY != before // SYNC_EVERY:
            self.flusher.kick()
        return len(data)


class Flusher:
    """``fdatasync`` on a thread that only waits for the disk, each time it is kicked, while
    the backup goes on; ``finish`` ``fsync``s what is left. An error flushing is kept and
    raised by ``finish``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None
        self.wake = threading.Event()
        self.stopped = False
        self.thread: threading.Thread | None = None

    def kick(self) -> None:
        if self.thread is None and not self.stopped:
            self.thread = threading.Thread(target=self._run, name="dsr-fdatasync", daemon=True)
            self.thread.start()
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopped:
                return
            try:
                os.fdatasync(self.fd)
            except OSError as err:
                self.error = err
                return

    def stop(self) -> None:
        self.stopped = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def finish(self) -> None:
        self.stop()
        if self.error is not None:
            raise self.error
        os.fsync(self.fd)
