"""The threads of a backup and a restore: archives written before them still restore
exactly, an error on a worker reaches the caller and leaves no snapshot, and a damaged
archive read by the decompressing thread is still refused before anything is touched."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from reconciler.backup import archive, rehash, restore, sink, store, tarread
from reconciler.backup.errors import ArchiveError, BackupError, ChecksumError
from reconciler.backup.run import backup_path
from reconciler.backup.tree import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    Entry,
    TreeDigest,
    content_hash,
    digest_of,
    file_sha256,
)
from reconciler.backup.tree import walk as tree_walk

HEAD_ARCHIVE = Path(__file__).parent.parent / "fixtures" / "backup-head"


def _head_snapshot(tmp_path: Path) -> store.Snapshot:
    """The snapshot dsr wrote before the pipeline (commit 3a133cc), copied where it may
    be read: PAX names and owners, setuid, sticky and setgid modes, a sparse file, hard
    and symbolic links, an empty folder and a FIFO."""
    dest = tmp_path / "dest" / "compat"
    shutil.copytree(HEAD_ARCHIVE, dest)
    [folder] = dest.glob("*/*")
    snapshot = store.load(str(folder), "compat")
    assert snapshot is not None
    return snapshot


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring other owners needs root")
def test_an_archive_written_before_the_pipeline_restores_exactly(tmp_path: Path) -> None:
    snapshot = _head_snapshot(tmp_path)
    restore.check(snapshot)  # sha256, every entry, and the tree digest of the contents
    target = tmp_path / "target"
    target.mkdir()
    restore.restore_dir(snapshot, str(target))
    assert digest_of(str(target)).hexdigest() == snapshot.manifest.tree_digest
    assert stat.S_IMODE(os.stat(target / "setuid").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(target / "sticky").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(target / "sub").st_mode) == 0o2750
    sparse = os.stat(target / "sub" / "sparse.img")
    assert sparse.st_size == 300_000 and sparse.st_blocks * 512 < 300_000
    assert os.stat(target / "small.txt").st_ino == os.stat(target / "sub/hardlink.txt").st_ino
    assert os.readlink(target / "sub" / "rel-link") == "../small.txt"
    assert os.listdir(target / "sub" / "empty") == []
    # It is a format 1 snapshot: sha256 over each file's content.
    assert snapshot.manifest.format_version == 1
    # Backed up again by today's writer (format 2: BLAKE3), the restored tree is the same
    # tree, and that snapshot restores to it too.
    again = backup_path(None, "compat", str(target), str(tmp_path / "again"))
    assert again.format_version == 2
    assert again.tree_digest == digest_of(str(target), hasher=content_hash(2)).hexdigest()
    [newer] = store.find([str(tmp_path / "again")], "compat").snapshots
    restore.check(newer)
    back = tmp_path / "back"
    back.mkdir()
    restore.restore_dir(newer, str(back))
    assert digest_of(str(back)).hexdigest() == snapshot.manifest.tree_digest


def _old_ustar(name: str, link: str, entry: Entry) -> bytes | None:
    """The header builder before the pipeline, kept as the reference."""
    printable = re.compile(r"[ -~]{1,100}")
    if not printable.fullmatch(name) or (link and not printable.fullmatch(link)):
        return None
    size = entry.size if entry.kind == FILE else 0
    if max(entry.uid, entry.gid) >= 0o7777777 or size >= 0o77777777777:
        return None
    if not 0 <= entry.mtime < 0o77777777777 or min(entry.uid, entry.gid) < 0:
        return None
    kinds = {DIR: b"5", FILE: b"0", SYMLINK: b"2", HARDLINK: b"1"}
    head = b"".join(
        (
            name.encode().ljust(100, b"\0"),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0"
            % (entry.mode, entry.uid, entry.gid, size, entry.mtime),
            b"        ",
            kinds[entry.kind],
            link.encode().ljust(100, b"\0"),
            b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12),
        )
    )
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


@pytest.mark.parametrize(
    ("name", "link", "entry"),
    [
        ("a/b.txt", "", Entry("a/b.txt", FILE, 0o644, 0, 0, 1_700_000_000, 12345)),
        (".", "", Entry(".", DIR, 0o1777, 1000, 1000, 0)),
        ("l", "../x y", Entry("l", SYMLINK, 0o777, 1, 2, 5, 0, "../x y")),
        ("h", "a/b.txt", Entry("h", HARDLINK, 0o4755, 7, 8, 9, 0, "a/b.txt")),
        ("n" * 100, "", Entry("n" * 100, FILE, 0o600, 0o7777776, 3, 4, 0o77777777776)),
        ("n" * 101, "", Entry("n" * 101, FILE, 0o600, 0, 0, 0)),
        ("caf\u00e9", "", Entry("caf\u00e9", FILE, 0o600, 0, 0, 0)),
        ("tab\tname", "", Entry("tab\tname", FILE, 0o600, 0, 0, 0)),
        ("", "", Entry("x", FILE, 0o600, 0, 0, 0)),
        ("big", "", Entry("big", FILE, 0o600, 0o7777777, 0, 0)),
        ("old", "", Entry("old", FILE, 0o600, 0, 0, -1)),
    ],
)
def test_headers_are_the_bytes_they_were(name: str, link: str, entry: Entry) -> None:
    header = archive._ustar(name, link, entry)
    assert header == _old_ustar(name, link, entry)
    if header is not None:
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")  # checksum too
        assert (info.name, info.mode, info.uid, info.mtime) == (
            name,
            entry.mode,
            entry.uid,
            entry.mtime,
        )


@given(st.binary(min_size=512, max_size=512))
def test_a_headers_checksum_is_the_sum_of_its_bytes(block: bytes) -> None:
    assert tarread.header_sum(block) == sum(block[:148]) + 8 * 32 + sum(block[156:])


def test_the_largest_header_sum_is_exact() -> None:
    block = b"\xff" * 512  # every piece at its largest: adler32 must not wrap
    assert tarread.header_sum(block) == 504 * 255 + 256


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\0", 0o644),
        (b"0000644 ", 0o644),
        (b"00000644", 0o644),  # the whole width, no terminator
        (b"  644 \0\0", 0o644),
        (b"12\0\0\0\0\0\0", 0o12),
        (b"\0\0\0\0\0\0\0\0", 0),
    ],
)
def test_octal_fields_read_as_before(field: bytes, value: int) -> None:
    assert tarread._octal(field) == value


def _tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    for n in range(40):
        (root / "d" / f"f{n}").write_bytes(os.urandom(n * 300))
    (root / "big").write_bytes(os.urandom(3 << 20))


def _no_worker_left() -> bool:
    names = {t.name for t in threading.enumerate()}
    return not [
        n
        for n in names
        if n.startswith(("dsr-compress", "dsr-write", "dsr-fdatasync", "dsr-decompress"))
    ]


def test_an_error_on_the_compressing_thread_reaches_the_caller_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    _tree(source)

    def full(self: object, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink.FileOutput, "write", full)
    with pytest.raises(OSError, match="No space left"):
        backup_path(None, "p", str(source), str(tmp_path / "dest"))
    found = store.find([str(tmp_path / "dest")], "p")
    assert not found.snapshots and not found.unfinished
    assert not [f for f in (tmp_path / "dest").rglob("*") if f.is_file()]
    assert _no_worker_left()


def test_an_error_while_reading_stops_the_worker_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    _tree(source)
    calls = []

    def failing(path: str, size: int) -> bytes:
        calls.append(path)
        if len(calls) == 30:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return b"x" * size

    monkeypatch.setattr(archive, "read_small", failing)
    with pytest.raises(PermissionError):
        backup_path(None, "p", str(source), str(tmp_path / "dest"))
    assert not store.find([str(tmp_path / "dest")], "p").snapshots
    assert not [f for f in (tmp_path / "dest").rglob("*") if f.is_file()]
    assert _no_worker_left()


def test_the_sink_writes_frames_in_order_that_zstd_reads_as_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "out.zst"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        out = sink.ArchiveSink(fd)
        pieces = [os.urandom(n) for n in (1, 511, 1 << 18, 5 << 20, 3)] * 3
        pieces += [bytes([n]) * (1 << 20) for n in range(20)]  # many frames, each its own
        for piece in pieces:
            out.write(piece)
        sha256, size = out.close()
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert size == len(data) and sha256 == hashlib.sha256(data).hexdigest()
    assert data.count(b"\x28\xb5\x2f\xfd") >= 8  # zstd's frame magic: many frames
    with open(path, "rb") as handle:
        assert archive.Decompressed(handle).plain().read() == b"".join(pieces)
    # The format is open: Debian's zstd reads the frames as one stream.
    shown = subprocess.run(["zstd", "-d", "-c", str(path)], capture_output=True, check=True)
    assert shown.stdout == b"".join(pieces)


def test_an_empty_sink_writes_a_frame_zstd_reads(tmp_path: Path) -> None:
    path = tmp_path / "out.zst"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        sink.ArchiveSink(fd).close()
    finally:
        os.close(fd)
    with open(path, "rb") as handle:
        assert archive.Decompressed(handle).plain().read() == b""


def test_a_truncated_archive_is_refused_and_the_target_is_untouched(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _tree(source)
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    with open(snapshot.archive, "r+b") as handle:
        handle.truncate(manifest.archive_size // 2)
    target = tmp_path / "target"
    target.mkdir()
    (target / "other").write_text("unchanged")
    with pytest.raises((ArchiveError, ChecksumError), match=manifest.id):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == ["other"]
    assert (target / "other").read_text() == "unchanged"
    assert _no_worker_left()


def test_an_archive_not_its_manifests_is_never_decompressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swapped archive (here: a zstd bomb, a few KB that expand to 4 GiB) is refused by
    its sha256 alone before a target holding data is touched: nothing decompresses or
    parses it, so it cannot hold dsr for hours. An empty target is written as the bytes
    are hashed: the bomb is read no further than the manifest's bounds, the target is
    left empty, and the error says the archive is not the manifest's."""
    source = tmp_path / "src"
    _tree(source)
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    bomb = zstandard.ZstdCompressor(level=1).compressobj()
    with open(snapshot.archive, "wb") as handle:
        zeros = bytes(1 << 24)
        for _ in range(256):
            handle.write(bomb.compress(zeros))
        handle.write(bomb.flush())
    assert os.path.getsize(snapshot.archive) < 1 << 20

    def parsed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the swapped archive was decompressed")

    monkeypatch.setattr(restore, "scan_file", parsed)
    with pytest.raises(ChecksumError, match=f"{manifest.id}: checksum mismatch"):
        restore.check(snapshot)
    target = tmp_path / "target"
    target.mkdir()
    (target / "kept").write_text("data")
    with pytest.raises(ChecksumError):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == ["kept"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ChecksumError, match=f"{manifest.id}: checksum mismatch"):
        restore.restore_dir(snapshot, str(empty))
    assert os.listdir(empty) == []
    assert _no_worker_left()


