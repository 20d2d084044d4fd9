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
import heapq
import itertools
import marshal
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json
from typing import IO, Any, NamedTuple

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


Record = tuple[str, str, int, int, int, int, str, str, int]
RUN = 20_000  # entries held before they are sorted and written out (~400 bytes each)
LISTED = 50_000  # names of one folder held before they are sorted and written out (~60 bytes)
FAN_IN = 128  # runs merged at once (a ~100 KB block each); past that, merged into one first
_BLOCK = 256  # records a block of a run file holds (one marshal.dumps): ~100 KB read
_spill_folder: str | None = None  # where run files go (None: tempfile's, so TMPDIR)


def spill_into(folder: str | None) -> None:
    """Where run files (of the digests and of the folder listings made from now on) go:
    ``folder``, or ``TMPDIR`` with ``None``. A million files' runs are ~120 MB, and
    ``TMPDIR`` is often a small tmpfs: ``staging.spilling`` sets a folder of the state
    directory's for a backup, a verify or a restore."""
    global _spill_folder
    _spill_folder = folder


class _Runs:
    """Sorted runs of values written out to anonymous temporary files (no name, so nothing
    is left behind whatever ends the process), in blocks; at most ``fan_in`` are kept: past
    that they are merged into one, so the memory of reading them all at once (a block each)
    and the descriptors open stay bounded."""

    def __init__(self, fan_in: int = FAN_IN, folder: str | None = None) -> None:
        self.fan_in = fan_in
        self.folder = folder
        self.files: list[IO[bytes]] = []

    def add(self, values: list[Any]) -> None:
        """Sort ``values`` (in place) and write them out as one run."""
        values.sort()
        self.files.append(self._written(values))
        if len(self.files) >= self.fan_in:
            files, self.files = self.files, []
            try:
                self.files.append(self._written(heapq.merge(*(_read(f) for f in files))))
            finally:
                for file in files:
                    file.close()

    def readers(self) -> list[Iterator[Any]]:
        """Each run's values, in order, from its start."""
        return [_read(file) for file in self.files]

    def close(self) -> None:
        for file in self.files:
            file.close()
        self.files = []

    def _written(self, values: Iterable[Any]) -> IO[bytes]:
        folder = self.folder if self.folder is not None else _spill_folder
        # Closed by ``close`` (or with this object); it has no name to leave behind.
        run = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115
        try:
            it = iter(values)
            while block := list(itertools.islice(it, _BLOCK)):
                data = marshal.dumps(block)
                run.write(len(data).to_bytes(4, "little") + data)
        except BaseException:
            run.close()
            raise
        return run


class TreeDigest:
    """Collects entries (in any order) and gives their digest, size and count.

    Memory stays bounded whatever the number of entries: every ``run`` entries are sorted
    and written to an anonymous temporary file (no name, so nothing is left behind
    whatever ends the process), and the digest merges the sorted runs. Hard links (usually
    few) are kept in memory; their group's file, when it was written out before they came,
    is read back from the runs once, at the end."""

    def __init__(self, run: int = RUN, folder: str | None = None, fan_in: int = FAN_IN) -> None:
        self.size = 0
        self.files = 0
        self._run = run
        self._pending: list[Record] = []  # not yet written out
        # At most ``fan_in`` runs open, each a block in memory; ``folder``: of the
        # temporary files (None: ``spill_into``'s, else tempfile's default).
        self._runs = _Runs(fan_in, folder)
        self._members: dict[str, str] = {}  # hard-linked path -> the group's file path
        self._leaders: dict[str, Record] = {}  # the group's file path -> its record
        self._digest: str | None = None

    def add(self, entry: Entry) -> None:
        if self._digest is not None:
            raise ValueError("the tree's digest was taken: nothing more can be added")
        kind = entry.kind
        if kind == HARDLINK:
            if entry.path in self._members:
                raise ValueError(f"{entry.path!r} appears twice")
            link = entry.link
            leader = self._members.get(link, link)
            self._members[entry.path] = leader
            self._leaders.setdefault(leader, _UNKNOWN)
            self.files += 1
            return
        self._pending.append(
            (
                entry.path,
                kind,
                entry.mode,
                entry.uid,
                entry.gid,
                entry.size,
                entry.sha256,
                "" if kind == FILE else entry.link,  # a file's: its group's first path
                entry.mtime,
            )
        )
        if kind != DIR:
            self.files += 1
        if kind == FILE:
            self.size += entry.size
        if len(self._pending) >= self._run:
            self._spill()

    def _spill(self) -> None:
        self._runs.add(self._pending)
        self._pending = []

    def records(self) -> Iterator[Record]:
        """Every entry as a plain file, dir, symlink or fifo, sorted by path; each member of
        a hard-link group as the file, its link naming the group's first path."""
        if self._digest is not None:
            raise ValueError("the tree's digest was taken: its records are gone")
        self._pending.sort()
        first = self._groups()
        members = sorted(
            (path, *self._leaders[leader][1:7], first[path], self._leaders[leader][8])
            for path, leader in self._members.items()
        )
        merged = heapq.merge(*self._runs.readers(), self._pending, members)
        last = None
        for record in merged:
            path = record[0]
            if path == last:
                raise ValueError(f"{path!r} appears twice")
            last = path
            if path in first and record[1] == FILE:
                record = (*record[:7], first[path], record[8])
            yield record

    def _groups(self) -> dict[str, str]:
        """Each path of a hard-link group -> the group's first path; the groups' files'
        records found (refused when one is missing or not a file)."""
        wanted = {path for path, record in self._leaders.items() if record is _UNKNOWN}
        if wanted:
            for run in [*self._runs.readers(), iter(self._pending)]:
                for record in run:
                    if record[0] in wanted:
                        self._leaders[record[0]] = record
        for leader, record in self._leaders.items():
            if record is _UNKNOWN or record[1] != FILE:
                member = min(p for p, lead in self._members.items() if lead == leader)
                raise ValueError(f"hard link {member!r} to {leader!r}, not an earlier file")
        groups: dict[str, list[str]] = {}
        for path, leader in self._members.items():
            groups.setdefault(leader, [leader]).append(path)
        return {p: min(members) for members in groups.values() for p in members}

    def hexdigest(self) -> str:
        """sha256 of each record as a line of JSON (``json.dumps``'s text, written here
        directly: a ``dumps`` call per entry was a tenth of a small-file backup). Taken
        once: the temporary files are closed then."""
        if self._digest is not None:
            return self._digest
        digest = hashlib.sha256()
        lines: list[str] = []
        try:
            for path, kind, mode, uid, gid, size, sha, link, mtime in self.records():
                lines.append(
                    f"[{_json(path)}, {_json(kind)}, {mode}, {uid}, {gid}, {size}, "
                    f"{_json(sha)}, {_json(link)}, {mtime}]\n"
                )
                if len(lines) == 4096:  # hashed in groups: memory stays small for any tree
                    digest.update("".join(lines).encode())
                    lines.clear()
            digest.update("".join(lines).encode())
        finally:
            self.close()
        self._digest = digest.hexdigest()
        return self._digest

    def close(self) -> None:
        """Close (so remove) the temporary files; the entries are forgotten."""
        self._runs.close()
        self._pending = []

    def __enter__(self) -> TreeDigest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UNKNOWN: Record = ("", "", 0, 0, 0, 0, "", "", 0)  # a group's file not met yet


