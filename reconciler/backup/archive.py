"""dsr's archives: a PAX tar stream of one tree, compressed with zstd, hashed as it is written.

Writing: ``pack_dir`` reads a directory (the fast path for a local volume, and host
folders), ``pack_tar`` re-writes a tar stream (the Engine API's archive of a volume), both
into ``TarWriter``, which computes each file's sha256 on the way and feeds a ``TreeDigest``.
Entries are named relative to the tree (``.`` for its root), so an archive never names the
place it came from.

Reading: ``read_tar`` yields the entries of a tar stream after checking each one, because
an archive is untrusted input (a disk, a colleague, an attacker may have written it): no
absolute path, no ``..``, no device node, no duplicate, no entry whose folder is not an
earlier directory of the archive (so nothing is ever written through a link), no hard link
to anything but an earlier file, no relative symbolic link leading outside the tree.
``tarfile``'s extraction filters are not used: they drop setuid bits and ownership.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import IO, BinaryIO

import zstandard

from reconciler.backup import tarread
from reconciler.backup.errors import ArchiveError
from reconciler.backup.tarread import Readable
from reconciler.backup.tree import (
    DIR,
    FIFO,
    FILE,
    HARDLINK,
    ROOT,
    SYMLINK,
    Entry,
    Hasher,
    TreeDigest,
    walk,
)

CHUNK = tarread.CHUNK
SMALL = 1 << 16  # files up to this size go out in one write, header and padding included
_TYPES = {
    DIR: tarfile.DIRTYPE,
    FILE: tarfile.REGTYPE,
    SYMLINK: tarfile.SYMTYPE,
    HARDLINK: tarfile.LNKTYPE,
    FIFO: tarfile.FIFOTYPE,
}
_KINDS = {
    tarfile.DIRTYPE: DIR,
    tarfile.REGTYPE: FILE,
    tarfile.AREGTYPE: FILE,
    tarfile.SYMTYPE: SYMLINK,
    tarfile.LNKTYPE: HARDLINK,
    tarfile.FIFOTYPE: FIFO,
}
Progress = Callable[[int], None]


class TarWriter:
    """Writes entries as PAX tar into ``out``; feeds ``tree`` with each entry's content hash."""

    def __init__(
        self,
        out: IO[bytes],
        tree: TreeDigest,
        prefix: str = "",
        progress: Progress | None = None,
        hasher: Hasher = hashlib.sha256,
    ) -> None:
        self.out = out
        self.tree = tree
        self.hasher = hasher  # of each file's content (``tree.content_hash``)
        self.prefix = prefix  # e.g. "v/" to extract under a helper's mount point
        self.progress = progress
        self.short: list[str] = []  # files that shrank while read (padded with zeros)

    def add(self, entry: Entry, content: Iterable[bytes] = ()) -> None:
        root = self.prefix.rstrip("/") or ROOT
        name = root if entry.path == ROOT else self.prefix + entry.path
        link = self.prefix + entry.link if entry.kind == HARDLINK else entry.link
        header = _ustar(name, link, entry) or self._pax(name, link, entry)
        if entry.kind == FILE and entry.size <= SMALL:
            entry.sha256 = self._small(header, entry, b"".join(content))
        else:
            self.out.write(header)
            if entry.kind == FILE:
                entry.sha256 = self._content(entry, content)
        self.tree.add(entry)

    def _small(self, header: bytes, entry: Entry, data: bytes) -> str:
        """A small file in one write: header, content, padding (per-file calls add up)."""
        size = entry.size
        if len(data) != size:
            data = data[:size]
            if len(data) < size:
                self.short.append(entry.path)
                data += bytes(size - len(data))
        self.out.write(header + data + _PADDING[-size % tarfile.BLOCKSIZE])
        if self.progress:
            self.progress(size)
        return str(self.hasher(data).hexdigest())

    def _pax(self, name: str, link: str, entry: Entry) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = _TYPES[entry.kind]
        info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, entry.mtime
        info.size = entry.size if entry.kind == FILE else 0
        info.linkname = link
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def _content(self, entry: Entry, content: Iterable[bytes]) -> str:
        """Write exactly ``entry.size`` bytes (a file that changed while read is cut or padded)."""
        digest = self.hasher()
        left = entry.size
        for block in content:
            if len(block) > left:
                block = block[:left]
            digest.update(block)
            self.out.write(block)
            left -= len(block)
            if self.progress:
                self.progress(len(block))
            if not left:
                break
        if left:
            self.short.append(entry.path)
            while left:
                zeros = bytes(min(left, CHUNK))
                digest.update(zeros)
                self.out.write(zeros)
                left -= len(zeros)
        pad = -entry.size % tarfile.BLOCKSIZE
        if pad:
            self.out.write(bytes(pad))
        return str(digest.hexdigest())

    def close(self) -> None:
        self.out.write(bytes(tarfile.BLOCKSIZE * 2))


