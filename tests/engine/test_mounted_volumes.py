"""Volumes whose storage Docker mounts on use (``local`` with ``type``/``o``/``device``):
backups, restores and migrations read and write what a container sees, never the empty
folder under Docker's data root that the mount hides."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]
FILES = 30
FILL = (
    f"for i in $(seq 1 {FILES}); do echo file $i > /v/f$i; done; mkdir -p /v/sub && "
    "head -c 200000 /dev/urandom > /v/sub/big.bin"
)
LISTING = 'cd /v && find . | sort | while read f; do if [ -f "$f" ]; then md5sum "$f"; else echo "$f"; fi; done'


def in_volume(
    client: docker.DockerClient, image: str, volume: str, script: str, prefix: str
) -> str:
    """What a container that mounts ``volume`` at /v sees (and does)."""
    out = client.containers.run(
        image,
        ["sh", "-c", script],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    return bytes(out).decode()


def bound_spec(prefix: str, busybox: str, device: Path, *, quiesce: bool = True) -> str:
    return f"""version: 1
volumes:
  {prefix}-data:
    driver_opts: {{type: none, o: bind, device: {device}}}
containers:
  {prefix}-app:
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    mounts: ["{prefix}-data:/data"]
backups:
  nightly:
    volumes: [{prefix}-data]
    quiesce: {str(quiesce).lower()}
    keep: {{last: 5}}
"""


def test_a_quiesced_backup_and_a_restore_of_a_bound_volume_see_what_a_container_sees(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    device = tmp_path / "store"
    device.mkdir()
    spec = tmp_spec(bound_spec(prefix, busybox_image, device))
    dsr("apply", spec.parent, check=0)
    volume = f"{prefix}-data"
    in_volume(docker_client, busybox_image, volume, FILL, prefix)
    before = in_volume(docker_client, busybox_image, volume, LISTING, prefix)

    # The app is stopped for the copy: the volume is mounted by nothing but dsr's helper.
    out = dsr("backup", spec.parent, check=0).stdout
    assert "read api" in out, out
    [listed] = json.loads(dsr("backups", "list", spec.parent, "--format", "json").stdout)["backups"]
    assert listed["files"] == FILES + 1 and listed["size"] >= 200_000, listed
    assert docker_client.containers.get(f"{prefix}-app").status == "running"
    direct = dsr("backup", spec.parent, "--via", "direct", check=1)
    refused = direct.stdout + direct.stderr
    assert "driver options" in refused and "--via api" in refused, refused

    # Emptied, then restored: a container sees every file again.
    in_volume(docker_client, busybox_image, volume, "rm -rf /v/* /v/.[!.]*; true", prefix)
    dsr("restore", spec.parent, volume, "--stop", check=0)
    assert in_volume(docker_client, busybox_image, volume, LISTING, prefix) == before
    assert docker_client.containers.get(f"{prefix}-app").status == "running"

    # A restore over files it cannot empty (the bound folder outlives the volume) is
    # refused and touches nothing, rather than mixing two trees.
    in_volume(docker_client, busybox_image, volume, "echo newer > /v/f1; echo x > /v/extra", prefix)
    changed = in_volume(docker_client, busybox_image, volume, LISTING, prefix)
    refused = dsr("restore", spec.parent, volume, "--stop", check=1)
    assert "outlives it" in refused.stdout + refused.stderr, refused.stderr
    assert in_volume(docker_client, busybox_image, volume, LISTING, prefix) == changed


def test_migrating_into_a_bound_volume_carries_every_byte_and_tmpfs_is_blocked(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    volume = f"{prefix}-data"
    plain = f"""version: 1
volumes:
  {volume}: {{on_change: migrate}}
containers:
  {prefix}-app:
    image: {busybox_image}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    mounts: ["{volume}:/data"]
"""
    spec = tmp_spec(plain)
    dsr("apply", spec.parent, check=0)
    in_volume(docker_client, busybox_image, volume, FILL, prefix)
    before = in_volume(docker_client, busybox_image, volume, LISTING, prefix)

    tmpfs = plain.replace(
        "{on_change: migrate}",
        "{on_change: migrate, driver_opts: {type: tmpfs, device: tmpfs, o: size=10m}}",
    )
    spec.write_text(tmpfs)
    applied = dsr("apply", spec.parent, check=False)  # 3 (blocked) per the contract
    assert applied.returncode in (1, 3), applied.stderr
    blocked = applied.stdout
    assert "the spec makes it a tmpfs" in blocked and "migration_restored" not in blocked, blocked
    assert in_volume(docker_client, busybox_image, volume, LISTING, prefix) == before

    device = tmp_path / "store"
    device.mkdir()
    bound = plain.replace(
        "{on_change: migrate}",
        f"{{on_change: migrate, driver_opts: {{type: none, o: bind, device: {device}}}}}",
    )
    spec.write_text(bound)
    dsr("apply", spec.parent, check=0)
    assert docker_client.api.inspect_volume(volume)["Options"]["device"] == str(device)
    assert in_volume(docker_client, busybox_image, volume, LISTING, prefix) == before
    assert docker_client.containers.get(f"{prefix}-app").status == "running"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)


def test_a_migration_that_would_drop_links_or_xattrs_stops_before_removing_anything(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    import os

    volume = f"{prefix}-data"
    plain = f"""version: 1
volumes:
  {volume}: {{on_change: migrate, labels: {{tier: a}}}}
containers:
  {prefix}-app:
    image: {busybox_image}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    mounts: ["{volume}:/data"]
"""
    spec = tmp_spec(plain)
    dsr("apply", spec.parent, check=0)
    in_volume(
        docker_client, busybox_image, volume, "echo x > /v/f && ln -s ../../out /v/up", prefix
    )
    # The volume's own folder and what it holds; not "..", the helper container's root,
    # whose time is the minute each helper was made.
    listing = "ls -ld /v && ls -lA /v"
    before = in_volume(docker_client, busybox_image, volume, listing, prefix)
    spec.write_text(plain.replace("tier: a", "tier: b"))
    planned = dsr("plan", spec.parent, check=0).stdout
    assert "Not carried: extended attributes" in planned and "links leading outside" in planned
    failed = dsr("apply", spec.parent, check=1)
    assert "would lose 1 entries no restore writes (up)" in failed.stdout + failed.stderr
    assert docker_client.api.inspect_volume(volume)["Labels"]["tier"] == "a"
    assert in_volume(docker_client, busybox_image, volume, listing, prefix) == before
    assert docker_client.containers.get(f"{prefix}-app").status == "running"

    # Without the link, an xattr (seen in the volume's folder) stops it the same way.
    in_volume(docker_client, busybox_image, volume, "rm /v/up", prefix)
    root = docker_client.api.inspect_volume(volume)["Mountpoint"]
    try:
        os.setxattr(os.path.join(root, "f"), "user.dsr-test", b"kept")
    except OSError as err:
        import pytest

        pytest.skip(f"this filesystem takes no user xattrs: {err}")
    failed = dsr("apply", spec.parent, check=1)
    assert "the extended attributes of f" in failed.stdout + failed.stderr
    os.removexattr(os.path.join(root, "f"), "user.dsr-test")
    dsr("apply", spec.parent, check=0)
    assert docker_client.api.inspect_volume(volume)["Labels"]["tier"] == "b"
