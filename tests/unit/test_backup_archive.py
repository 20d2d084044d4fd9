"""dsr's archives as untrusted input: crafted entries are refused before anything is
written, and a flipped byte is a checksum error naming the snapshot."""

from __future__ import annotations

import io
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from reconciler.backup import archive, restore, store
from reconciler.backup.errors import ArchiveError, ChecksumError
from reconciler.backup.manifest import Manifest
from reconciler.backup.run import Options, backup_path
from reconciler.backup.tree import content_hash, digest_of


def _tar(*entries: tarfile.TarInfo, root: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if root:
            info = tarfile.TarInfo(".")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for info in entries:
            data = b"x" * info.size if info.isreg() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


def _dir(name: str) -> tarfile.TarInfo:
    return _entry(name, tarfile.DIRTYPE)


CRAFTED = {
    "dotdot": ([_entry("../evil")], "'..'"),
    "nested dotdot": ([_dir("a"), _entry("a/../../evil")], "'..'"),
    "absolute": ([_entry("/etc/evil")], "absolute path"),
    "escaping symlink": ([_entry("l", tarfile.SYMTYPE, "../../etc")], "outside the volume"),
    "write through a link": (
        [_entry("l", tarfile.SYMTYPE, "/etc"), _entry("l/passwd")],
        "not an earlier directory",
    ),
    "hard link out": ([_entry("h", tarfile.LNKTYPE, "../etc/passwd")], "'..'"),
    "hard link to nothing": ([_entry("h", tarfile.LNKTYPE, "missing")], "not an earlier file"),
    "char device": ([_entry("null", tarfile.CHRTYPE)], "device node"),
    "block device": ([_entry("sda", tarfile.BLKTYPE)], "device node"),
    "duplicate": ([_entry("f"), _entry("f")], "twice"),
    "file then dir of that name": ([_entry("f"), _entry("f/g")], "not an earlier directory"),
    "orphan entry": ([_entry("missing-dir/f")], "not an earlier directory"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_entries_are_refused(case: str) -> None:
    entries, words = CRAFTED[case]
    with pytest.raises(ArchiveError, match=words):
        for _, content in archive.read_tar(io.BytesIO(_tar(*entries))):
            for _block in content:
                pass


def test_an_archive_must_start_with_its_root_directory() -> None:
    with pytest.raises(ArchiveError, match="not a directory"):
        list(archive.read_tar(io.BytesIO(_tar(_entry("f"), root=False))))


def test_a_relative_symlink_inside_and_an_absolute_one_are_kept() -> None:
    data = _tar(
        _dir("a"), _entry("a/l", tarfile.SYMTYPE, "../b"), _entry("abs", tarfile.SYMTYPE, "/x")
    )
    kinds = [(e.path, e.link) for e, _ in archive.read_tar(io.BytesIO(data))]
    assert kinds == [(".", ""), ("a", ""), ("a/l", "../b"), ("abs", "/x")]


def _crafted_snapshot(tmp_path: Path, tar: bytes) -> store.Snapshot:
    """A snapshot folder whose manifest matches its (crafted) archive's sha256."""
    folder = tmp_path / "dest" / "p" / "path-x" / "x-1"
    folder.mkdir(parents=True)
    compressed = zstandard.ZstdCompressor().compress(tar)
    (folder / "archive.tar.zst").write_bytes(compressed)
    import hashlib

    manifest = Manifest(
        id="x-1",
        policy="p",
        project="p",
        source="path:/x",
        time=datetime.now(UTC),
        zone="UTC",
        dsr_version="0",
        spec_hash="",
        size=0,
        files=0,
        archive_size=len(compressed),
        sha256=hashlib.sha256(compressed).hexdigest(),
        tree_digest="0" * 64,
        read_via="direct",
    )
    return store.Snapshot(manifest, str(folder), store.COMPLETE)


@pytest.mark.parametrize("case", ["dotdot", "write through a link", "char device", "absolute"])
def test_restore_of_a_crafted_archive_touches_nothing(tmp_path: Path, case: str) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep-me").write_text("precious")
    before = digest_of(str(target)).hexdigest()
    snapshot = _crafted_snapshot(tmp_path, _tar(*CRAFTED[case][0]))
    with pytest.raises(ArchiveError, match="snapshot x-1"):
        restore.restore_dir(snapshot, str(target))
    assert digest_of(str(target)).hexdigest() == before


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_archive_restored_into_an_empty_target_leaves_it_empty(
    tmp_path: Path, case: str
) -> None:
    """An empty target is not checked whole first: entries are checked as they are
    written, so the refusal comes after files were written, and those are taken away."""
    target = tmp_path / "target"
    target.mkdir()
    tar = _tar(_dir("ok"), _entry("ok/written", size=70_000), *CRAFTED[case][0])
    snapshot = _crafted_snapshot(tmp_path, tar)
    snapshot = store.Snapshot(
        snapshot.manifest.model_copy(update={"size": 1 << 30, "files": 1000}),
        snapshot.folder,
        store.COMPLETE,
    )
    with pytest.raises(ArchiveError, match=f"snapshot x-1: .*{CRAFTED[case][1]}"):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == []


def test_a_flipped_byte_is_a_checksum_error_and_the_target_is_untouched(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_bytes(os.urandom(200_000))
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"), Options(policy="r"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    with open(snapshot.archive, "r+b") as handle:
        handle.seek(manifest.archive_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))
    target = tmp_path / "target"
    target.mkdir()
    (target / "other").write_text("unchanged")
    with pytest.raises(ChecksumError, match=f"snapshot {manifest.id}: checksum mismatch"):
        restore.restore_dir(snapshot, str(target))
    assert os.listdir(target) == ["other"]


def test_an_edited_manifest_makes_the_snapshot_invisible(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    path = Path(snapshot.folder) / "manifest.json"
    path.write_text(path.read_text().replace(manifest.sha256, "not-a-sha"))
    found = store.find([str(tmp_path / "dest")], "p")
    assert not found.snapshots and found.unreadable == (snapshot.folder,)


def test_what_no_restore_accepts_is_left_out_of_a_backup_and_the_rest_round_trips(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    os.symlink("../../outside", source / "sub" / "climbs-out")
    os.symlink("../sub", source / "sub" / "stays-in")
    odd = os.fsencode(str(source / "sub")) + b"/bad\xff\n" + b"n" * 120
    with open(odd, "wb") as handle:
        handle.write(b"odd name")
    os.chown(odd, 3_000_000, 4_000_000)  # beyond ustar's numbers: a PAX header
    manifest = backup_path(None, "p", str(source), str(tmp_path / "dest"))
    assert manifest.skipped == ["sub/climbs-out"]
    [snapshot] = store.find([str(tmp_path / "dest")], "p").snapshots
    target = tmp_path / "target"
    target.mkdir()
    restore.restore_dir(snapshot, str(target))
    assert manifest.format_version == 2  # BLAKE3 over each file's content
    assert digest_of(str(target), hasher=content_hash(2)).hexdigest() == manifest.tree_digest
    restored = os.fsencode(str(target / "sub")) + b"/bad\xff\n" + b"n" * 120
    assert os.stat(restored).st_uid == 3_000_000
    assert os.readlink(target / "sub" / "stays-in") == "../sub"


def test_the_public_api_finds_and_verifies_what_it_wrote(tmp_path: Path) -> None:
    import reconciler.backup as api

    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("data")
    destination = str(tmp_path / "dest")
    manifest = api.backup_path(None, "proj", str(source), destination, api.Options(policy="m"))
    snapshot = api.load(api.folder_of(destination, manifest), "proj")
    assert snapshot is not None and snapshot.manifest == manifest
    api.verify(snapshot)
    assert manifest.policy == "m" and manifest.files == 1 and manifest.size == 4
