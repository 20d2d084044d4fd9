"""Backups in a real S3 server (SeaweedFS on 127.0.0.1), plain and encrypted with age:
round trips of a volume holding everything a volume can hold, the format read without
dsr, retention per place, and the faults a store brings (credentials, buckets, a store
that dies mid-upload)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
from backup_trees import describe, fill, volume_spec, wipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import S3Server  # the servers: conftest's s3, bucket and own_s3 fixtures

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]


def env_of(s3: S3Server, **extra: str) -> dict[str, str | None]:
    return {**s3.env(), **extra}


def objects(s3: S3Server, bucket: str) -> dict[str, int]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return {str(o["Key"]): int(o["Size"]) for o in listed}


def open_uploads(s3: S3Server, bucket: str) -> list[Any]:
    return list(s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def listed(dsr: DsrRunner, spec: Path, env: dict[str, str | None], *args: str) -> list[Any]:
    out = dsr("backups", "list", spec, "--format", "json", *args, env=env, check=True).stdout
    return json.loads(out)["backups"]  # type: ignore[no-any-return]


def mountpoint(client: docker.DockerClient, volume: str) -> Path:
    return Path(client.api.inspect_volume(volume)["Mountpoint"])


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_volume_round_trip_through_s3(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    s3: S3Server,
    bucket: str,
    prefix: str,
    age_key: tuple[Path, str],
    encrypted: bool,
) -> None:
    """Plain: to the store alone. Encrypted: to a folder and the store (3-2-1), both sealed."""
    key, recipient = age_key
    volume = f"{prefix}-data"
    local = tmp_path / "local"
    where = f"[{local}, s3://{bucket}/dsr]" if encrypted else f"s3://{bucket}/dsr"
    spec = tmp_spec(volume_spec(s3.endpoint, where, volume, recipient if encrypted else None))
    env = env_of(s3)
    dsr("apply", spec, check=True)
    root = mountpoint(docker_client, volume)
    fill(root)
    before = describe(root)
    dsr("backup", spec, env=env, check=True)

    stored = objects(s3, bucket)
    [snapshot_id] = {k.split("/")[2] for k in stored}
    suffix = ".age" if encrypted else ""
    assert set(stored) == {
        f"dsr/{prefix}/{snapshot_id}/archive.tar.zst{suffix}",
        f"dsr/{prefix}/{snapshot_id}/manifest.json{suffix}",
    }
    assert not open_uploads(s3, bucket)
    if encrypted:  # nothing but sizes and times: no file name, no volume option
        bodies = [s3.client().get_object(Bucket=bucket, Key=n)["Body"].read() for n in stored]
        bodies += [p.read_bytes() for p in local.rglob("*") if p.is_file()]
        assert {p.name for p in local.rglob("*") if p.is_file()} == {
            "archive.tar.zst.age",
            "manifest.json.age",
        }
        for body in bodies:
            assert body.startswith(b"age-encryption.org/v1\n")
            for secret in (b"with space", b"hardlink", b"gold", b"tier"):
                assert secret not in body
        # The host that wrote them lists them without the key; a fresh host needs it.
        assert len(listed(dsr, spec, env)) == 2
        fresh = {**env, "DSR_STATE_DIR": str(tmp_path / "fresh-state")}
        failed = dsr("backups", "list", spec, env=fresh, check=1)
        assert "--identity" in failed.stderr and "DSR_AGE_IDENTITY" in failed.stderr
        env["DSR_AGE_IDENTITY"] = str(key)
        assert len(listed(dsr, spec, {**fresh, "DSR_AGE_IDENTITY": str(key)})) == 2
    entries = listed(dsr, spec, env)
    assert all(e["status"] == "complete" for e in entries)
    assert entries[-1]["destination"] == f"s3://{bucket}/dsr"
    dsr("backups", "verify", spec, env=env, check=True)

    wipe(root)
    dsr("restore", spec, volume, env=env, check=True)
    assert describe(mountpoint(docker_client, volume)) == before
    assert docker_client.api.inspect_volume(volume)["Labels"]["tier"] == "gold"
    if encrypted:  # the wrong identity reads nothing, and says so
        other = key.parent / "other.txt"
        subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
        wrong = dsr("restore", spec, volume, "--identity", str(other), env=env, check=1)
        assert "identity" in wrong.stderr, wrong.stderr


def test_the_format_is_open_age_zstd_tar(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
    age_key: tuple[Path, str],
) -> None:
    """The README's restore without dsr: download, ``age -d``, ``zstd -d``, ``tar -x``."""
    key, recipient = age_key
    folder = tmp_path / "site"
    folder.mkdir()
    fill(folder)
    (folder / "fifo").unlink()  # no archive restores a FIFO's kind with tar -x defaults
    spec = tmp_spec(files_spec(folder, f"s3://{bucket}", s3.endpoint, f"encrypt_to: [{recipient}]"))
    dsr("backup", spec, env=env_of(s3), check=True)
    [name] = [k for k in objects(s3, bucket) if k.endswith("archive.tar.zst.age")]
    download = tmp_path / "archive.tar.zst.age"
    s3.client().download_file(bucket, name, str(download))
    out = tmp_path / "out"
    out.mkdir()
    pipeline = f"age -d -i {key} {download} | zstd -d | tar -x --numeric-owner -C {out}"
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)
    assert describe(out) == describe(folder)