_PADDING = [bytes(n) for n in range(tarfile.BLOCKSIZE)]
_TYPE_BYTES = {kind: t for kind, t in _TYPES.items()}
_USTAR_TAIL = b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)
_CHECKSUM_BASE = sum(b"        ") + sum(_USTAR_TAIL)  # the checksum field counts as spaces
_LIMIT = 0o77777777777


def _plain(text: str) -> bool:
    """Printable ASCII of at most 100 bytes: what a ustar name field holds as is."""
    return len(text) <= 100 and text.isascii() and text.isprintable()


def _ustar(name: str, link: str, entry: Entry) -> bytes | None:
    """The plain ustar header most entries fit (printable ASCII names up to 100 bytes,
    ordinary numbers), built directly; ``None`` when a PAX header is needed."""
    if not name or not _plain(name) or (link and not _plain(link)):
        return None
    size = entry.size if entry.kind == FILE else 0
    uid, gid, mtime = entry.uid, entry.gid, entry.mtime
    if not (0 <= uid < 0o7777777 and 0 <= gid < 0o7777777 and size < _LIMIT):
        return None
    if not 0 <= mtime < _LIMIT:
        return None
    raw_name = name.encode()
    raw_link = link.encode()
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (entry.mode, uid, gid, size, mtime)
    kind = _TYPE_BYTES[entry.kind]
    # The checksum is the sum of the header's bytes: only these parts are not zeros.
    checksum = _CHECKSUM_BASE + sum(raw_name) + sum(numbers) + kind[0] + sum(raw_link)
    return b"".join(
        (
            raw_name.ljust(100, b"\0"),
            numbers,
            b"%06o\0 " % checksum,
            kind,
            raw_link.ljust(100, b"\0"),
            _USTAR_TAIL,
        )
    )


def read_small(path: str, size: int) -> bytes:
    """A small file's content in one read, never through a symbolic link, at most ``size``
    bytes (fewer when it shrank or was replaced since it was listed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""  # replaced by something else since it was listed: padded with zeros
        data = os.read(fd, size)
        if 0 < len(data) < size:  # a short read, rare for a regular file: read on
            data += b"".join(_read_rest(fd, size - len(data)))
        return data
    finally:
        os.close(fd)


def _read_rest(fd: int, left: int) -> Iterator[bytes]:
    while left > 0:
        block = os.read(fd, min(CHUNK, left))
        if not block:
            return
        left -= len(block)
        yield block


def read_file(path: str, size: int) -> Iterator[bytes]:
    """A file's content, never through a symbolic link, at most ``size`` bytes."""
    # O_NONBLOCK: a file swapped for a FIFO since it was listed must not hang the backup.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return  # replaced by something else since it was listed: padded with zeros
        yield from _read_rest(fd, size)
    finally:
        os.close(fd)


def pack_dir(root: str, writer: TarWriter, skipped: list[str]) -> None:
    """Write the tree at ``root`` (a local volume's directory, a host folder). Sockets,
    devices and relative links climbing out of the tree, which no restore would accept,
    are left out and listed in ``skipped``."""
    add = writer.add
    for entry, path in walk(root, skipped):
        kind = entry.kind
        if kind == FILE:
            if entry.size <= SMALL:
                add(entry, (read_small(path, entry.size),))
            else:
                add(entry, read_file(path, entry.size))
        elif kind == SYMLINK and _escapes(entry.path, entry.link):
            skipped.append(entry.path)
        else:
            add(entry)
    writer.close()


