"""The digest of a tree a restore has written, read on both cores.

A restore ends by reading back every file it wrote and comparing the tree's digest with
the manifest's; read by one thread, that was a fifth of a restore with the other core
idle. Threads do not help: each file is a few system calls with a little Python between
them, and two threads doing that hand the GIL back and forth at each call (measured: three
times slower than one). So a second, small Python process (``-I -S``: no site, no
environment, only ``hashlib`` and ``os``) reads about half of the bytes, named to it
through a pipe, while this one reads the rest. A file it could not read is read here.
The tree is listed a batch at a time (names, then hashes, over the same pipes), so a
restore of a million files holds a few thousand of them, not all.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from reconciler.backup.tree import (
    FILE,
    Entry,
    Found,
    Hasher,
    TreeDigest,
    content_hash,
    file_sha256,
    walk,
)

_PER_FILE = 32 << 10  # the cost of opening a file, counted as this many bytes read
BATCH = 20_000  # entries listed, then hashed on both sides, at a time: memory stays small
_READER = r"""
import hashlib, os, stat, sys
root = os.fsencode(sys.argv[1]) + b"/"
new = hashlib.sha256
if sys.argv[2] == "blake3":  # no site: blake3's folder is named
    sys.path.insert(0, sys.argv[3])
    from blake3 import blake3 as new
flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
given, out = sys.stdin.buffer, sys.stdout.buffer
while head := given.read(8):  # each batch: its length, then its names, each ended by NUL
    names = given.read(int.from_bytes(head, "little")).split(b"\0")[:-1]
    found = []
    for rel in names:
        try:
            fd = os.open(root + rel, flags)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                digest = new()
                while block := os.read(fd, 1 << 20):
                    digest.update(block)
                found.append(b"%s\0%s\0" % (rel, digest.hexdigest().encode()))
        except OSError:
            pass
        finally:
            os.close(fd)
    answer = b"".join(found)
    out.write(len(answer).to_bytes(8, "little") + answer)
    out.flush()
"""


def digest_of(root: str, format_version: int = 1) -> TreeDigest:
    """What ``tree.digest_of`` gives, the file reading shared with a second process; each
    file's content hashed as a manifest of ``format_version`` does. The tree is listed
    and hashed ``BATCH`` entries at a time, so memory does not grow with it."""
    hasher = content_hash(format_version)
    tree = TreeDigest()
    with _Reader(root, format_version) as reader:
        batch: list[Found] = []
        for found in walk(root):
            batch.append(found)
            if len(batch) == BATCH:
                _hash(batch, root, hasher, reader)
                for entry, _ in batch:
                    tree.add(entry)
                batch = []
        _hash(batch, root, hasher, reader)
        for entry, _ in batch:
            tree.add(entry)
    return tree


def _hash(batch: list[Found], root: str, hasher: Hasher, reader: _Reader) -> None:
    """Fill in the sha256 of each file of ``batch``, about half of the bytes read by the
    second process (largest files first: even shares)."""
    files = sorted((f for f in batch if f.entry.kind == FILE), key=lambda f: -f.entry.size)
    mine: list[Found] = []
    theirs: list[Entry] = []
    here = there = 0
    for found in files:
        if here <= there or not reader.alive:
            mine.append(found)
            here += found.entry.size + _PER_FILE
        else:
            theirs.append(found.entry)
            there += found.entry.size + _PER_FILE
    reader.send(theirs)
    for entry, path in mine:
        entry.sha256 = file_sha256(path, hasher=hasher)
    read = reader.results()
    for entry in theirs:
        entry.sha256 = read.get(entry.path) or file_sha256(
            os.path.join(root, entry.path), hasher=hasher
        )


class _Reader:
    """The second process: given a batch of names, it answers their hashes. One that
    failed (or could not start) is not asked again: its files are read here."""

    def __init__(self, root: str, version: int) -> None:
        how = ["sha256", ""]
        if version >= 2:
            import blake3

            how = ["blake3", os.path.dirname(os.path.dirname(os.path.abspath(blake3.__file__)))]
        self.process: subprocess.Popen[bytes] | None = None
        self.waiting = False
        with contextlib.suppress(OSError):  # every file is read here then
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _READER, root, *how],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None

    def send(self, entries: list[Entry]) -> None:
        if self.process is None or not entries:
            return
        assert self.process.stdin is not None
        names = b"".join(os.fsencode(e.path) + b"\0" for e in entries)
        try:
            # It reads a whole batch before any file: this write never waits for hashing.
            self.process.stdin.write(len(names).to_bytes(8, "little") + names)
            self.process.stdin.flush()
            self.waiting = True
        except BrokenPipeError:  # it failed: its files are read here
            self._stop()

    def results(self) -> dict[str, str]:
        if self.process is None or not self.waiting:
            return {}
        self.waiting = False
        assert self.process.stdout is not None
        head = self.process.stdout.read(8)
        out = self.process.stdout.read(int.from_bytes(head, "little")) if len(head) == 8 else b""
        fields = out.split(b"\0")
        if len(head) != 8 or len(fields) % 2 != 1:
            self._stop()
            return {}
        return {
            os.fsdecode(rel): sha.decode()
            for rel, sha in zip(fields[0:-1:2], fields[1::2], strict=True)
        }

    def _stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        for pipe in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        process.kill()
        process.wait()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