def test_retention_keeps_the_same_sets_in_a_folder_and_in_the_store(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "f").write_text("x")
    local = tmp_path / "local-backups"
    spec = tmp_spec(
        files_spec(
            folder,
            f"[{local}, s3://{bucket}/p]",
            s3.endpoint,
            "keep: {last: 2, daily: 3, weekly: 2}",
        )
    )
    env = env_of(s3)
    times = [f"2026-11-{day:02d}T{hour:02d}:00:00Z" for day in (1, 2, 3, 9, 10) for hour in (3, 9)]
    for when in times:
        dsr("backup", spec, "--time", when, env=env, check=True)
    assert len(listed(dsr, spec, env)) == 2 * len(times)
    out = dsr("backups", "prune", spec, "--format", "json", env=env, check=True).stdout
    pruned = json.loads(out)
    kept: dict[str, set[str]] = {}
    for item in pruned["keep"]:
        kept.setdefault(item["destination"], set()).add(item["id"])
    assert kept[str(local)] == kept[f"s3://{bucket}/p"]
    assert 3 <= len(kept[str(local)]) < len(times)
    after = listed(dsr, spec, env)
    assert {e["id"] for e in after if e["destination"] == str(local)} == kept[str(local)]
    assert {e["id"] for e in after if e["destination"].startswith("s3:")} == kept[str(local)]
    ids = {k.split("/")[2] for k in objects(s3, bucket)}
    assert ids == kept[str(local)]  # whole snapshots went, nothing half


