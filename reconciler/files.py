"""Writing dsr's own files (saved plans, manifests, hash caches) so a crash never halves one,
and reading files dsr did not write (specs, the policy, .dockerignore) with bounds."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from typing import Any


def write_json(path: str, value: Any, *, indent: int | None = None) -> None:
    """Write ``value`` as JSON to ``path`` atomically: a whole new file or the old one."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
            try:
                json.dump(value, handle, indent=indent)
            except BaseException:
                os.unlink(handle.name)
                raise
        os.replace(handle.name, path)
    except OSError as err:  # named by the file asked for, not by a temporary one
        raise OSError(err.errno, f"cannot write it: {err.strerror}", path) from err


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a whole new file or the old one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, delete=False, suffix=".tmp", encoding="utf-8"
    ) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


# The most dsr reads of one input file it did not write (a spec file, the admin policy, a
# context's .dockerignore). Real specs are a few KiB; this leaves room for generated ones
# and keeps a hostile file from filling memory.
MAX_INPUT_BYTES = 1 << 20


class InputFileError(OSError):
    """An input file dsr refuses to read: not a regular file, or larger than allowed."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(errno.EINVAL, message, path)

    def __str__(self) -> str:
        return str(self.strerror)


def read_bounded(path: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Checked before it is opened (a FIFO would block ``open``, a link to /dev/zero would
    never end) and again on the open descriptor, which is opened non-blocking so that a
    FIFO swapped in between cannot hang us; read at most ``limit + 1`` bytes either way.
    """
    info = os.stat(path)  # follows links: what matters is what would be read
    _check_regular(info, limit, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise InputFileError("it changed while it was being opened", path)
        _check_regular(opened, limit, path)
    except BaseException:
        os.close(fd)
        raise
    return _read_and_close(fd, limit, path)


def _read_and_close(fd: int, limit: int, path: str) -> bytes:
    """Read at most ``limit + 1`` bytes of ``fd`` (one more, to tell "too large" from
    "exactly ``limit``" even if the file grew after its size was checked), then close it.
    Shared by ``read_bounded`` and ``read_regular`` so both refuse the same way."""
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise InputFileError(f"it is larger than the {_size(limit)} dsr reads", path)
    return b"".join(chunks)


def _check_regular(info: os.stat_result, limit: int, path: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(f"it is not a regular file but {_kind(info.st_mode)}", path)
    if info.st_size > limit:
        raise InputFileError(f"it is larger than the {_size(limit)} dsr reads", path)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"


def open_regular(path: str, limit: int | None = None) -> int:
    """A descriptor of the regular file ``path``, never through a symlink at its last
    component (``O_NOFOLLOW``) and never blocking on a FIFO (``O_NONBLOCK`` until ``fstat``
    says it is a regular file, then blocking again); at most ``limit`` bytes when given.
    For files dsr wrote and reads back (manifests, verify results, archives): a person or
    a disk may have replaced them with anything."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputFileError("it is a symlink, which dsr does not follow here", path) from err
        raise
    try:
        info = os.fstat(fd)
        _check_regular(info, limit if limit is not None else info.st_size, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (``open_regular``), at most ``limit``."""
    return _read_and_close(open_regular(path, limit), limit, path)
