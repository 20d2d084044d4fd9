"""Backed up, wiped, restored: the tree is the same, path by path, for a volume read and
written directly and through the Engine API, and for a host folder."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from backup_trees import describe, fill, wipe

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]


def mountpoint(client: docker.DockerClient, volume: str) -> Path:
    return Path(client.api.inspect_volume(volume)["Mountpoint"])


def backups(dsr: DsrRunner, spec: Path) -> list[dict[str, object]]:
    listed = json.loads(dsr("backups", "list", spec, "--format", "json", check=True).stdout)
    assert listed["format_version"] == 1
    return listed["backups"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("read", ["direct", "api"])
@pytest.mark.parametrize("write", ["direct", "api"])
def test_volume_round_trip(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
    read: str,
    write: str,
) -> None:
    volume = f"{prefix}-data"
    spec = tmp_spec(f"""
        version: 1
        volumes:
          {volume}: {{labels: {{tier: gold}}}}
        backups:
          nightly:
            volumes: [{volume}]
            keep: {{last: 3}}
        """)
    dsr("apply", spec, check=True)
    root = mountpoint(docker_client, volume)
    fill(root)
    before = describe(root)

    out = dsr("backup", spec, "--via", read, check=True).stdout
    assert f"volume:{volume}" in out and f"read {read}" in out
    [listed] = backups(dsr, spec)
    assert listed["source"] == f"volume:{volume}" and listed["status"] == "complete"
    assert listed["policy"] == "nightly" and listed["files"] >= 10

    wipe(root)
    assert describe(root) != before
    dsr("restore", spec, volume, "--via", write, check=True)
    after = describe(mountpoint(docker_client, volume))
    assert after == before
    assert docker_client.api.inspect_volume(volume)["Labels"]["tier"] == "gold"


def test_host_folder_round_trip_and_restore_into(
    dsr: DsrRunner, tmp_spec: Callable[..., Path], tmp_path: Path, prefix: str
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    fill(folder)
    spec = tmp_spec(f"""
        version: 1
        backups:
          files:
            paths: [{folder}]
            keep: {{daily: 7}}
        """)
    before = describe(folder)
    dsr("backup", spec, check=True)
    [listed] = backups(dsr, spec)
    assert listed["source"] == f"path:{folder}"
    wipe(folder)
    dsr("restore", spec, str(folder), check=True)
    assert describe(folder) == before
    elsewhere = tmp_path / "copy"
    dsr("restore", spec, str(folder), "--into", str(elsewhere), check=True)
    assert describe(elsewhere) == before


def test_restore_into_a_new_volume_takes_the_recorded_settings(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    prefix: str,
) -> None:
    volume, copy = f"{prefix}-data", f"{prefix}-copy"
    spec = tmp_spec(f"""
        version: 1
        volumes:
          {volume}: {{labels: {{team: a}}}}
        backups:
          b:
            volumes: [{volume}]
        """)
    dsr("apply", spec, check=True)
    (mountpoint(docker_client, volume) / "hello").write_text("hi")
    dsr("backup", spec, check=True)
    dsr("restore", spec, volume, "--into", copy, "--via", "api", check=True)
    labels = docker_client.api.inspect_volume(copy)["Labels"]
    assert labels["team"] == "a" and labels["dsr.managed"] == "true"
    assert labels["dsr.project"] == prefix
    assert (mountpoint(docker_client, copy) / "hello").read_text() == "hi"
    again = dsr("restore", spec, volume, "--into", copy)
    assert again.returncode == 1 and "exists already" in again.stderr
