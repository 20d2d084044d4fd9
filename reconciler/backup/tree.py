"""A tree of files as backups see it, and the digest that proves a restore is exact.

An ``Entry`` is what a tar header says of one path (type, permission bits with setuid,
setgid and sticky, owner, whole-second mtime, symlink target) plus the sha256 of a regular
file's content. ``TreeDigest`` hashes every entry, sorted by path, so that the same tree
read from a directory, from dsr's archive or from the Engine API's archive gives the same
digest, whatever order it was read in. Hard links are a group of paths sharing one file:
each member is recorded with the file's attributes and the group's first path (sorted), so
which member a tar stream happened to write first does not matter.

``walk`` lists a directory the way ``tar`` does (depth first, names sorted by bytes),
never following a symbolic link.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json
from typing import Any, NamedTuple

from reconciler.files import open_regular

DIR, FILE, SYMLINK, HARDLINK, FIFO = "dir", "file", "symlink", "hardlink", "fifo"
ROOT = "."


@dataclass(slots=True)
class Entry:
    """One path of a tree. ``path`` is relative (``.`` is the root), never ``..``.

    Not frozen: a file's ``sha256`` is filled in once its content has streamed by (copying
    a frozen record per file cost a tenth of a small-file backup)."""

    path: str
    kind: str
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    mtime: int  # whole seconds: tar headers and the Engine API keep no more
    size: int = 0
    link: str = ""  # a symlink's target; a hard link's earlier path
    sha256: str = ""


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a tree is read or written: its entries are
    tens of thousands of objects in no cycle, which each collection would walk again (a
    twentieth of a small-file backup)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def join(root: str, path: str) -> str:
    return root if path == ROOT else os.path.join(root, path)


class TreeDigest:
    """Collects entries (in any order) and gives their digest, size and count."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._leader: dict[str, str] = {}  # hard-linked path -> the group's file path
        self.size = 0
        self.files = 0

    def add(self, entry: Entry) -> None:
        if entry.path in self.entries:
            raise ValueError(f"{entry.path!r} appears twice")
        if entry.kind == HARDLINK:
            target = self.entries.get(entry.link)
            if target is None or target.kind not in (FILE, HARDLINK):
                raise ValueError(f"hard link {entry.path!r} to {entry.link!r}, not an earlier file")
            self._leader[entry.path] = self._leader.get(entry.link, entry.link)
        self.entries[entry.path] = entry
        if entry.kind != DIR:
            self.files += 1
        if entry.kind == FILE:
            self.size += entry.size

    def records(self) -> Iterator[tuple[str, str, int, int, int, int, str, str, int]]:
        """Every entry as a plain file, dir, symlink or fifo, sorted by path; each member of
        a hard-link group as the file, its link naming the group's first path."""
        groups: dict[str, list[str]] = {}
        for path, leader in self._leader.items():
            groups.setdefault(leader, [leader]).append(path)
        first = {p: min(members) for members in groups.values() for p in members}
        for path in sorted(self.entries):
            e = self.entries[path]
            if e.kind == HARDLINK:
                e = self.entries[self._leader[path]]
            link = first.get(path, "") if e.kind == FILE else e.link
            yield (path, e.kind, e.mode, e.uid, e.gid, e.size, e.sha256, link, e.mtime)

    def hexdigest(self) -> str:
        """sha256 of each record as a line of JSON (``json.dumps``'s text, written here
        directly: a ``dumps`` call per entry was a tenth of a small-file backup)."""
        digest = hashlib.sha256()
        lines: list[str] = []
        for path, kind, mode, uid, gid, size, sha, link, mtime in self.records():
            lines.append(
                f"[{_json(path)}, {_json(kind)}, {mode}, {uid}, {gid}, {size}, {_json(sha)}, "
                f"{_json(link)}, {mtime}]\n"
            )
            if len(lines) == 4096:  # hashed in groups: memory stays small for any tree
                digest.update("".join(lines).encode())
                lines.clear()
        digest.update("".join(lines).encode())
        return digest.hexdigest()


class Found(NamedTuple):
    """A path ``walk`` found: its entry (no sha256 yet) and its absolute path."""

    entry: Entry
    path: str


_KIND_OF = {stat.S_IFDIR: DIR, stat.S_IFREG: FILE, stat.S_IFLNK: SYMLINK, stat.S_IFIFO: FIFO}