def _rewritten(snapshot: store.Snapshot, **fields: object) -> store.Snapshot:
    """The snapshot with its manifest edited (as someone with write access could)."""
    folder = os.path.dirname(snapshot.archive)
    store.write_manifest(folder, snapshot.manifest.model_copy(update=fields))
    again = store.load(folder, snapshot.manifest.project)
    assert again is not None
    return again


def test_an_archive_holding_more_than_its_manifest_is_refused(tmp_path: Path) -> None:
    """Even with a matching sha256 (manifest rewritten too): more file bytes, or more
    files, than the manifest records stop the check there."""
    source = tmp_path / "src"
    _tree(source)
    backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    restore.check(snapshot)
    m = snapshot.manifest
    for fields in ({"size": m.size - 1}, {"files": m.files - 1}):
        with pytest.raises(ArchiveError, match="holds more than its manifest records"):
            restore.check(_rewritten(snapshot, **fields))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ArchiveError):
        restore.restore_dir(_rewritten(snapshot, size=0), str(target))
    assert os.listdir(target) == []


def test_an_archive_going_on_after_its_end_is_refused(tmp_path: Path) -> None:
    """Bytes after the end-of-archive blocks (here 64 MiB of zeros in a second zstd frame,
    a few KB on disk) are not drained for ever: over 1 MiB, the archive is refused."""
    source = tmp_path / "src"
    _tree(source)
    backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    with open(snapshot.archive, "ab") as handle:
        handle.write(zstandard.ZstdCompressor(level=1).compress(bytes(64 << 20)))
    data = Path(snapshot.archive).read_bytes()
    forged = _rewritten(snapshot, sha256=hashlib.sha256(data).hexdigest(), archive_size=len(data))
    with pytest.raises(ArchiveError, match="goes on after its end"):
        restore.check(forged)


