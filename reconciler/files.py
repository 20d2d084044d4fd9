"""Writing dsr's own files (saved plans, manifests, hash caches) so a crash never halves one,
and reading files dsr did not write (specs, the policy, .dockerignore) with bounds."""

from __future__ import annotations

import contextlib
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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class NotBelow(OSError):
    """A removal refused: the path does not lie in its anchor by plain folders (a folder on
    the way is a symlink now, or the path climbs out with ``..``)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(errno.ELOOP, message, path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def remove_below(anchor: str, path: str, first: tuple[str, ...] = ()) -> bool:
    """Remove ``path`` (a folder with everything in it, or a file) that lies in the folder
    ``anchor``, walking from ``anchor`` by directory descriptors: every component between
    them is opened ``O_NOFOLLOW | O_DIRECTORY`` relative to the one before, and the last is
    removed relative to its parent's descriptor, so a folder on the way that someone swaps
    for a symlink (between a listing and this removal, or during it) fails the walk instead
    of redirecting it out of ``anchor``. ``anchor`` itself is trusted (it is followed).
    ``first``: names inside ``path`` removed before the rest (a snapshot's manifest, so that
    a half-removed snapshot is invisible). False when ``path`` was already gone; raises
    ``NotBelow`` when the walk met a link or ``..``, OSError for other failures."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(anchor))
    parts = rel.split(os.sep)
    if rel in (".", "") or any(p in ("", ".", "..") for p in parts):
        raise NotBelow(f"it does not lie in {anchor}", path)
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return False
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotBelow(f"{part} on its way is not a folder (a link?)", path) from err
                raise
            os.close(fd)
            fd = inner
        return _remove_entry(fd, parts[-1], first)
    finally:
        os.close(fd)


def _remove_entry(parent: int, name: str, first: tuple[str, ...]) -> bool:
    try:
        info = os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode):  # a file, or a link itself (never followed)
        os.unlink(name, dir_fd=parent)
        return True
    try:
        inner = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotBelow("it was swapped for a link while it was removed", name) from err
        raise
    try:
        if not os.path.samestat(info, os.fstat(inner)):
            raise NotBelow("it changed while it was removed", name)
        for item in first:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item, dir_fd=inner)
        _empty(inner)
    finally:
        os.close(inner)
    os.rmdir(name, dir_fd=parent)
    return True


def _empty(fd: int) -> None:
    """Remove everything in the open folder ``fd``, by descriptors, following no link.
    The depth is bounded by the recursion limit: a deeper tree raises RecursionError,
    which the callers name (nothing outside is touched either way)."""
    with os.scandir(fd) as it:
        names = [e.name for e in it]
    for name in names:
        _remove_entry(fd, name, ())


def parse_json(data: str | bytes) -> Any:
    """JSON that dsr reads back or receives (records, manifests, saved plans, labels,
    agents' answers): ``ValueError`` for anything that is not plain JSON, including
    ``NaN``/``Infinity`` (no JSON writer makes them) and nesting deeper than the parser's
    recursion (a RecursionError otherwise, which no caller expects)."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("values nest too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