def _sort_key(item: os.DirEntry[str]) -> bytes:
    return os.fsencode(item.name)


def walk(root: str, skipped: list[str] | None = None) -> Iterator[Found]:
    """Entries of ``root`` depth first, names sorted; sockets and devices go to ``skipped``.

    One generator for the whole tree, folders waiting on a stack: a generator per folder
    (``yield from``) made every entry climb through each level above it."""
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(root)
    yield Found(_entry(ROOT, st, DIR), root)
    skipped = skipped if skipped is not None else []
    links: dict[tuple[int, int], str] = {}
    # Each stack item: the folder's sorted items still to list, and the folder's prefix.
    stack = [(_listed(root), "")]
    while stack:
        items, prefix = stack[-1]
        for item in items:
            rel = prefix + item.name
            st = item.stat(follow_symlinks=False)
            kind = _KIND_OF.get(stat.S_IFMT(st.st_mode))
            if kind is None:
                skipped.append(rel)  # sockets and device nodes: tar cannot restore them safely
            elif kind == DIR:
                yield Found(_entry(rel, st, DIR), item.path)
                stack.append((_listed(item.path), rel + "/"))
                break  # its children come first; this folder's rest when they are done
            elif kind == FILE and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
                link = links[(st.st_dev, st.st_ino)]
                yield Found(_entry(rel, st, HARDLINK, link), item.path)
            else:
                if kind == FILE and st.st_nlink > 1:
                    links[(st.st_dev, st.st_ino)] = rel
                target = os.readlink(item.path) if kind == SYMLINK else ""
                yield Found(_entry(rel, st, kind, target), item.path)
        else:
            stack.pop()


def _listed(folder: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return iter(sorted(it, key=_sort_key))


def _entry(path: str, st: os.stat_result, kind: str, link: str = "") -> Entry:
    return Entry(
        path,
        kind,
        st.st_mode & 0o7777,
        st.st_uid,
        st.st_gid,
        int(st.st_mtime),
        st.st_size if kind == FILE else 0,
        link,
    )


FORMAT = 2  # the manifest format new snapshots are written in (see ``content_hash``)
Hasher = Callable[..., Any]  # hashlib.sha256 or blake3.blake3: update(), hexdigest()


def content_hash(format_version: int) -> Hasher:
    """How a manifest of ``format_version`` hashes each file's content in its tree digest:
    sha256 (format 1, every snapshot made before BLAKE3), BLAKE3 (format 2)."""
    if format_version >= 2:
        from blake3 import blake3

        return blake3
    return hashlib.sha256


def digest_of(root: str, chunk: int = 1 << 20, hasher: Hasher = hashlib.sha256) -> TreeDigest:
    """Read a directory whole: every entry, every file's content hashed."""
    tree = TreeDigest()
    for entry, path in walk(root):
        if entry.kind == FILE:
            entry.sha256 = file_sha256(path, chunk, hasher)
        tree.add(entry)
    return tree


def file_sha256(
    path: str,
    chunk: int = 1 << 20,
    hasher: Hasher = hashlib.sha256,
    progress: Callable[[int], None] | None = None,
) -> str:
    """The file's content hash: sha256, or the ``hasher`` given (``progress`` told each
    block's size)."""
    if progress is not None:
        return _counted_sha256(path, chunk, hasher, progress)
    digest = hasher()
    fd = open_regular(path)  # no link followed, no FIFO waited for
    try:
        block = os.read(fd, chunk)  # most files: one read
        if len(block) < chunk:
            if block:
                digest.update(block)
                while block := os.read(fd, chunk):  # grew since: read on
                    digest.update(block)
            return str(digest.hexdigest())
        # A large file: one reused buffer (a fresh one per read costs page faults).
        digest.update(block)
        buffer = bytearray(chunk)
        view = memoryview(buffer)
        while n := os.readv(fd, [buffer]):
            digest.update(view[:n])
    finally:
        os.close(fd)
    return str(digest.hexdigest())


def _counted_sha256(path: str, chunk: int, hasher: Hasher, progress: Callable[[int], None]) -> str:
    digest = hasher()
    fd = open_regular(path)
    try:
        buffer = bytearray(chunk)
        view = memoryview(buffer)
        while n := os.readv(fd, [buffer]):
            digest.update(view[:n])
            progress(n)
    finally:
        os.close(fd)
    return str(digest.hexdigest())
