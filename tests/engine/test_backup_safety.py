"""What must never happen to data: a damaged archive restored, a running database copied
mid-write without its consent, containers left stopped, a killed backup counted as good."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import zstandard
from backup_trees import describe

from reconciler.backup import store
from reconciler.backup.manifest import sign
from reconciler.statedir import StateDir

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]


def mountpoint(client: docker.DockerClient, volume: str) -> Path:
    return Path(client.api.inspect_volume(volume)["Mountpoint"])


def listed(dsr: DsrRunner, spec: Path) -> list[dict[str, object]]:
    return json.loads(dsr("backups", "list", spec, "--format", "json", check=True).stdout)[
        "backups"
    ]  # type: ignore[no-any-return]


def volume_spec(tmp_spec: Callable[..., Path], volume: str, extra: str = "") -> Path:
    return tmp_spec(f"""
        version: 1
        volumes:
          {volume}: {{}}
        backups:
          nightly:
            volumes: [{volume}]
            keep: {{last: 5}}
        {extra}
        """)


def backed_up(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    dsr_state_dir: Path,
    volume: str,
    size: int,
) -> tuple[Path, Path, Path]:
    """The volume applied, holding ``size`` random bytes, backed up once:
    (spec, its directory, the snapshot's archive)."""
    spec = volume_spec(tmp_spec, volume)
    dsr("apply", spec, check=True)
    root = mountpoint(docker_client, volume)
    (root / "data.bin").write_bytes(os.urandom(size))
    dsr("backup", spec, check=True)
    [archive] = (dsr_state_dir / "backups").rglob("archive.tar.zst")
    return spec, root, archive


def flip_a_byte(archive: Path) -> None:
    with open(archive, "r+b") as handle:
        handle.seek(archive.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def refused_into(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    spec: Path,
    volume: str,
    into: str,
    words: str,
) -> None:
    """``restore --into`` fails on both paths, saying ``words``, and leaves no volume."""
    for via in ("direct", "api"):
        restore = dsr("restore", spec, volume, "--into", into, "--via", via)
        assert restore.returncode == 1, restore.stdout + restore.stderr
        assert words in restore.stderr + restore.stdout
        assert not docker_client.volumes.list(filters={"name": f"^{into}$"})


def test_a_flipped_byte_fails_verify_and_restore_and_leaves_the_volume(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    dsr_state_dir: Path,
) -> None:
    volume = f"{prefix}-data"
    spec, root, archive = backed_up(dsr, tmp_spec, docker_client, dsr_state_dir, volume, 500_000)
    [snapshot] = listed(dsr, spec)
    flip_a_byte(archive)

    (root / "newer").write_text("written after the backup")
    before = describe(root)
    verify = dsr("backups", "verify", spec)
    assert verify.returncode == 1
    assert f"{snapshot['id']}" in verify.stderr and "checksum mismatch" in verify.stderr
    restore = dsr("restore", spec, volume, "--backup", str(snapshot["id"]))
    assert restore.returncode == 1 and "checksum mismatch" in restore.stderr + restore.stdout
    assert describe(root) == before
    [after] = listed(dsr, spec)
    assert after["status"] == "damaged"  # a failed verify never counts as a good backup


def test_a_restore_into_a_new_volume_that_fails_leaves_no_volume(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    dsr_state_dir: Path,
) -> None:
    """--into makes the volume; a restore refused after that (here: a flipped byte, seen
    before anything is written) removes it again, as if it had never run."""
    volume, into = f"{prefix}-data", f"{prefix}-into"
    spec, _, archive = backed_up(dsr, tmp_spec, docker_client, dsr_state_dir, volume, 300_000)
    flip_a_byte(archive)
    refused_into(dsr, docker_client, spec, volume, into, "checksum mismatch")


def test_a_crafted_archive_restored_into_a_new_volume_is_refused_and_leaves_no_volume(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    dsr_state_dir: Path,
) -> None:
    """The archive swapped for a crafted one and the manifest rewritten to match (as
    someone with write access to the backups could): its sha256 passes, so a new volume is
    not read whole first; the '..' entry is refused while writing, after a file was
    written, on either path, and the volume made for it is gone."""
    volume, into = f"{prefix}-data", f"{prefix}-into"
    spec, _, archive = backed_up(dsr, tmp_spec, docker_client, dsr_state_dir, volume, 1000)
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((".", None), ("first", b"x" * 70_000), ("../evil", b"evil")):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    compressed = zstandard.ZstdCompressor().compress(crafted.getvalue())
    archive.write_bytes(compressed)
    folder = str(archive.parent)
    # DEST/PROJECT/ID/archive.tar.zst
    manifest = store.load(folder, archive.parent.parent.name)
    assert manifest is not None
    edited = manifest.manifest.model_copy(
        update={
            "sha256": hashlib.sha256(compressed).hexdigest(),
            "archive_size": len(compressed),
            "size": 1 << 20,
            "files": 10,
        }
    )
    # signed again with the state directory's key (as only someone holding it could): the
    # checks after the keyed digest must refuse the archive on their own
    store.write_manifest(folder, sign(edited, StateDir(str(dsr_state_dir)).backup_key()))
    refused_into(dsr, docker_client, spec, volume, into, "'..' in its path")


def _container(
    client: docker.DockerClient,
    image: str,
    volume: str,
    name: str,
    labels: dict[str, str],
    *,
    running: bool,
) -> str:
    created = client.api.create_container(
        image,
        command=["sleep", "600"],
        name=name,
        labels=labels,
        host_config=client.api.create_host_config(binds=[f"{volume}:/data"]),
    )
    if running:
        client.api.start(created["Id"])
    return str(created["Id"])


def test_quiesce_restarts_exactly_the_running_users_when_the_backup_fails(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    labels: dict[str, str],
    busybox_image: str,
    tmp_path: Path,
) -> None:
    volume = f"{prefix}-data"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination folder should be: the injected failure")
    spec = tmp_spec(f"""
        version: 1
        volumes:
          {volume}: {{}}
        backups:
          nightly:
            volumes: [{volume}]
            quiesce: true
            destination: {blocker}
        """)
    dsr("apply", spec, check=True)
    running = _container(
        docker_client, busybox_image, volume, f"{prefix}-run", labels, running=True
    )
    idle = _container(docker_client, busybox_image, volume, f"{prefix}-idle", labels, running=False)
    started = docker_client.api.inspect_container(running)["State"]["StartedAt"]

    result = dsr("backup", spec)
    assert result.returncode == 1 and f"volume:{volume}" in result.stderr
    state = docker_client.api.inspect_container(running)["State"]
    assert state["Running"] and state["StartedAt"] != started  # stopped, then started again
    assert not docker_client.api.inspect_container(idle)["State"]["Running"]
    assert not docker_client.api.inspect_container(idle)["State"]["StartedAt"].startswith("20")


def test_restore_refuses_a_volume_in_use_unless_stop(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    labels: dict[str, str],
    busybox_image: str,
) -> None:
    volume = f"{prefix}-data"
    spec = volume_spec(tmp_spec, volume)
    dsr("apply", spec, check=True)
    (mountpoint(docker_client, volume) / "v").write_text("1")
    dsr("backup", spec, check=True)
    (mountpoint(docker_client, volume) / "v").write_text("2")
    user = _container(docker_client, busybox_image, volume, f"{prefix}-user", labels, running=True)
    refused = dsr("restore", spec, volume)
    assert (
        refused.returncode == 1
        and f"{prefix}-user" in refused.stderr
        and "--stop" in refused.stderr
    )
    assert (mountpoint(docker_client, volume) / "v").read_text() == "2"
    dsr("restore", spec, volume, "--stop", check=True)
    assert (mountpoint(docker_client, volume) / "v").read_text() == "1"
    assert docker_client.api.inspect_container(user)["State"]["Running"]


def test_hooks_run_around_the_backup_and_after_hooks_run_when_it_fails(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    labels: dict[str, str],
    busybox_image: str,
) -> None:
    volume = f"{prefix}-data"
    db = f"{prefix}-db"
    hooks = f"""
            hooks:
              before: [{{container: {db}, command: [sh, -c, "echo dump > /data/dump.sql"], timeout: 30s}}]
              after: [{{container: {db}, command: [touch, /data/after-ran]}}]
          failing:
            volumes: [{volume}]
            hooks:
              before: [{{container: {db}, command: ["false"]}}]
              after: [{{container: {db}, command: [touch, /data/after-failing]}}]
    """
    spec = volume_spec(tmp_spec, volume, hooks)
    dsr("apply", spec, check=True)
    _container(docker_client, busybox_image, volume, db, labels, running=True)
    dsr("backup", spec, "--policy", "nightly", check=True)
    root = mountpoint(docker_client, volume)
    assert (root / "after-ran").exists()
    [snapshot] = listed(dsr, spec)
    dsr("restore", spec, volume, "--stop", check=True)
    assert (root / "dump.sql").read_text() == "dump\n"  # the before hook's file was backed up
    failed = dsr("backup", spec, "--policy", "failing")
    assert failed.returncode == 1 and "false" in failed.stderr
    assert (root / "after-failing").exists()
    assert [b["id"] for b in listed(dsr, spec)] == [snapshot["id"]]


def test_a_backup_killed_midway_is_invisible_and_the_next_one_succeeds(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    dsr_state_dir: Path,
) -> None:
    volume = f"{prefix}-data"
    spec = volume_spec(tmp_spec, volume)
    dsr("apply", spec, check=True)
    root = mountpoint(docker_client, volume)
    for n in range(6):
        (root / f"big-{n}").write_bytes(os.urandom(64 << 20))
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "backup", str(spec), "--via", "api"],
        env={**os.environ, "DSR_STATE_DIR": str(dsr_state_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list((dsr_state_dir / "backups").rglob("archive.tar.zst")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert listed(dsr, spec) == []
    leftovers = [
        c
        for c in docker_client.api.containers(all=True, filters={"label": f"dsr.project={prefix}"})
    ]
    for c in leftovers:  # the killed run's helper: the next run must not depend on it
        assert c["Labels"]["dsr.kind"] == "helper"
    dsr("backup", spec, check=True)
    assert [b["status"] for b in listed(dsr, spec)] == ["complete"]
    pruned = json.loads(dsr("backups", "prune", spec, "--format", "json", check=True).stdout)
    assert len(pruned["keep"]) == 1 and not pruned["remove"]
    assert len(list((dsr_state_dir / "backups").rglob("archive.tar.zst"))) == 1