def test_a_backup_whose_file_is_not_the_size_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is read back (see ``sink``), but the file flushed must be as long as what
    was written: one cut short behind dsr's back (by another process) leaves no snapshot."""
    source = tmp_path / "src"
    _tree(source)
    (source / "noise").write_bytes(os.urandom(3 << 20))  # incompressible: several flushes
    monkeypatch.setattr(sink, "SYNC_EVERY", 1 << 20)
    real = sink.FileOutput.flush

    def cut(self: sink.FileOutput) -> None:
        os.ftruncate(self.fd, self.count - 1)
        real(self)

    monkeypatch.setattr(sink.FileOutput, "flush", cut)
    with pytest.raises(BackupError, match="is not the size written"):
        backup_path(None, "p", str(source), str(tmp_path / "dest"))
    assert not store.find([str(tmp_path / "dest")], "p").snapshots
    assert _no_worker_left()


def test_a_folder_among_several_places_is_missed_when_its_file_is_not_the_size_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that is one of several places (``tee.FolderSink``) writes through the same
    ``sink.FileOutput`` as a lone folder: a file cut short behind dsr's back is caught
    there, that place keeps nothing, the other keeps the snapshot."""
    from reconciler.backup import places, run
    from reconciler.backup.errors import PlacesFailed

    source = tmp_path / "src"
    _tree(source)
    bad, good = str(tmp_path / "bad"), str(tmp_path / "good")
    real = sink.FileOutput.flush

    def cut(self: sink.FileOutput) -> None:
        if os.readlink(f"/proc/self/fd/{self.fd}").startswith(bad + "/"):
            os.ftruncate(self.fd, self.count - 1)  # another process's doing, not dsr's
        real(self)

    monkeypatch.setattr(sink.FileOutput, "flush", cut)
    take = places.take(None, "p", [store.Folder(good), store.Folder(bad)], str(tmp_path / "st"))
    with pytest.raises(PlacesFailed) as caught:
        take(store.Source("path", str(source)), run.Options(policy="nightly"))
    assert caught.value.stored == [good]
    assert "is not the size written" in caught.value.missed[bad]
    assert [s.status for s in store.Folder(good).find("p").snapshots] == ["complete"]
    found = store.Folder(bad).find("p")
    assert not found.snapshots and not found.unfinished
    assert not [f for f in Path(bad).rglob("*") if f.is_file()]


def test_the_tree_digest_is_json_lines_of_its_records() -> None:
    """The digest's text is what ``json.dumps`` wrote per record: manifests written before
    keep verifying, whatever the names hold."""
    tree = TreeDigest()
    tree.add(Entry(".", DIR, 0o755, 0, 0, 1))
    tree.add(Entry('quo"te\\ \n\t\x01 é \udcff \u2028 日本', FILE, 0o4755, 7, 8, -2, 5, "", "ab"))
    tree.add(Entry("l", SYMLINK, 0o777, 0, 0, 3, 0, 'tar"get\x7f é'))
    tree.add(Entry("h", HARDLINK, 0o644, 0, 0, 3, 0, 'quo"te\\ \n\t\x01 é \udcff \u2028 日本'))
    reference = hashlib.sha256()
    for record in tree.records():
        reference.update(json.dumps(list(record)).encode() + b"\n")
    assert tree.hexdigest() == reference.hexdigest()


def _snapshot_and_another(tmp_path: Path) -> tuple[store.Snapshot, store.Snapshot]:
    """A snapshot of ``_tree`` and one of another (valid) tree, in one folder."""
    source, other = tmp_path / "src", tmp_path / "other"
    _tree(source)
    (other / "x").mkdir(parents=True)
    (other / "x" / "f").write_bytes(b"other tree")
    backup_path(None, "p", str(source), str(tmp_path / "dest"))
    backup_path(None, "q", str(other), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    [swap] = store.find([str(tmp_path / "dest")], "q").snapshots
    return snapshot, swap


def test_an_archive_changed_after_its_check_is_refused_and_the_target_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swapped between the sha256 check and the writing (for another valid archive of a
    different tree): the bytes read while checking every entry are hashed too, and do not
    match, so a target holding data is not emptied."""
    snapshot, swap = _snapshot_and_another(tmp_path)
    real = restore.check_bytes

    def then_swapped(s: store.Snapshot, progress: object = None) -> None:
        real(s)
        shutil.copyfile(swap.archive, s.archive)

    monkeypatch.setattr(restore, "check_bytes", then_swapped)
    target = tmp_path / "target"
    target.mkdir()
    (target / "kept").write_text("data")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == ["kept"]
    assert _no_worker_left()