def _read(run: IO[bytes]) -> Iterator[Any]:
    """The values of a run file, from its start."""
    run.seek(0)
    while head := run.read(4):
        block: list[Any] = marshal.loads(run.read(int.from_bytes(head, "little")))
        yield from block


class Found(NamedTuple):
    """A path ``walk`` found: its entry (no sha256 yet) and its absolute path."""

    entry: Entry
    path: str


_KIND_OF = {stat.S_IFDIR: DIR, stat.S_IFREG: FILE, stat.S_IFLNK: SYMLINK, stat.S_IFIFO: FIFO}


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
    # Each stack item: the folder's sorted names still to list, its prefix in the tree and
    # its own path with a slash.
    stack = [(_listed(root), "", root if root.endswith("/") else root + "/")]
    while stack:
        names, prefix, base = stack[-1]
        for raw in names:
            name = raw.decode(_FS_ENCODING, _FS_ERRORS)
            rel = prefix + name
            path = base + name
            st = os.lstat(path)
            kind = _KIND_OF.get(stat.S_IFMT(st.st_mode))
            if kind is None:
                skipped.append(rel)  # sockets and device nodes: tar cannot restore them safely
            elif kind == DIR:
                yield Found(_entry(rel, st, DIR), path)
                stack.append((_listed(path), rel + "/", path + "/"))
                break  # its children come first; this folder's rest when they are done
            elif kind == FILE and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
                link = links[(st.st_dev, st.st_ino)]
                yield Found(_entry(rel, st, HARDLINK, link), path)
            else:
                if kind == FILE and st.st_nlink > 1:
                    links[(st.st_dev, st.st_ino)] = rel
                target = os.readlink(path) if kind == SYMLINK else ""
                yield Found(_entry(rel, st, kind, target), path)
        else:
            stack.pop()


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _listed(folder: str, most: int | None = None) -> Iterator[bytes]:
    """A folder's names as bytes, sorted. A folder of up to ``most`` (``LISTED``) names is
    held as a list, ~60 bytes a name; a larger one is read in parts of that many, each
    sorted and written out (``_Runs``), then merged, so a folder of millions of files
    takes a few MB, not 60 MB a million."""
    most = most or LISTED
    with os.scandir(os.fsencode(folder)) as it:
        names = [entry.name for entry in itertools.islice(it, most)]
        if len(names) < most:
            names.sort()
            return iter(names)
        runs = _Runs()
        try:
            while names:
                runs.add(names)
                names = [entry.name for entry in itertools.islice(it, most)]
        except BaseException:
            runs.close()
            raise
    return _merged(runs)


def _merged(runs: _Runs) -> Iterator[bytes]:
    try:
        yield from heapq.merge(*runs.readers())
    finally:
        runs.close()


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