def test_store_faults_give_clear_errors_and_list_nothing(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "f").write_text("x")
    spec = tmp_spec(f"""
        version: 1
        backups:
          files:
            paths: [{folder}]
            destination: s3://{bucket}/p
            endpoint: {s3.endpoint}
          gone:
            paths: [{folder}]
            destination: s3://{bucket}-missing/p
            endpoint: {s3.endpoint}
        """)
    wrong = env_of(s3, AWS_SECRET_ACCESS_KEY="not-the-secret")
    failed = dsr("backup", spec, "--policy", "files", env=wrong, check=1)
    assert "refused the credentials" in failed.stderr
    none = env_of(s3, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    failed = dsr("backup", spec, "--policy", "files", env=none, check=1)
    assert "credentials" in failed.stderr
    failed = dsr("backup", spec, "--policy", "gone", env=env_of(s3), check=1)
    assert f"the bucket {bucket}-missing does not exist" in failed.stderr
    assert objects(s3, bucket) == {}
    dsr("backup", spec, "--policy", "files", env=env_of(s3), check=True)
    # A place that cannot be read does not hide the others; it is named, and the exit is 1.
    out = dsr("backups", "list", spec, "--format", "json", env=env_of(s3), check=1)
    assert len(json.loads(out.stdout)["backups"]) == 1
    assert f"the bucket {bucket}-missing does not exist" in out.stderr


def _random_tree(root: Path, mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(mib // 4):
        (root / f"blob-{n}").write_bytes(random.randbytes(4 << 20))
    (root / "small").write_text("small\n")


def files_spec(folder: Path, destination: str, endpoint: str, *more: str) -> str:
    """A spec whose rule ``files`` backs up the host folder ``folder``; ``more``: lines
    of the rule's own (``encrypt_to: [...]``)."""
    rule = "".join(f"            {line}\n" for line in more)
    return f"""
        version: 1
        backups:
          files:
            paths: [{folder}]
            destination: {destination}
            endpoint: {endpoint}
{rule}        """


def backup_uploading(
    spec: Path, server: S3Server, bucket: str, env: Mapping[str, str], *args: str
) -> subprocess.Popen[str]:
    """``dsr backup spec args`` started with ``env`` (on top of the server's credentials),
    once its archive is going up into ``bucket`` (a multipart upload is open there)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "backup", str(spec), *args],
        env={**os.environ, **server.env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not open_uploads(server, bucket) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def _settled(dsr: DsrRunner, spec: Path, env: dict[str, str | None]) -> None:
    """Whatever was killed: every snapshot listed is complete (verified once at the end)."""
    for entry in listed(dsr, spec, env):
        assert entry["status"] == "complete", entry


def test_sigkill_during_upload_and_restore_loses_nothing(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    dsr_state_dir: Path,
    dsr_command: list[str],
    s3: S3Server,
    bucket: str,
    age_key: tuple[Path, str],
) -> None:
    """KILLS (default 10, DSR_TEST_S3_KILLS) SIGKILLs of `dsr backup` at random moments of
    its upload, then as many of `dsr restore`: nothing half-listed, nothing lost, no part
    left open once the next run went through, and the next run succeeds."""
    kills = int(os.environ.get("DSR_TEST_S3_KILLS", "10"))
    key, recipient = age_key
    folder = tmp_path / "site"
    _random_tree(folder, 48)
    spec = tmp_spec(
        files_spec(folder, f"s3://{bucket}/k", s3.endpoint, f"encrypt_to: [{recipient}]")
    )
    env = env_of(s3, DSR_AGE_IDENTITY=str(key))
    environment = {**os.environ, **s3.env(), "DSR_STATE_DIR": str(dsr_state_dir)}
    environment["DSR_AGE_IDENTITY"] = str(key)
    rng = random.Random(20)

    def killed(*args: str) -> None:
        process = subprocess.Popen(
            [*dsr_command, *args],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()

    for n in range(kills):
        killed("backup", str(spec), "--time", f"2026-11-01T00:{n:02d}:00Z")
        _settled(dsr, spec, env)
    dsr("backups", "verify", spec, env=env, check=True)  # every listed one reads back whole
    dsr("backup", spec, env=env, check=True)
    assert not open_uploads(s3, bucket)  # the killed runs' parts were aborted
    dsr("backups", "prune", spec, env=env, check=True)
    groups: dict[str, set[str]] = {}
    for name in objects(s3, bucket):
        groups.setdefault(name.split("/")[2], set()).add(name.rsplit("/", 1)[1])
    assert groups and all("manifest.json.age" in files for files in groups.values())
    before = describe(folder)

    target = tmp_path / "restored"
    for _ in range(kills):
        killed("restore", str(spec), str(folder), "--into", str(target))
    dsr("restore", spec, str(folder), "--into", str(target), env=env, check=True)
    assert describe(target) == before
    staging = dsr_state_dir / "staging"
    assert not staging.exists() or not any(staging.iterdir())  # no copy left behind


def test_a_store_that_dies_mid_upload(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    prefix: str,
    own_s3: S3Server,
) -> None:
    """The store is killed while an archive goes up: the backup fails saying so, nothing
    lists; once the store is back the next backup works and the dead upload is aborted."""
    folder = tmp_path / "site"
    _random_tree(folder, 64)
    spec = tmp_spec(files_spec(folder, f"s3://{prefix}/d", own_s3.endpoint))
    state = {"DSR_STATE_DIR": str(tmp_path / "state")}
    process = backup_uploading(spec, own_s3, prefix, state)
    own_s3.kill()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "cannot reach the store" in err or "Connection" in err, err
    own_s3.restart()
    env = env_of(own_s3, **state)
    assert listed(dsr, spec, env) == []
    dsr("backup", spec, env=env, check=True)
    assert not open_uploads(own_s3, prefix)
    [entry] = listed(dsr, spec, env)
    assert entry["status"] == "complete"


def test_a_changed_archive_in_the_store_is_refused_before_a_target_is_touched(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
) -> None:
    """The restore reads the store's archive as it comes, without a local copy: a byte
    changed near its end (same size, so it lists as complete) is still refused. A target
    holding data is left as it was (the archive is read whole before it is emptied); a
    new one is removed again; verify reports it."""
    folder = tmp_path / "site"
    _random_tree(folder, 12)
    spec = tmp_spec(files_spec(folder, f"s3://{bucket}/x", s3.endpoint))
    env = env_of(s3)
    dsr("backup", spec, env=env, check=True)
    target = tmp_path / "kept"
    dsr("restore", spec, str(folder), "--into", str(target), env=env, check=True)
    (target / "mine").write_text("written after the restore\n")
    before = describe(target)
    [key] = [k for k in objects(s3, bucket) if k.endswith("/archive.tar.zst")]
    client = s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[-200] ^= 0x55
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    [entry] = listed(dsr, spec, env)
    assert entry["status"] == "complete"  # the size is right: only reading tells

    failed = dsr("restore", spec, str(folder), "--into", str(target), env=env, check=1)
    assert "damaged" in failed.stderr or "checksum" in failed.stderr, failed.stderr
    assert describe(target) == before
    fresh = tmp_path / "fresh"
    failed = dsr("restore", spec, str(folder), "--into", str(fresh), env=env, check=1)
    assert "damaged" in failed.stderr or "checksum" in failed.stderr, failed.stderr
    assert not fresh.exists()
    verified = dsr("backups", "verify", spec, env=env)
    assert verified.returncode != 0


def test_a_paused_store_fails_within_the_timeouts(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    prefix: str,
    own_s3: S3Server,
) -> None:
    """The store's process is paused (SIGSTOP) while an archive goes up: the backup fails
    saying so within attempts x timeout (+ backoff), nothing lists; a restore while it is
    paused fails the same way; once it runs again (SIGCONT) the next backup works, the
    dead upload is aborted, and the restore gives the tree back."""
    folder = tmp_path / "site"
    _random_tree(folder, 32)
    spec = tmp_spec(files_spec(folder, f"s3://{prefix}/p", own_s3.endpoint))
    state = {"DSR_STATE_DIR": str(tmp_path / "state")}
    env = env_of(own_s3, **state)
    dsr("backup", spec, "--time", "2026-11-01T00:00:00Z", env=env, check=True)
    quick = {"DSR_S3_TIMEOUT": "3", "DSR_S3_ATTEMPTS": "2"}
    process = backup_uploading(spec, own_s3, prefix, {**state, **quick})
    own_s3.pause()
    paused = time.monotonic()
    try:
        _, err = process.communicate(timeout=120)
        took = time.monotonic() - paused
        assert process.returncode == 1
        assert "cannot reach the store" in err, err
        # 2 tries of 3 s (+ up to 1 s of backoff), the abort's one try of 3 s: well
        # under this bound, which only catches a run that waits for the store.
        assert took < 60, took
        started = time.monotonic()
        failed = dsr(
            "restore",
            spec,
            str(folder),
            "--into",
            str(tmp_path / "back"),
            env={**env, **quick},
            check=1,
        )
        assert "cannot reach the store" in failed.stderr
        assert time.monotonic() - started < 60
    finally:
        own_s3.resume()
    [entry] = listed(dsr, spec, env)  # only the first, complete snapshot
    assert entry["status"] == "complete"
    dsr("backup", spec, env=env, check=True)
    assert not open_uploads(own_s3, prefix)
    assert [e["status"] for e in listed(dsr, spec, env)] == ["complete", "complete"]
    dsr("restore", spec, str(folder), "--into", str(tmp_path / "back"), env=env, check=True)
    assert describe(tmp_path / "back") == describe(folder)


def test_the_daemons_scheduled_backup_reports_a_store_failure(
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    dsr_state_dir: Path,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The daemon's runner (the same subprocesses `dsr run` starts) against a store that
    does not answer: the failure is counted in the metrics and logged with the store's
    error."""
    from reconciler.daemon.metrics import Metrics
    from reconciler.daemon.schedule import CommandRunner

    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "f").write_text("x")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    spec = tmp_spec(f"""
        version: 1
        backups:
          off:
            paths: [{folder}]
            destination: s3://nowhere-bucket/p
            endpoint: http://127.0.0.1:{dead}
        """)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DSR_STATE_DIR", str(dsr_state_dir))
    metrics = Metrics()
    failed: list[tuple[str, str]] = []

    def on_failure(rule: str, step: str) -> None:
        failed.append((rule, step))
        metrics.backup_failures.labels(rule, step).inc()

    runner = CommandRunner(str(spec), (), metrics.set_backups, on_failure)
    assert runner("off") is False
    assert failed[0] == ("off", "backup")  # (the prune after it fails on the store too)
    scraped = metrics.text().decode()
    assert re.search(r'dsr_backup_failures\w*\{[^}]*rule="off",step="backup"\} 1\.0', scraped), (
        scraped
    )
    logged = capfd.readouterr()
    assert "cannot reach the store" in logged.out + logged.err


def test_a_full_local_disk_fails_clearly_and_leaves_nothing(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
) -> None:
    """The state directory on a 4 MiB disk: a 16 MiB archive still goes up and comes back
    (streamed, never staged), to one store or two at once. A restore into a full disk
    fails naming ENOSPC and leaves nothing; with room it works. A folder destination on a
    full disk misses the snapshot (nothing left there) while the store next to it gets it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small, disk = tmp_path / "small-state", tmp_path / "small-disk"
    for mount in (small, disk):
        mount.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        folder = tmp_path / "site"
        _random_tree(folder, 16)
        spec = tmp_spec(files_spec(folder, f"s3://{bucket}/full", s3.endpoint))
        full = env_of(s3, DSR_STATE_DIR=str(small))
        dsr("backup", spec, env=full, check=True)  # no local copy: the disk's size is moot
        [entry] = listed(dsr, spec, full)
        assert entry["status"] == "complete"
        assert not any((small / "staging").iterdir())
        target = disk / "restored"
        failed = dsr("restore", spec, str(folder), "--into", str(target), env=full, check=1)
        assert "No space left on device" in failed.stderr
        assert not target.exists()  # the folder it made is gone again
        roomy = tmp_path / "o"
        dsr("restore", spec, str(folder), "--into", str(roomy), env=full, check=True)
        assert describe(roomy) == describe(folder)
        assert not any((small / "staging").iterdir())

        two = tmp_spec(files_spec(folder, f"[s3://{bucket}/a, s3://{bucket}/b]", s3.endpoint))
        dsr("backup", two, env=full, check=True)  # into both at once: nothing staged either
        assert len(listed(dsr, two, full)) == 2
        assert not any((small / "staging").iterdir())

        mixed = tmp_spec(files_spec(folder, f"[{disk / 'dest'}, s3://{bucket}/c]", s3.endpoint))
        failed = dsr("backup", mixed, env=full, check=1)  # the folder fills up, not the store
        assert "No space left on device" in failed.stderr and str(disk / "dest") in failed.stderr
        assert not [p for p in (disk / "dest").rglob("*") if p.is_file()]
        [entry] = listed(dsr, mixed, full)
        assert entry["destination"] == f"s3://{bucket}/c" and entry["status"] == "complete"
        assert not any((small / "staging").iterdir())
    finally:
        for mount in (small, disk):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_folder_and_a_store_that_dies_mid_way_the_folder_keeps_the_snapshot(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    prefix: str,
    own_s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``destination: [FOLDER, s3://...]``: the one archive goes into both at once; the
    store is killed mid-way: the folder's snapshot completes and restores, the store lists
    nothing, the backup exits 1 naming the store, and its JSON result and the daemon's
    metrics say which place missed it. Once the store is back, both get the next one."""
    from reconciler.daemon.metrics import Metrics
    from reconciler.daemon.schedule import CommandRunner

    folder, dest = tmp_path / "site", tmp_path / "dest"
    _random_tree(folder, 64)
    url = f"s3://{prefix}/d"
    spec = tmp_spec(files_spec(folder, f"[{dest}, {url}]", own_s3.endpoint))
    state = {"DSR_STATE_DIR": str(tmp_path / "state")}
    env = {**env_of(own_s3), **state}
    process = backup_uploading(spec, own_s3, prefix, state, "--format", "json")
    own_s3.kill()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    [taken] = json.loads(out)["backups"]
    assert taken["id"] and [m["destination"] for m in taken["missed"]] == [url]
    assert "cannot reach the store" in taken["missed"][0]["error"]
    assert f"is stored in {dest}; not in {url}" in err
    [kept] = [p for p in (dest / prefix).iterdir()]
    assert kept.name == taken["id"] and (kept / "manifest.json").exists()
    dsr("restore", spec, str(folder), "--into", tmp_path / "back", env=env, check=True)
    assert describe(tmp_path / "back") == describe(folder)

    own_s3.restart()
    [entry] = listed(dsr, spec, env)  # the store holds nothing that lists
    assert entry["id"] == taken["id"] and entry["status"] == "complete"
    assert not [k for k in objects(own_s3, prefix) if k.endswith("manifest.json")]
    dsr("backup", spec, env=env, check=True)
    assert not open_uploads(own_s3, prefix)
    assert len(listed(dsr, spec, env)) == 3  # the new one in both places

    # The daemon's scheduled run (the subprocesses `dsr run` starts): the store stopped.
    own_s3.kill()
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    metrics = Metrics()
    runner = CommandRunner(
        str(spec),
        (),
        metrics.set_backups,
        lambda rule, step: metrics.backup_failures.labels(rule, step).inc(),
        on_missed=lambda rule, where: metrics.backup_missed.labels(rule, where).inc(),
    )
    assert runner("files") is False
    scraped = metrics.text().decode()
    wanted = rf'dsr_backup_destination_failures_total\{{[^}}]*destination="{url}"'
    assert re.search(wanted + r'[^}]*rule="files"\} 1\.0', scraped), scraped
    assert len([p for p in (dest / prefix).iterdir()]) == 3  # the folder got it


def test_two_buckets_one_deleted_mid_way_the_other_keeps_the_encrypted_snapshot(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    s3: S3Server,
    bucket: str,
    age_key: tuple[Path, str],
    dsr_state_dir: Path,
) -> None:
    """``destination: [s3://A/p, s3://B/p]`` with ``encrypt_to``: the bucket B is deleted
    while the archive goes up: A holds the snapshot (the same encrypted bytes that B was
    being sent), B holds nothing that lists; exit 1 naming B."""
    key, recipient = age_key
    other = f"{bucket}-b"
    s3.make_bucket(other)
    folder = tmp_path / "site"
    _random_tree(folder, 64)
    spec = tmp_spec(
        files_spec(
            folder,
            f"[s3://{bucket}/p, s3://{other}/p]",
            s3.endpoint,
            f"encrypt_to: [{recipient}]",
        )
    )
    env = env_of(s3, DSR_AGE_IDENTITY=str(key))
    state = {"DSR_STATE_DIR": str(dsr_state_dir)}
    process = backup_uploading(spec, s3, other, state, "--format", "json")
    for item in objects(s3, other):  # what a bucket holds (nothing yet: it is mid-way)
        s3.client().delete_object(Bucket=other, Key=item)
    s3.client().delete_bucket(Bucket=other)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    [taken] = json.loads(out)["backups"]
    assert [m["destination"] for m in taken["missed"]] == [f"s3://{other}/p"]
    assert "does not exist" in taken["missed"][0]["error"]  # the bucket, or its upload
    names = objects(s3, bucket)
    assert sorted(n.rsplit("/", 1)[1] for n in names) == [
        "archive.tar.zst.age",
        "manifest.json.age",
    ]
    s3.make_bucket(other)  # (a part that was on its way may have made it again already)
    assert not [k for k in objects(s3, other) if "manifest" in k]  # nothing lists in B
    dsr("backups", "verify", spec, env=env, check=True)
    [entry] = listed(dsr, spec, env)
    assert entry["id"] == taken["id"] and entry["status"] == "complete"
    back = tmp_path / "back"
    dsr("restore", spec, str(folder), "--into", back, env=env, check=True)
    assert describe(back) == describe(folder)
