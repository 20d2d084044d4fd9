"""One archive streamed into several places at once (``places.take`` with a list), against
real SeaweedFS servers: every place gets the same snapshot (the same encrypted bytes with
``encrypt_to``); a place that fails mid-way (its store killed, a full disk, a missing
bucket) gets nothing that lists, and the others still complete."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
from test_backup_full_disk import file_size_limit

from reconciler.backup import places, run, s3io
from reconciler.backup.errors import PlacesFailed
from reconciler.backup.restore import check, restore_dir
from reconciler.backup.s3store import S3
from reconciler.backup.sealed import SealedFolder
from reconciler.backup.store import Place, Source

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import S3Server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[S3Server]]:
    started: list[S3Server] = []
    try:
        for name in ("a", "b"):
            started.append(S3Server.start(tmp_path_factory.mktemp(f"s3{name}")))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(autouse=True)
def _credentials(servers: list[S3Server], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in servers[0].env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def _tree(folder: Path, mib: int) -> None:
    folder.mkdir()
    for n in range(mib):
        (folder / f"f{n}").write_bytes(os.urandom(1 << 20))  # random: zstd keeps its size
    (folder / "small").write_text("hello")


def _s3(server: S3Server, bucket: str, to: tuple[str, ...] = (), keys: Any = ()) -> S3:
    server.make_bucket(bucket)
    return S3(f"s3://{bucket}/dsr", endpoint=server.endpoint, recipients=to, identities=keys)


def _take(tmp_path: Path, where: list[Place], site: Path) -> Any:
    take = places.take(None, "web", where, str(tmp_path / "staging"))
    return take(Source("path", str(site)), run.Options(policy="nightly"))


def _restored(place: Place, tmp_path: Path, name: str) -> dict[str, str]:
    [snapshot] = place.find("web").snapshots
    out = tmp_path / name
    out.mkdir()
    with place.fetched(snapshot) as local:
        check(local)
        restore_dir(local, str(out))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}


def _tree_of(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_folder_and_two_buckets_get_the_same_snapshot(
    tmp_path: Path, servers: list[S3Server], encrypted: bool
) -> None:
    site = tmp_path / "site"
    _tree(site, 20)
    to: tuple[str, ...] = ()
    keys: Any = ()
    if encrypted:
        identity = pyrage.x25519.Identity.generate()
        to, keys = (str(identity.to_public()),), (identity,)
    name = f"tee{'age' if encrypted else 'plain'}"
    where: list[Place] = [
        SealedFolder(str(tmp_path / "dest"), to, keys, str(tmp_path / "fetch")),
        _s3(servers[0], f"{name}-a", to, keys),
        _s3(servers[1], f"{name}-b", to, keys),
    ]
    manifest = _take(tmp_path, where, site)
    assert not list((tmp_path / "staging").rglob("archive*")), "nothing is staged on the host"
    for n, place in enumerate(where):
        [snapshot] = place.find("web").snapshots
        assert snapshot.id == manifest.id and snapshot.status == "complete"
        assert _restored(place, tmp_path, f"out{n}") == _tree_of(site)
    if encrypted:  # one encryption: the very same bytes in every place
        sealed = (tmp_path / "dest" / "web" / manifest.id / "archive.tar.zst.age").read_bytes()
        for server, bucket in ((servers[0], f"{name}-a"), (servers[1], f"{name}-b")):
            key = f"dsr/web/{manifest.id}/archive.tar.zst.age"
            body = server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
            assert body == sealed


def test_the_stores_are_sent_the_same_parts_not_a_copy_each(
    tmp_path: Path, servers: list[S3Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory of several stores is that of one: each part is gathered once and the
    very same object is sent to every store (a buffer each was 16 MB more a store)."""
    sent: dict[str, list[Any]] = {}
    real = s3io.Upload._part

    def part(self: s3io.Upload, number: int, data: Any) -> None:
        sent.setdefault(self.key.split("/")[0] + self.store.bucket, []).append(data)
        real(self, number, data)

    monkeypatch.setattr(s3io.Upload, "_part", part)
    site = tmp_path / "site"
    _tree(site, 20)
    where: list[Place] = [
        SealedFolder(str(tmp_path / "dest")),
        _s3(servers[0], "tee-shared-a"),
        _s3(servers[1], "tee-shared-b"),
    ]
    _take(tmp_path, where, site)
    first, second = sent.values()
    assert len(first) == len(second) >= 3  # 20 MiB: parts of 8 MiB, the last one fewer
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert all(len(p) >= s3io.PART for p in first[:-1])  # whole parts, one write more at most
    for n, place in enumerate(where):
        assert _restored(place, tmp_path, f"out{n}") == _tree_of(site)


