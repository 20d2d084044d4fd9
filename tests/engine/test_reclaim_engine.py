"""Reclaim against the engine: what leaves the spec is kept, deleted, or backed up, verified
and deleted, as its policy said when it was last applied; nobody else's volume is touched."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import NotFound

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def fill(client: docker.DockerClient, image: str, volume: str, text: str, prefix: str) -> None:
    client.containers.run(
        image,
        ["sh", "-c", f"echo '{text}' > /v/marker && mkdir -p /v/sub && echo deep > /v/sub/f"],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )


def read(client: docker.DockerClient, image: str, volume: str, prefix: str) -> str:
    out = client.containers.run(
        image,
        ["cat", "/v/marker", "/v/sub/f"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    return bytes(out).decode()


def exists(client: docker.DockerClient, volume: str) -> bool:
    try:
        client.volumes.get(volume)
    except NotFound:
        return False
    return True


def test_each_reclaim_policy_against_the_engine(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    backups = tmp_path / "backups"
    keep, drop, save = f"{prefix}-keep", f"{prefix}-drop", f"{prefix}-save"
    hand = docker_client.volumes.create(f"{prefix}-hand", labels=labels)  # not dsr's
    spec = tmp_spec(
        f"""
        version: 1
        volumes:
          {keep}: {{}}
          {drop}: {{reclaim: delete}}
          {save}: {{reclaim: backup-then-delete}}
        containers:
          {prefix}-app:
            image: {busybox_image}
            command: [sh, -c, "exec sleep 3600"]
            init: true
            mounts: ["{drop}:/drop"]
        backups:
          nightly:
            volumes: [{save}, {keep}]
            destination: {backups}
        """
    )
    dsr("apply", spec.parent, check=0)
    for volume in (keep, drop, save):
        fill(docker_client, busybox_image, volume, f"data of {volume}", prefix)

    site = tmp_path / "site"  # not tmp_path itself: it holds dsr's state directory
    site.mkdir()
    spec.write_text(
        f"""version: 1
backups:
  nightly:
    paths: [{site}]
    destination: {backups}
"""
    )
    planned = dsr("plan", spec.parent, "--format", "json", check=0).stdout
    assert '"volume:' + drop + '"' in planned and '"data-loss"' in planned
    applied = dsr("apply", "--allow-empty", spec.parent, check=0)  # no resource left
    assert "Applied" in applied.stdout

    assert exists(docker_client, keep) and read(docker_client, busybox_image, keep, prefix)
    assert not exists(docker_client, drop)
    assert not exists(docker_client, save)
    assert exists(docker_client, hand.name)
    manifests = list(backups.glob(f"*/{save}-*/manifest.json"))  # DEST/PROJECT/ID/
    assert manifests, sorted(str(p) for p in backups.rglob("*"))

    # The reclaimed data comes back from its verified backup.
    dsr("restore", spec.parent, save, "--into", f"{prefix}-restored", check=0)
    restored = read(docker_client, busybox_image, f"{prefix}-restored", prefix)
    assert restored == f"data of {save}\ndeep\n"

    # Retained: an orphan in every plan, never deleted.
    again = dsr("plan", spec.parent, "--format", "json", check=0).stdout
    assert f'"volume:{keep}"' in again
    dsr("apply", spec.parent, check=0)
    assert exists(docker_client, keep)


def test_a_volume_still_used_by_someone_else_is_not_reclaimed(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    drop = f"{prefix}-drop"
    spec = tmp_spec(f"version: 1\nvolumes:\n  {drop}: {{reclaim: delete}}\n")
    dsr("apply", spec.parent, check=0)
    other = docker_client.containers.create(
        busybox_image, ["true"], name=f"{prefix}-other", labels=labels,
        volumes={drop: {"bind": "/d", "mode": "rw"}},
    )  # fmt: skip
    spec.write_text("version: 1\nvolumes: {}\n")
    blocked = dsr("apply", spec.parent, check=3)  # 3: finished, with blocked changes
    assert f"{prefix}-other still uses it" in blocked.stdout
    assert exists(docker_client, drop)
    other.remove()
    dsr("apply", spec.parent, check=1)  # an empty spec that would delete: refused
    dsr("apply", "--allow-empty", spec.parent, check=0)
    assert not exists(docker_client, drop)
