"""Writing a checked archive's tree into a local directory, exactly, never through a link.

``read_tar`` has already refused what could escape (absolute paths, ``..``, devices,
entries whose folder is not an earlier directory of the archive). Here every entry is
created new (``O_EXCL``, ``O_NOFOLLOW``) in a directory this restore emptied and made, so
nothing that was there before can redirect a write. Owners, modes (setuid, setgid, sticky)
and mtimes are set after the content; a directory's mtime after its children, because
creating them changes it. Runs of zeros in a file are skipped with a seek, so a sparse file
comes back sparse.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable

from reconciler.backup.archive import Progress, beyond, read_tar
from reconciler.backup.tarread import Readable
from reconciler.backup.tree import DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry, join
from reconciler.backup.writer import SMALL, SmallFiles

_ZERO_BLOCK = 1 << 16
_ZEROS = bytes(_ZERO_BLOCK)


def wipe(root: str) -> None:
    """Remove everything inside ``root`` (not ``root`` itself), following no link: by
    descriptors from ``root`` opened once, so a folder inside swapped for a link while it
    is removed is not followed out of ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it]
        for name in names:
            if stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                shutil.rmtree(name, dir_fd=fd)  # lstat, open, same-inode check: no link
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def is_empty(root: str) -> bool:
    with os.scandir(root) as it:
        return next(it, None) is None


def extract(
    stream: Readable,
    root: str,
    progress: Progress | None = None,
    *,
    most: tuple[int, int] | None = None,
) -> None:
    """Write the tree of the tar ``stream`` into the empty directory ``root``.

    ``most`` is (bytes, entries other than folders) the manifest records: an archive
    holding more is refused as soon as it does, so a crafted one cannot fill the disk."""
    dirs: list[Entry] = []
    with SmallFiles(root) as small:
        _entries(stream, root, progress, most, dirs, small)
        small.finish()  # every file written before any folder's mtime is set
    for entry in reversed(dirs):  # children before their parents: mtimes stay as recorded
        _attributes(join(root, entry.path), entry)


def _entries(
    stream: Readable,
    root: str,
    progress: Progress | None,
    most: tuple[int, int] | None,
    dirs: list[Entry],
    small: SmallFiles,
) -> None:
    size = files = 0
    for entry, content in read_tar(stream):
        if most is not None and entry.kind != DIR:
            size += entry.size
            files += 1
            if size > most[0] or files > most[1]:
                raise beyond(most)
        path = join(root, entry.path)
        if entry.kind == DIR:
            if entry.path != ".":
                os.mkdir(path, 0o700)
            dirs.append(entry)
        elif entry.kind == FILE and entry.size <= SMALL and small.alive:
            data = b"".join(content)
            if small.offer(entry, data):
                if progress:
                    progress(len(data))
            else:
                _write_file(path, entry, (data,), progress)
        elif entry.kind == FILE:
            _write_file(path, entry, content, progress)
        elif entry.kind == HARDLINK:
            small.settle()  # its file may be one the writer has not made yet
            os.link(join(root, entry.link), path, follow_symlinks=False)
        elif entry.kind == SYMLINK:
            os.symlink(entry.link, path)
            _attributes(path, entry)
        elif entry.kind == FIFO:
            os.mkfifo(path, 0o600)
            _attributes(path, entry)


def _write_file(
    path: str, entry: Entry, content: Iterable[bytes], progress: Progress | None
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    # Created with its final permission bits when the umask allows (no fchmod then); the
    # descriptor that created it may write whatever the mode says.
    fd = os.open(path, flags, entry.mode & 0o777)
    try:
        hole = False
        for block in content:
            if len(block) < _ZERO_BLOCK:
                _write_all(fd, memoryview(block))
                hole = False
            else:
                hole = _write_sparse(fd, block)
            if progress:
                progress(len(block))
        if hole:  # a trailing hole, skipped by seeks, gets its length
            os.ftruncate(fd, entry.size)
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
            os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)  # chown clears setuid and setgid
        elif stat.S_IMODE(st.st_mode) != entry.mode:
            os.fchmod(fd, entry.mode)
        os.utime(fd, ns=(entry.mtime * 10**9, entry.mtime * 10**9))
    finally:
        os.close(fd)


def _write_sparse(fd: int, block: bytes) -> bool:
    """Write ``block``, seeking over each whole 64 KiB of zeros (bytes compare by memcmp);
    whether it ended in such a hole."""
    view = memoryview(block)
    data_from = 0  # start of the run of data not yet written
    for start in range(0, len(block), _ZERO_BLOCK):
        end = start + _ZERO_BLOCK
        if end <= len(block) and block[start:end] == _ZEROS:
            _write_all(fd, view[data_from:start])
            os.lseek(fd, _ZERO_BLOCK, os.SEEK_CUR)
            data_from = end
    _write_all(fd, view[data_from:])
    return data_from == len(block) and bool(block)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _attributes(path: str, entry: Entry) -> None:
    os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    if entry.kind != SYMLINK:  # Linux has no mode on a link
        os.chmod(path, entry.mode)
    os.utime(path, ns=(entry.mtime * 10**9, entry.mtime * 10**9), follow_symlinks=False)
