"""The digest of a tree a restore has written, read on both cores.

A restore ends by reading back every file it wrote and comparing the tree's digest with
the manifest's; read by one thread, that was a fifth of a restore with the other core
idle. Threads do not help: each file is a few system calls with a little Python between
them, and two threads doing that hand the GIL back and forth at each call (measured: three
times slower than one). So a second, small Python process (``-I -S``: no site, no
environment, only ``hashlib`` and ``os``) reads about half of the bytes, named to it
through a pipe, while this one reads the rest. A file it could not read is read here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from reconciler.backup.tree import FILE, Entry, TreeDigest, content_hash, file_sha256, walk

_PER_FILE = 32 << 10  # the cost of opening a file, counted as this many bytes read
_READER = r"""
import hashlib, os, stat, sys
root = os.fsencode(sys.argv[1]) + b"/"
new = hashlib.sha256
if sys.argv[2] == "blake3":  # no site: blake3's folder is named
    sys.path.insert(0, sys.argv[3])
    from blake3 import blake3 as new
names = sys.stdin.buffer.read().split(b"\0")[:-1]
flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
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
sys.stdout.buffer.write(b"".join(found))
"""


def digest_of(root: str, format_version: int = 1) -> TreeDigest:
    """What ``tree.digest_of`` gives, the file reading shared with a second process; each
    file's content hashed as a manifest of ``format_version`` does."""
    hasher = content_hash(format_version)
    found = list(walk(root))
    files = [(entry, path) for entry, path in found if entry.kind == FILE]
    mine: list[tuple[Entry, str]] = []
    theirs: list[Entry] = []
    here = there = 0
    for entry, path in sorted(files, key=lambda f: -f[0].size):  # largest first: even shares
        if here <= there:
            mine.append((entry, path))
            here += entry.size + _PER_FILE
        else:
            theirs.append(entry)
            there += entry.size + _PER_FILE
    reader = _start(root, theirs, format_version)
    for entry, path in mine:
        entry.sha256 = file_sha256(path, hasher=hasher)
    read = _results(reader)
    for entry in theirs:
        entry.sha256 = read.get(entry.path) or file_sha256(
            os.path.join(root, entry.path), hasher=hasher
        )
    tree = TreeDigest()
    for entry, _ in found:
        tree.add(entry)
    return tree


def _start(root: str, entries: list[Entry], version: int) -> subprocess.Popen[bytes] | None:
    if not entries:
        return None
    how = ["sha256", ""]
    if version >= 2:
        import blake3

        how = ["blake3", os.path.dirname(os.path.dirname(os.path.abspath(blake3.__file__)))]
    try:
        reader = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _READER, root, *how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None  # every file is read here then
    assert reader.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # it failed: its files are read here
        # It reads all its names before any file, so this write never waits for hashing.
        reader.stdin.write(b"".join(os.fsencode(e.path) + b"\0" for e in entries))
        reader.stdin.close()
    return reader


def _results(reader: subprocess.Popen[bytes] | None) -> dict[str, str]:
    if reader is None:
        return {}
    assert reader.stdout is not None
    with reader.stdout:
        out = reader.stdout.read()
    if reader.wait() != 0:
        return {}
    fields = out.split(b"\0")
    return {
        os.fsdecode(rel): sha.decode()
        for rel, sha in zip(fields[0:-1:2], fields[1::2], strict=True)
    }