def test_a_store_killed_mid_way_misses_the_snapshot_the_others_keep_it(
    tmp_path: Path, servers: list[S3Server]
) -> None:
    own = S3Server.start(tmp_path / "own-s3")
    try:
        site = tmp_path / "site"
        _tree(site, 48)
        alive, dying = _s3(servers[0], "tee-kill-a"), _s3(own, "tee-kill-b")
        where: list[Place] = [SealedFolder(str(tmp_path / "dest")), alive, dying]

        def kill_once_it_uploads() -> None:
            deadline = time.monotonic() + 60
            client = own.client()
            while time.monotonic() < deadline:
                if client.list_multipart_uploads(Bucket="tee-kill-b").get("Uploads"):
                    own.kill()
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_once_it_uploads)
        killer.start()
        with pytest.raises(PlacesFailed) as raised:
            _take(tmp_path, where, site)
        killer.join()
        assert own.process is None, "the store was killed while the archive went up"
        err = raised.value
        assert err.manifest is not None
        assert sorted(err.stored) == sorted([str(tmp_path / "dest"), alive.url])
        assert list(err.missed) == [dying.url]
        assert "cannot reach the store" in err.missed[dying.url]
        assert f"is stored in {tmp_path / 'dest'}, {alive.url}; not in {dying.url}" in str(err)
        for n, place in enumerate(where[:2]):
            assert _restored(place, tmp_path, f"out{n}") == _tree_of(site)
        own.restart()
        found = dying.find("web")
        assert not found.snapshots  # nothing half-listed where it failed
    finally:
        own.stop()


def test_a_full_disk_in_one_folder_leaves_it_nothing_and_the_bucket_completes(
    tmp_path: Path, servers: list[S3Server]
) -> None:
    site = tmp_path / "site"
    _tree(site, 2)
    bucket = _s3(servers[0], "tee-full")
    dest = tmp_path / "dest"
    where: list[Place] = [SealedFolder(str(dest)), bucket]
    with file_size_limit(1 << 20), pytest.raises(PlacesFailed) as raised:
        _take(tmp_path, where, site)  # the archive (2 MiB) passes the limit; nothing else
    err = raised.value
    assert err.stored == [bucket.url] and list(err.missed) == [str(dest)]
    assert not [p for p in dest.rglob("*") if p.is_file()]
    assert _restored(bucket, tmp_path, "out") == _tree_of(site)


def test_a_missing_bucket_is_missed_from_the_start(tmp_path: Path, servers: list[S3Server]) -> None:
    site = tmp_path / "site"
    _tree(site, 1)
    good = _s3(servers[0], "tee-there")
    gone = S3("s3://tee-not-there/dsr", endpoint=servers[0].endpoint)
    with pytest.raises(PlacesFailed) as raised:
        _take(tmp_path, [gone, good], site)
    assert raised.value.stored == [good.url]
    assert "the bucket tee-not-there does not exist" in raised.value.missed[gone.url]
    with pytest.raises(PlacesFailed) as raised:  # nowhere at all
        _take(tmp_path, [gone], site)
    assert raised.value.manifest is None and "stored nowhere" in str(raised.value)
