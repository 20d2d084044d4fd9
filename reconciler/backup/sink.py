"""The archive file being written: tar bytes in, compressed, hashed and written on a thread.

A backup is CPU-bound: walking, reading and hashing files is Python on the calling
thread, compressing (as much work again) is C. ``ArchiveSink`` hands the tar bytes, in
batches of a few MiB, to one worker thread that compresses them with zstd, hashes the
compressed bytes (the archive's sha256) and writes them, so both cores work.

The batches are large for a reason: each time the worker needs the GIL back it may wait
for the calling thread's Python, so it must need it rarely. zstd's output buffer is as
large as a batch, so one batch is one compression call and one write; a bounded queue
keeps the memory at a few batches whatever the tree's size. An error on the worker (a
full disk) is raised in the caller at its next ``write`` or at ``close``.

Dirty pages are flushed while the backup runs (``fdatasync`` each 32 MiB written, on a
thread that only waits for the disk), so the final ``fsync`` finds little left to do, and
each flushed part is read back and hashed there too: a backup counts only once the disk
gives back the bytes written, and that check no longer waits until the end.

What that read-back proves (measured for issue 20): the pages it reads are still in the
page cache, so it shows that the kernel holds what dsr wrote, not that the disk does;
``fdatasync`` succeeding is the disk's word. It is kept because its cost did not show
(1 GiB tree, 370 MB archive: 5.4-5.6 s of CPU with it, 5.6-5.7 s with one ``fsync`` at
the end instead), while the flushing it rides on is what keeps a backup's end short (one
final ``fsync`` of the whole archive took twice as long). A store's upload (``Passed``) needs neither: the store checks
each part's Content-MD5 and the object's size.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import queue
import threading
from typing import Any, Protocol

import zstandard

BATCH = 4 << 20  # tar bytes per queued item
BIG = 1 << 18  # a piece this large is queued as is rather than copied into a batch
QUEUE = 6  # items waiting for the worker: with BATCH, the memory this sink may hold
SYNC_EVERY = 32 << 20  # compressed bytes between background flushes and read-backs
READ_BACK = 4 << 20  # the read-back's buffer
ZSTD_LEVEL = 3  # zstd's own default, the level `zstd` uses without -#
_END = b""


def big_buffers_to_the_os() -> None:
    """Have glibc give every buffer of 1 MiB or more back to the system when it is freed.

    By default glibc raises its mmap threshold to the size of the largest block freed so
    far (up to 32 MiB), after which the batches and parts of a backup or restore are
    carved from the heap and stay counted in the process's memory once freed: 30 MB more
    at the peak, measured. Setting the threshold fixes it (and turns that rule off)."""
    global _THRESHOLD_SET
    if _THRESHOLD_SET:
        return
    _THRESHOLD_SET = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD_SET = False


def compressor(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    # zstd's own worker threads (``threads=``) cost more CPU per byte here than the one
    # thread of this sink, and small jobs, needed to keep their buffers small, more still.
    return zstandard.ZstdCompressor(level=level)


class ArchiveSink:
    """A file-like ``write`` of tar bytes into ``fd``, compressed; ``close`` gives
    (sha256 of the compressed bytes, their count) once they are all on disk."""

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
        self.output: Output = output if output is not None else _Output(fd, durable)
        self.parts: list[bytes] = []
        self.pending = 0
        # A store's upload holds parts of its own: fewer batches wait here then.
        self.items: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE if output is None else 3)
        self.error: BaseException | None = None
        self.aborted = False
        self.read_back = ""  # the sha256 of the file as read back from the disk
        self.worker = threading.Thread(target=self._work, name="dsr-compress", daemon=True)
        self.worker.start()

    # -- the calling thread ------------------------------------------------------------

    def write(self, data: bytes) -> int:
        size = len(data)
        if size >= BIG:
            self._send()
            self._put(data)
        elif size:
            self.parts.append(data)
            self.pending += size
            if self.pending >= BATCH:
                self._send()
        return size

    def _send(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            self.pending = 0
            self._put(data)

    def _put(self, item: bytes) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue  # the worker is busy, or died: look again

    def close(self) -> tuple[str, int]:
        """Write what is left, end the zstd frame, ``fsync`` and read back: (sha256 of the
        bytes written, their count); ``read_back`` is then the sha256 the disk gives."""
        self._send()
        self._put(_END)
        self.worker.join()
        if self.error is not None:
            raise self.error
        return self.output.digest.hexdigest(), self.output.count

    def abort(self) -> None:
        """Stop the worker without finishing the file (it is being thrown away)."""
        self.aborted = True
        self.parts.clear()
        while self.worker.is_alive():
            try:
                self.items.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self.worker.join()

    # -- the worker --------------------------------------------------------------------

    def _work(self) -> None:
        out = self.output
        try:
            size = getattr(out, "write_size", BATCH * 2)
            zstd = compressor(self.level).stream_writer(out, write_size=size, closefd=False)  # type: ignore[arg-type]
            while (item := self.items.get()) is not _END and not self.aborted:
                zstd.write(item)
            if not self.aborted:
                zstd.flush(zstandard.FLUSH_FRAME)
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

    write_size = 1 << 20  # zstd's writes: small pieces, the upload gathers its parts

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


class _Output:
    """Where zstd writes (on the worker): hash, write, and have the disk checked now and then."""

    def __init__(self, fd: int, durable: bool = True) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.count = 0
        self.durable = durable
        self.check = ReadBack(fd)

    def finish(self) -> str:
        # A staged copy is not kept: the store's upload rehashes it as it reads it.
        return self.check.finish(self.count) if self.durable else self.digest.hexdigest()

    def stop(self) -> None:
        self.check.stop()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        before = self.count
        self.count += len(data)
        if self.durable and self.count // SYNC_EVERY != before // SYNC_EVERY:
            self.check.kick(self.count)
        return len(data)


class ReadBack:
    """The file's bytes as the disk gives them back, hashed while the backup goes on.

    Each kick names how far the file is written: a thread that only waits for the disk
    ``fdatasync``s, then reads that part back (``pread``) and hashes it. ``finish``
    ``fsync``s the file and reads back what is left, so a backup ends with one whole
    read-back of the archive without a pass of its own. An error reading is kept and
    raised by ``finish``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
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
        """``fsync``, read back what is left: the sha256 of the file's first ``size`` bytes."""
        self.stop()
        if self.error is not None:
            raise self.error
        os.fsync(self.fd)
        self._read(size)
        return self.digest.hexdigest()
