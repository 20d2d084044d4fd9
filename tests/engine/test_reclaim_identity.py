"""A reclaim decision belongs to the one volume that left the spec: a volume of that name
brought back by ``dsr restore`` afterwards is another volume, and is kept."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import NotFound
from test_migrate import run_in_volume

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def test_a_restored_volume_is_not_reclaimed_again(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    volume, other = f"{prefix}-data", f"{prefix}-other"
    spec = tmp_spec(
        f"version: 1\nvolumes:\n  {volume}: {{reclaim: backup-then-delete}}\n  {other}: {{}}\n"
    )
    dsr("apply", spec.parent, check=0)
    run_in_volume(docker_client, busybox_image, volume, "echo first > /v/a", prefix)

    spec.write_text(f"version: 1\nvolumes:\n  {other}: {{}}\n")
    dsr("apply", spec.parent, check=0)  # backed up, then deleted, as its policy says
    try:
        docker_client.volumes.get(volume)
        raise AssertionError(f"{volume} was not reclaimed")
    except NotFound:
        pass

    dsr("restore", spec.parent, volume, check=0)  # brought back by its owner
    run_in_volume(docker_client, busybox_image, volume, "echo after > /v/b", prefix)
    for _ in range(2):
        planned = dsr("plan", spec.parent, check=0).stdout
        assert "will be deleted" not in planned, planned
        dsr("apply", spec.parent, check=0)
        listing = run_in_volume(docker_client, busybox_image, volume, "cat /v/a /v/b", prefix)
        assert listing == "first\nafter\n"
