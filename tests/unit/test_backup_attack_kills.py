"""``dsr backup`` into a folder and an S3 bucket at once (one archive, two places), SIGKILLed
at random moments, KILLS times (default 20, ``DSR_TEST_TEE_KILLS``), against a real
SeaweedFS: after each kill nothing half-written lists as a backup in either place; then the
next run succeeds, leaves no multipart upload open, and a prune clears what the killed
runs left in the folder. Two backups of the same rule started at once both end, each with
its own snapshot or the lock's clear error."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import S3Server

DSR = [sys.executable, "-m", "reconciler"]
KILLS = int(os.environ.get("DSR_TEST_TEE_KILLS", "20"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    started = S3Server.start(tmp_path_factory.mktemp("s3kills"))
    try:
        yield started
    finally:
        started.stop()


def _setup(tmp_path: Path, server: S3Server, bucket: str) -> tuple[Path, Path, dict[str, str]]:
    server.make_bucket(bucket)
    site = tmp_path / "site"
    site.mkdir()
    rng = random.Random(7)
    for n in range(6):  # random bytes: zstd keeps their size, the upload takes a while
        (site / f"f{n}").write_bytes(rng.randbytes(2 << 20))
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_text(
        "version: 1\nproject: kills\nbackups:\n  r:\n"
        f"    paths: [{site}]\n"
        f"    destination: [{tmp_path / 'dest'}, s3://{bucket}/p]\n"
        f"    endpoint: {server.endpoint}\n"
        "    keep: {last: 100}\n"
    )
    env = server.env(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    env["DSR_STATE_DIR"] = str(tmp_path / "state")
    return spec, site, env


def _dsr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _listed(env: dict[str, str], spec: Path) -> list[dict[str, Any]]:
    done = _dsr(env, "backups", "list", str(spec), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["backups"]
    return rows


def test_sigkill_of_a_backup_into_a_folder_and_a_bucket_lists_nothing_half_written(
    tmp_path: Path, server: S3Server
) -> None:
    spec, _, env = _setup(tmp_path, server, "kills-tee")
    rng = random.Random(20)
    for n in range(KILLS):
        when = f"2026-11-01T00:{n:02d}:00Z"
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "backup", str(spec), "--time", when],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 1.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for row in _listed(env, spec):  # what lists is whole, in each place
            assert row["status"] == "complete", row
    verified = _dsr(env, "backups", "verify", str(spec))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    done = _dsr(env, "backup", str(spec), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    [taken] = json.loads(done.stdout)["backups"]
    assert taken["missed"] == []
    places = {r["destination"] for r in _listed(env, spec) if r["id"] == taken["id"]}
    assert places == {str(tmp_path / "dest"), "s3://kills-tee/p"}
    uploads = server.client().list_multipart_uploads(Bucket="kills-tee")
    assert not uploads.get("Uploads"), uploads  # the killed runs' parts were aborted
    pruned = _dsr(env, "backups", "prune", str(spec))
    assert pruned.returncode == 0, pruned.stderr
    for folder in (tmp_path / "dest" / "kills").iterdir():  # no unfinished one stays
        assert (folder / "manifest.json").exists(), sorted(folder.iterdir())
    staging = tmp_path / "state" / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_two_backups_of_one_rule_at_once_both_end_clearly(tmp_path: Path, server: S3Server) -> None:
    spec, _, env = _setup(tmp_path, server, "kills-twice")
    started = [
        subprocess.Popen(
            [*DSR, "--lock-timeout", "120", "backup", str(spec), "--format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in started]
    ids = set()
    for process, (out, err) in zip(started, outs, strict=True):
        assert process.returncode == 0, out + err
        [taken] = json.loads(out)["backups"]
        assert taken["missed"] == []
        ids.add(taken["id"])
    assert len(ids) == 2  # two snapshots, neither overwrote the other
    rows = _listed(env, spec)
    assert sorted((r["id"], r["status"]) for r in rows) == sorted(
        (i, "complete") for i in ids for _ in range(2)
    )


def test_a_paused_store_beside_a_folder_fails_in_bounded_time_the_folder_completes(
    tmp_path: Path, server: S3Server
) -> None:
    """The store's process is stopped (SIGSTOP) while the archive goes up into it and into
    a folder: the folder still gets the snapshot, the store is missed with a clear error,
    and the run ends within its timeouts (1 try of 2 s here) instead of hanging."""
    spec, site, env = _setup(tmp_path, server, "kills-paused")
    rng = random.Random(3)
    for n in range(6, 20):  # 40 MB: the upload is under way for a while
        (site / f"f{n}").write_bytes(rng.randbytes(2 << 20))
    env.update(DSR_S3_TIMEOUT="2", DSR_S3_ATTEMPTS="1")
    client = server.client()
    process = subprocess.Popen(
        [*DSR, "backup", str(spec), "--format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    paused = False
    try:
        while process.poll() is None and not paused:
            if client.list_multipart_uploads(Bucket="kills-paused").get("Uploads"):
                server.pause()
                paused = True
            time.sleep(0.02)
        out, err = process.communicate(timeout=120)  # no hang: the timeouts end it
    finally:
        if paused:
            server.resume()
    assert paused, "the backup ended before the store could be paused"
    assert process.returncode == 1, out + err
    [taken] = json.loads(out)["backups"]
    assert [m["destination"] for m in taken["missed"]] == ["s3://kills-paused/p"]
    assert "cannot reach the store" in taken["missed"][0]["error"]
    [folder] = (tmp_path / "dest" / "kills").iterdir()
    assert folder.name == taken["id"] and (folder / "manifest.json").exists()
    assert not [r for r in _listed(env, spec) if r["destination"].startswith("s3://")]


def test_a_backup_leaves_another_hosts_live_upload_alone_and_aborts_its_own_dead_ones(
    tmp_path: Path, server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts (two state directories) back up one project into one bucket: the second's
    new backup aborted every open upload under the project, the first's live one too. Now
    it aborts only the uploads of its own runs that are gone (and any a day old)."""
    from reconciler.backup.s3store import S3

    for name, value in server.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    server.make_bucket("kills-hosts")

    def place(host: str) -> S3:
        staging = tmp_path / host / "staging"
        return S3("s3://kills-hosts/p", endpoint=server.endpoint, staging=str(staging))

    first, second = place("a"), place("b")
    live = first.stream("web", "data-20261101T000000Z")
    live.write(os.urandom(9 << 20))  # a part sent: its upload is open in the store
    dead = second.stream("web", "data-20261101T000001Z")
    dead.write(os.urandom(9 << 20))
    dead.upload.pool.shutdown(wait=True)  # sent; then "killed": nothing more of it runs
    # its record names a process that is gone (the killed run's pid, long reaped)
    [record] = (tmp_path / "b" / "staging" / "uploads").iterdir()
    record.rename(record.with_name("999999999-" + record.name.partition("-")[2]))

    third = place("b")
    third.stream("web", "data-20261101T000002Z")  # the next backup on host b
    client = server.client()
    open_keys = {u["Key"] for u in client.list_multipart_uploads(Bucket="kills-hosts")["Uploads"]}
    assert live.key in open_keys  # host a's backup goes on
    assert dead.key not in open_keys  # host b's killed run's parts are gone
    live.finish("", 0)
    live.commit(_manifest_of(live))
    assert [s.id for s in first.find("web").snapshots] == ["data-20261101T000000Z"]


def _manifest_of(streamed: Any) -> Any:
    from datetime import UTC, datetime

    from reconciler.backup.manifest import Manifest

    return Manifest(
        format_version=2,
        id="data-20261101T000000Z",
        policy="r",
        project="web",
        source="volume:data",
        time=datetime(2026, 11, 1, tzinfo=UTC),
        zone="UTC",
        dsr_version="0",
        spec_hash="",
        size=0,
        files=0,
        archive_size=streamed.upload.count,
        sha256="0" * 64,
        tree_digest="0" * 64,
        read_via="direct",
    )
