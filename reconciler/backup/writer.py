"""Small files of a restore written by a second process, on the other core.

A restore of many small files is mostly the kernel creating them: ``open``, ``write``,
``fchown``, ``utime``, ``close``, about 60 µs a file on ext4, with only a little Python
between those calls. Threads cannot share that work (each call hands the GIL over and
back), so a small Python process (``-I -S``: no site, no environment, only ``os`` and
``struct``) writes the small files, named and carried to it through a pipe, while this
process parses the archive and writes the large ones.

What it is given has passed ``read_tar``'s checks: a relative path whose folder is a
directory this restore made, so it creates each file new (``O_EXCL | O_NOFOLLOW``) exactly
as ``extract`` does and never writes through a link. It dies with its parent
(``PR_SET_PDEATHSIG``): a SIGKILLed restore leaves no writer behind that could still be
adding files while the next run removes what the killed one wrote. Its first error (a full
disk, a name that exists) is sent back with its errno and the file's name, and it stops;
``settle`` waits until every file sent so far exists (before a hard link to one of them),
``finish`` until all are written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import subprocess
import sys
from typing import IO

from reconciler.backup.tree import Entry

SMALL = 1 << 16  # files up to this size go to the writer, larger ones are written here
BATCH = 256 << 10  # bytes gathered before they are sent (one pipe write)
_PIPE = 1 << 20  # the pipe's size asked for: a batch or a few fit, so both sides run
_HEAD = struct.Struct("<BIIIqQI")  # op, mode, uid, gid, mtime, size, length of the name
_FILE, _SETTLE = 1, 2
_WRITER = r"""
import ctypes, os, stat, struct, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[2]):  # the parent died before that: stop now
    sys.exit(1)
root = os.fsencode(sys.argv[1]) + b"/"
head = struct.Struct("<BIIIqQI")
given, out = sys.stdin.buffer, sys.stdout.buffer
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
name = b""
try:
    while raw := given.read(head.size):
        op, mode, uid, gid, mtime, size, length = head.unpack(raw)
        if op == 2:
            out.write(b"K")
            out.flush()
            continue
        name = given.read(length)
        data = given.read(size)
        if len(name) != length or len(data) != size:
            raise EOFError
        fd = os.open(root + name, flags, mode & 0o777)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # chown clears setuid and setgid
            elif stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
        finally:
            os.close(fd)
    out.write(b"K")
except EOFError:
    sys.exit(1)  # the parent stopped sending in the middle of a file: it failed
except OSError as err:
    text = (err.strerror or str(err)).encode("utf-8", "replace")
    out.write(b"E" + struct.pack("<iI", err.errno or 0, len(name)) + name + text)
out.flush()
"""


class SmallFiles:
    """The writer process of one restore into ``root``; ``None`` for ``alive`` when it
    could not start (every file is then written here)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.batch = bytearray()
        self.unsettled = False  # files sent since the last settle
        self.process: subprocess.Popen[bytes] | None = None
        with contextlib.suppress(OSError):
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WRITER, root, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
            assert self.process.stdin is not None
            os.set_blocking(self.process.stdin.fileno(), False)
            with contextlib.suppress(OSError):  # a smaller pipe only means more switches
                fcntl.fcntl(self.process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE)

    @property
    def alive(self) -> bool:
        return self.process is not None

    def offer(self, entry: Entry, data: bytes, *, wait: bool = False) -> bool:
        """Have the file ``entry`` (its whole ``data``) written there, unless what was sent
        before still fills the pipe: then ``False``, and the caller writes it (so both
        processes create files while the writer has more than it can keep up with).
        ``wait``: wait for room instead, always ``True``."""
        if len(self.batch) >= BATCH:
            self._send(wait=wait)
            if len(self.batch) >= BATCH:
                return False
        name = os.fsencode(entry.path)
        self.batch += _HEAD.pack(
            _FILE, entry.mode, entry.uid, entry.gid, entry.mtime, len(data), len(name)
        )
        self.batch += name
        self.batch += data
        self.unsettled = True
        if len(self.batch) >= BATCH:
            self._send(wait=False)
        return True

    def settle(self) -> None:
        """Wait until every file sent so far is written (a hard link to one follows)."""
        if not self.unsettled:
            return
        self.batch += _HEAD.pack(_SETTLE, 0, 0, 0, 0, 0, 0)
        self._send(wait=True)
        self._answer()
        self.unsettled = False

    def finish(self) -> None:
        """Wait until every file is written; its error raised here as an ``OSError``."""
        if self.process is None:
            return
        self._send()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self._answer()
        self.process.wait()
        self.process = None

    def _send(self, *, wait: bool = True) -> None:
        """Write the batch into the pipe: whole (``wait``), or what fits now."""
        if not self.batch or self.process is None:
            return
        assert self.process.stdin is not None
        fd = self.process.stdin.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        sent = 0
        try:
            while sent < len(self.batch):
                try:
                    sent += os.write(fd, memoryview(self.batch)[sent:])
                except BlockingIOError:
                    if not wait:
                        break
                    poll.poll()
        except BrokenPipeError:
            self._answer()  # it stopped: its error
            raise
        finally:
            del self.batch[:sent]

    def _answer(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        out = self.process.stdout
        kind = out.read(1)
        if kind == b"K":
            return
        if kind == b"E":
            errno, length = struct.unpack("<iI", _read(out, 8))
            name = os.fsdecode(_read(out, length))
            text = out.read().decode("utf-8", "replace")
            raise OSError(errno, text, os.path.join(self.root, name))
        raise OSError(f"the restore's file writer stopped (exit {self.process.wait()})")

    def close(self) -> None:
        """Stop the writer (a restore that failed): nothing more is written."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.kill()
        for pipe in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        process.wait()

    def __enter__(self) -> SmallFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(out: IO[bytes], size: int) -> bytes:
    data = out.read(size)
    if len(data) != size:
        raise OSError("the restore's file writer stopped in the middle of its answer")
    return data