def pack_tar(stream: Readable, writer: TarWriter, skipped: list[str]) -> None:
    """Re-write a tar stream (the Engine API's archive of a volume) as dsr's own archive;
    what ``pack_dir`` leaves out is left out here too."""
    for entry, content in read_tar(stream, skipped):
        writer.add(entry, content)
    writer.close()


class _Seen:
    """What ``read_tar`` remembers of the entries before: the root's name, every directory
    (an entry's folder must be one) and, for every other entry, a 62-bit fingerprint of its
    path (Python's string hash, keyed at random for each process) with one bit saying
    whether a hard link may lead to it (a file or a hard link). Fingerprints sit in an
    open-addressing table of 8-byte slots, at most two thirds full: ~16 bytes an entry
    where a dict of paths took ~150, so a million-file archive is checked in ~16 MB.

    Two paths sharing a fingerprint (one chance in 2**62 a pair, or a hash seed someone
    fixed) can only make an archive refused as holding a duplicate, or a hard link accepted
    to a path that is no file: that link's folder is still checked exactly (a directory of
    the archive, all of whose folders are), so it never leads through a symbolic link, and
    at worst the restore fails or its tree digest differs."""

    def __init__(self) -> None:
        self.root: str | None = None  # the name of the archive's first entry, its tree's root
        self.dirs: set[str] = set()
        self._table = array("Q", bytes(8 * 1024))
        self._used = 0

    @staticmethod
    def _print(path: str) -> int:
        return hash(path) & 0xFFFF_FFFF_FFFF_FFFF | 2  # never 0, an empty slot; bit 0 free

    def __contains__(self, path: str) -> bool:
        return path in self.dirs or self._find(self._print(path)) != 0

    def linkable(self, path: str) -> bool:
        """A file or a hard link of that path came before."""
        parent = posixpath.dirname(path) or ROOT
        return parent in self.dirs and self._find(self._print(path)) & 1 == 1

    def add(self, path: str, kind: str) -> None:
        if kind == DIR:
            self.dirs.add(path)
            return
        _place(self._table, self._print(path) & ~1 | (kind in (FILE, HARDLINK)))
        self._used += 1
        if self._used * 3 > len(self._table) * 2:
            self._grow()

    def _find(self, value: int) -> int:
        """The slot's value holding ``value``'s fingerprint (bit 0 aside), else 0."""
        table = self._table
        size = len(table)
        i = (value >> 2) % size
        while slot := table[i]:
            if (slot ^ value) < 2:
                return slot
            i = (i + 1) % size
        return 0

    def _grow(self) -> None:
        """A table half as large again (44 % full): while its slots are filled the old one
        is held too, 2.5 times the old size where doubling held 3 times (48 MB at 1.4M
        entries, which a store's verify of 1.5M files could not afford)."""
        old = self._table
        self._table = table = array("Q", bytes(8 * (len(old) * 3 // 2)))
        for value in old:
            if value:
                _place(table, value)


def _place(table: array[int], value: int) -> None:
    """``value`` into the first free slot from its fingerprint's own (linear probing)."""
    size = len(table)
    i = (value >> 2) % size
    while table[i]:
        i = (i + 1) % size
    table[i] = value


class _Unrestorable(ArchiveError):
    """An entry no restore writes (a device, a link climbing out); a backup skips it."""


def read_tar(
    stream: Readable, skipped: list[str] | None = None
) -> Iterator[tuple[Entry, Iterator[bytes]]]:
    """The checked entries of a tar stream, each with its content (read it before the next).

    ``stream.read(n)`` gives at most n bytes. The first entry must be a directory: the
    tree's root, whatever its name (``.`` in dsr's archives, the mount point's in the Engine
    API's). With ``skipped`` (a backup reading the Engine API), devices and links climbing
    out are listed there and left out instead of refused."""
    seen = _Seen()
    try:
        for member, content in tarread.members(stream):
            try:
                entry = _check(member, seen)
            except _Unrestorable:
                if skipped is None:
                    raise
                skipped.append(member.name)
                continue
            yield entry, iter(content)
    except zstandard.ZstdError as err:
        raise ArchiveError(f"the archive is damaged: {err}") from err
    if seen.root is None:
        raise ArchiveError("the archive is empty: it holds no tree")


def _relative(name: str, seen: _Seen) -> str:
    """``name`` relative to the tree's root, or an ``ArchiveError`` saying why it is refused."""
    if "\0" in name:
        raise ArchiveError(f"entry {name!r}: a NUL character in its name")
    if name.startswith("/"):
        raise ArchiveError(f"entry {name!r}: an absolute path")
    clean = name.rstrip("/")
    while clean.startswith("./"):
        clean = clean[2:]
    parts = clean.split("/")
    if ".." in parts:
        raise ArchiveError(f"entry {name!r}: '..' in its path")
    if seen.root is None:
        return ROOT
    if seen.root != ROOT:
        if clean == seen.root:
            return ROOT
        if not clean.startswith(seen.root + "/"):
            raise ArchiveError(f"entry {name!r} lies outside the archive's root {seen.root!r}")
        clean = clean[len(seen.root) + 1 :]
    if clean in ("", ".") or any(p in ("", ".") for p in clean.split("/")):
        raise ArchiveError(f"entry {name!r}: not a plain relative path")
    return clean


def _check(member: tarfile.TarInfo, seen: _Seen) -> Entry:
    path = _relative(member.name, seen)
    if member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        raise _Unrestorable(f"entry {path!r} is a device node; dsr never restores one")
    kind = _KINDS.get(member.type)
    if kind is None or member.issparse():
        raise ArchiveError(f"entry {path!r} has the tar type {member.type!r}, which dsr refuses")
    if kind != FILE and member.size:
        raise ArchiveError(f"entry {path!r} is not a file but carries {member.size} bytes")
    if seen.root is None:
        if kind != DIR:
            raise ArchiveError(f"the archive's first entry {member.name!r} is not a directory")
        seen.root = member.name.rstrip("/").removeprefix("./") or ROOT
    elif path in seen:
        raise ArchiveError(f"entry {path!r} appears twice")
    elif (posixpath.dirname(path) or ROOT) not in seen.dirs:
        raise ArchiveError(f"entry {path!r}: its folder is not an earlier directory entry")
    link = member.linkname
    if kind == HARDLINK:
        link = _relative(link, seen)
        if not seen.linkable(link):
            raise ArchiveError(f"hard link {path!r} leads to {link!r}, not an earlier file")
    elif kind == SYMLINK:
        _check_symlink(path, link)
    seen.add(path, kind)
    return Entry(
        path=path,
        kind=kind,
        mode=stat.S_IMODE(member.mode),
        uid=member.uid,
        gid=member.gid,
        mtime=int(member.mtime),
        size=member.size if kind == FILE else 0,
        link=link if kind in (SYMLINK, HARDLINK) else "",
    )


def _check_symlink(path: str, target: str) -> None:
    """Refuse a relative target that climbs out of the tree. An absolute target is kept:
    it names a path in the containers that mount the volume, and dsr never follows a link
    while restoring (every entry's folder is a directory the restore itself made)."""
    if not target or "\0" in target:
        raise ArchiveError(f"symbolic link {path!r} has an empty or invalid target")
    if _escapes(path, target):
        raise _Unrestorable(f"symbolic link {path!r} -> {target!r} leads outside the volume")


def _escapes(path: str, target: str) -> bool:
    """A relative ``target`` of the link at ``path`` climbs above the tree's root."""
    if target.startswith("/"):
        return False
    depth = len(path.split("/")) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def beyond(most: tuple[int, int]) -> ArchiveError:
    """The refusal of an archive holding more than its manifest's (bytes, files)."""
    return ArchiveError(
        f"the archive holds more than its manifest records ({most[0]} bytes in {most[1]} files)"
    )


class Decompressed:
    """A zstd file read as plain bytes (``plain().read``), hashing the compressed bytes."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data

    def plain(self) -> Readable:
        # Across frames: dsr writes an archive as many frames (one per batch of a backup).
        reader = zstandard.ZstdDecompressor().stream_reader(
            self,  # type: ignore[arg-type]
            read_size=CHUNK,
            read_across_frames=True,
        )
        return reader

    def drain(self) -> None:
        """Read what is left of the compressed file, so that its sha256 covers it whole."""
        while self.read(CHUNK):
            pass