def test_another_valid_archive_written_into_an_empty_target_is_refused_and_removed(
    tmp_path: Path,
) -> None:
    """An empty target is written without a check before: the bytes read while writing
    are hashed, and another (valid) archive than the manifest's is refused at its end,
    and what it wrote removed."""
    snapshot, swap = _snapshot_and_another(tmp_path)
    shutil.copyfile(swap.archive, snapshot.archive)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == []
    assert _no_worker_left()


@pytest.mark.parametrize("version", [1, 2], ids=["sha256", "blake3"])
def test_the_tree_read_back_on_two_processes_has_the_one_process_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """Odd names (newlines, bytes that are not UTF-8), hard links, large and empty files:
    the second process reads its share by name; when it cannot run, all is read here."""
    root = tmp_path / "t"
    _tree(root)
    odd = os.fsencode(str(root / "d")) + b"/new\nline \xff\xfe name"
    with open(odd, "wb") as handle:
        handle.write(os.urandom(70_000))
    os.link(root / "big", root / "d" / "big-link")
    (root / "empty").write_bytes(b"")
    os.symlink("big", root / "sym")
    hasher = content_hash(version)
    expected = digest_of(str(root), hasher=hasher).hexdigest()
    assert rehash.digest_of(str(root), version).hexdigest() == expected
    files = [e for e, _ in tree_walk(str(root)) if e.kind == FILE]
    with rehash._Reader(str(root), version) as reader:
        for _ in range(2):  # one batch after another
            reader.send(files)
            read = reader.results()
            # it did read, with the format's hash
            assert read == {e.path: file_sha256(str(root / e.path), hasher=hasher) for e in files}
    monkeypatch.setattr(rehash, "BATCH", 2)  # many batches
    assert rehash.digest_of(str(root), version).hexdigest() == expected
    monkeypatch.setattr(rehash.sys, "executable", "/nonexistent/python")
    assert rehash.digest_of(str(root), version).hexdigest() == expected
    monkeypatch.setattr(rehash.sys, "executable", "/bin/false")
    assert rehash.digest_of(str(root), version).hexdigest() == expected


def test_a_sink_failing_at_close_leaves_no_thread(tmp_path: Path) -> None:
    """The writer fails (a full disk) before ``close``: ``close`` raises its error and no
    compressing thread is left waiting for work."""
    fd = os.open(tmp_path / "out.zst", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        out = sink.ArchiveSink(fd)
        os.close(fd)  # every write now fails
        out.write(os.urandom(sink.BATCH + 1))
        out.worker.join()  # the writer met the error and ended
        with pytest.raises(OSError):
            out.close()
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    assert _no_worker_left()
