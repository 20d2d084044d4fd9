"""Trees for the backup tests: fill a directory with everything a volume can hold, and
describe one independently of dsr's own code, so a round trip is judged by an outsider."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

Row = tuple[str, str, int, int, int, int, str, str, int]

SPARSE_SIZE = 1 << 28  # 256 MiB, almost all of it a hole


def fill(root: Path) -> None:
    """Odd names, other owners, every mode bit, links of both kinds, a sparse file, an
    empty directory, a FIFO and varied mtimes (directories' last, as their writes move them)."""
    (root / "docs").mkdir()
    (root / "docs" / "with space.txt").write_text("space\n")
    (root / "docs" / "ünïcödé ✓.txt").write_text("unicode\n")
    (root / "docs" / "new\nline").write_text("newline in the name\n")
    (root / "docs" / "tab\tand\x01control").write_bytes(b"\x00\x01binary\xff")
    (root / "empty").mkdir()
    (root / "owned").write_text("someone else's\n")
    os.chown(root / "owned", 1234, 5678)
    (root / "setuid-bin").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "setuid-bin", 0, 50)
    os.chmod(root / "setuid-bin", 0o4755)
    (root / "shared").mkdir()
    os.chmod(root / "shared", 0o2775)
    os.chown(root / "shared", 33, 33)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "shared" / "data.bin").write_bytes(os.urandom(300_000))
    os.link(root / "shared" / "data.bin", root / "hardlink-to-data")
    os.link(root / "shared" / "data.bin", root / "docs" / "another-hardlink")
    os.symlink("../shared/data.bin", root / "docs" / "relative-link")
    os.symlink("/etc/hostname", root / "absolute-link")
    os.symlink("does-not-exist", root / "dangling")
    os.mkfifo(root / "fifo")
    with open(root / "sparse", "wb") as handle:
        handle.seek(SPARSE_SIZE // 2)
        handle.write(b"middle")
        handle.truncate(SPARSE_SIZE)
    for n, name in enumerate(["owned", "setuid-bin", "sparse", "fifo", "hardlink-to-data"]):
        os.utime(root / name, (1_000_000_000 + n * 86_400 * 400,) * 2)
    os.utime(root / "absolute-link", (1_234_567_890, 1_234_567_890), follow_symlinks=False)
    for n, folder in enumerate(["docs", "empty", "shared", "tmp"]):
        os.utime(root / folder, (1_100_000_000 + n * 3_600,) * 2)
    os.utime(root, (1_200_000_000, 1_200_000_000))


def describe(root: Path) -> list[Row]:
    """(path, type, mode, uid, gid, size, sha256, link target, mtime) of every path;
    hard links name the first path of their group."""
    paths = [root]
    for folder, dirs, files in os.walk(root):
        paths += [Path(folder) / name for name in [*dirs, *files]]
    groups: dict[tuple[int, int], list[str]] = {}
    for path in paths:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            groups.setdefault((st.st_dev, st.st_ino), []).append(os.path.relpath(path, root))
    first = {p: min(g) if len(g) > 1 else "" for g in groups.values() for p in g}
    return sorted(_row(root, path, first) for path in paths)


def _row(root: Path, path: Path, first: dict[str, str]) -> Row:
    rel = os.path.relpath(path, root)
    st = os.lstat(path)
    mode = st.st_mode
    kind = stat.S_IFMT(mode)
    digest, link = "", ""
    if stat.S_ISREG(mode):
        digest = _sha256(path)
        link = first.get(rel, "")
    elif stat.S_ISLNK(mode):
        link = os.readlink(path)
    size = st.st_size if stat.S_ISREG(mode) else 0
    return (
        rel,
        oct(kind),
        stat.S_IMODE(mode),
        st.st_uid,
        st.st_gid,
        size,
        digest,
        link,
        int(st.st_mtime),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def wipe(root: Path) -> None:
    """Empty a directory (not itself), and leave a stray file the restore must remove."""
    for item in root.iterdir():
        if item.is_dir() and not item.is_symlink():
            for sub, dirs, files in os.walk(item, topdown=False):
                for f in files:
                    os.unlink(os.path.join(sub, f))
                for d in dirs:
                    p = os.path.join(sub, d)
                    os.unlink(p) if os.path.islink(p) else os.rmdir(p)
            os.rmdir(item)
        else:
            item.unlink()
    (root / "stray").write_text("not in the snapshot\n")


def volume_spec(endpoint: str, destination: str, volume: str, recipient: str | None) -> str:
    """A spec of ``volume`` (labelled ``tier: gold``) whose rule ``off`` backs it up into
    ``destination`` (an ``s3://`` url or a list) at ``endpoint``, encrypted to
    ``recipient`` when one is given."""
    text = f"""
        version: 1
        volumes:
          {volume}: {{labels: {{tier: gold}}}}
        backups:
          off:
            volumes: [{volume}]
            destination: {destination}
            endpoint: {endpoint}
            region: us-east-1
        """
    return text + (f"    encrypt_to: [{recipient}]\n" if recipient else "")
