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
thread that only waits for the disk), so the final ``fsync`` finds little left to do, and
each flushed part is read back and hashed there too: a backup counts only once the disk
gives back the bytes written, and that check no longer waits until the end.

What that read-back proves (measured for issue 20): the pages it reads are still in the
page cache, so it shows that the kernel holds what dsr wrote, not that the disk does;
``fdatasync`` succeeding is the disk's word. It is kept because its cost did not show
(1 GiB tree, 370 MB archive: 5.4-5.6 s of CPU with it, 5.6-5.7 s with one ``fsync`` at
the end instead), while the flushing it rides on is what keeps a backup's end short (one
final ``fsync`` of the whole archive took twice as long). The written and the read-back
bytes are compared by BLAKE3 (the pair costs a fifth of two sha256). A store's upload
(``Passed``) needs neither: the store checks each part's Content-MD5 and the object's size.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import zstandard

BATCH = 2 << 20  # tar bytes per zstd frame (4 MiB: 20 MB more at the peak, no faster)
COMPRESSORS = 2  # threads compressing frames (zstd lets go of the GIL meanwhile)
QUEUE = 4  # frames waiting for the writer: with BATCH, the memory this sink may hold
SYNC_EVERY = 32 << 20  # compressed bytes between background flushes and read-backs
READ_BACK = 4 << 20  # the read-back's buffer
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
        self.read_back = ""  # the archive's sha256 once the disk gave back what was written
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
        """Write what is left, ``fsync`` and read back: (sha256 of the bytes written,
        their count); ``read_back`` is then that sha256 if the disk gives back the bytes
        written, else something else."""
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
        zstd picks for a known 4 MiB cost a third more CPU for the same ratio).

        The parts are joined and compressed in one call: each call lets go of the GIL and
        must take it back, and a batch of small files is hundreds of parts (a header and a
        file each), so a thread compressing them part by part took the GIL back hundreds
        of times a batch, each time from the walking thread, the one a backup waits for
        (measured: its BLAKE3 of 49,000 small files took 3x as long while another thread
        took the GIL back that often)."""
        if self.aborted:
            return b""
        zstd: zstandard.ZstdCompressor | None = getattr(self.local, "zstd", None)
        if zstd is None:
            zstd = self.local.zstd = compressor(self.level)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()  # the parts' memory goes back now, not when the frame is done
        frame = zstd.compressobj()
        return frame.compress(data) + frame.flush()

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
                self.read_back = out.finish()
        except BaseException as err:  # raised in the caller
            self.error = err
        finally:
            out.stop()


class Output(Protocol):
    """Where the worker's compressed bytes go: ``digest``/``count`` of what was written;
    ``finish`` (after the last write) gives the sha256 of the bytes as they were stored."""

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
    """Where the frames are written (on the writer): hashed, written, and the disk checked
    now and then. The check compares BLAKE3 digests of the bytes written and of the bytes
    read back: a sha256 of each cost 0.9 s of CPU for a 370 MB archive, the BLAKE3 pair a
    fifth of that; the archive's sha256 (the manifest's) is computed once, as written.
    Without ``sha256`` (a place of a ``tee.Tee``, whose bytes are hashed once for all
    places) only the BLAKE3 pair is kept."""

    def __init__(self, fd: int, durable: bool = True, *, sha256: bool = True) -> None:
        self.fd = fd
        self.digest: Any = hashlib.sha256() if sha256 else None
        self.written = _blake3()
        self.count = 0
        self.durable = durable
        self.check = ReadBack(fd)

    def finish(self) -> str:
        """The archive's sha256 if the disk gives back the bytes written, else the
        digest of what it gave back (which matches no sha256 of the archive)."""
        if self.durable and (read_back := self.unlike()) is not None:
            return f"blake3:{read_back}"
        # a staged copy (not durable): the store's upload rehashes it as it reads it
        return str(self.digest.hexdigest())

    def unlike(self) -> str | None:
        """``fsync`` and read back: ``None`` if the disk gives back the bytes written, else
        the BLAKE3 of what it gave back."""
        read_back = self.check.finish(self.count)
        return None if read_back == self.written.hexdigest() else read_back

    def stop(self) -> None:
        self.check.stop()

    def write(self, data: bytes) -> int:
        if self.digest is not None:
            self.digest.update(data)
        self.written.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        before = self.count
        self.count += len(data)
        if self.durable and self.count // SYNC_EVERY != before // SYNC_EVERY:
            self.check.kick(self.count)
        return len(data)


def _blake3() -> Any:
    from blake3 import blake3

    return blake3()


class ReadBack:
    """The file's bytes as the disk gives them back, hashed (BLAKE3, or ``hasher``) while the
    backup goes on.

    Each kick names how far the file is written: a thread that only waits for the disk
    ``fdatasync``s, then reads that part back (``pread``) and hashes it. ``finish``
    ``fsync``s the file and reads back what is left, so a backup ends with one whole
    read-back of the archive without a pass of its own. An error reading is kept and
    raised by ``finish``."""

    def __init__(self, fd: int, hasher: Callable[[], Any] | None = None) -> None:
        self.fd = fd
        self.digest = hasher() if hasher is not None else _blake3()
        self.done = 0  # bytes read back and hashed
        self.target = 0  # bytes written when last kicked
        self.error: OSError | None = None
        self.wake = threading.Event()
        self.stopped = False
        self.thread: threading.Thread | None = None
        self.buffer = bytearray(READ_BACK)

    def kick(self, written: int) -> None:
        self.target = written
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
                target = self.target
                os.fdatasync(self.fd)
                self._read(target)
            except OSError as err:
                self.error = err
                return

    def _read(self, upto: int) -> None:
        view = memoryview(self.buffer)
        while self.done < upto:
            n = os.preadv(self.fd, [view[: min(READ_BACK, upto - self.done)]], self.done)
            if not n:
                raise OSError(f"the archive ends at {self.done} bytes, {upto} were written")
            self.digest.update(view[:n])
            self.done += n

    def stop(self) -> None:
        self.stopped = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def finish(self, size: int) -> str:
        """``fsync``, read back what is left: the digest of the file's first ``size`` bytes."""
        self.stop()
        if self.error is not None:
            raise self.error
        os.fsync(self.fd)
        self._read(size)
        return str(self.digest.hexdigest())
