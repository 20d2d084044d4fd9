"""Restore anywhere: a second Docker engine (its own dockerd, data root and bridge) that
never saw the first one's state directory restores a volume from the store with nothing
but the spec, the credentials and the age identity, creating the missing volume from the
spec. The engine is started by the fixture and stopped after (bridge ``dsrbr20``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from backup_trees import describe, fill, volume_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import S3Server

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
BRIDGE = "dsrbr20"


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def _bridge_in_use() -> bool:
    """Whether a live dockerd (another test run's) was started on ``BRIDGE``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"dockerd") and BRIDGE.encode() in argv:
                    return True
    return False


@pytest.fixture(scope="module")
def second_engine() -> Iterator[str]:
    """``unix://...`` of a dockerd of this test's own, on its own bridge and data root."""
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("ip"):
        pytest.skip("a second dockerd needs root, dockerd and ip")
    if _bridge_in_use():
        pytest.skip(f"another run's dockerd uses the bridge {BRIDGE}")
    root = Path(tempfile.mkdtemp(prefix="dsr2e-", dir="/tmp"))  # short: a socket path
    _ip("link", "del", BRIDGE, check=False)  # what a killed run of this test left
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", "172.31.220.1/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    socket = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            "dockerd",
            "-b",
            BRIDGE,
            "--iptables=false",
            "--ip6tables=false",
            "--data-root",
            str(root / "root"),
            "--exec-root",
            str(root / "exec"),
            "-H",
            f"unix://{socket}",
            "--pidfile",
            str(root / "docker.pid"),
            "--containerd-namespace",
            "dsr2e",
            "--containerd-plugins-namespace",
            "dsr2e-plugins",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=url, timeout=5)
                client.ping()
                client.close()
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "the second dockerd did not start: "
                    + (root / "dockerd.log").read_text()[-2000:]
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _ip("link", "del", BRIDGE, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_fresh_host_restores_from_the_store(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    second_engine: str,
    prefix: str,
    s3: S3Server,
    bucket: str,
    age_key: tuple[Path, str],
    encrypted: bool,
) -> None:
    key, recipient = age_key
    volume = f"{prefix}-data"
    spec = tmp_spec(
        volume_spec(s3.endpoint, f"s3://{bucket}/far", volume, recipient if encrypted else None)
    )
    env: dict[str, str | None] = {**s3.env()}
    dsr("apply", spec, check=True)
    root = Path(docker_client.api.inspect_volume(volume)["Mountpoint"])
    fill(root)
    before = describe(root)
    dsr("backup", spec, env=env, check=True)

    # Elsewhere: another engine, an empty state directory, the key.
    there = {
        **env,
        "DSR_STATE_DIR": str(tmp_path / "elsewhere-state"),
        "DOCKER_HOST": second_engine,
        "DSR_AGE_IDENTITY": str(key) if encrypted else None,
    }
    out = dsr("backups", "list", spec, env=there, check=True).stdout
    assert volume in out
    dsr("backups", "verify", spec, env=there, check=True)
    # no backup-key here (a new host): its snapshots are trusted by choice
    dsr("restore", spec, volume, "--trust-unsigned", env=there, check=True)
    other = docker.DockerClient(base_url=second_engine)
    try:
        live = other.api.inspect_volume(volume)
        assert live["Labels"]["tier"] == "gold" and live["Labels"]["dsr.managed"] == "true"
        assert describe(Path(live["Mountpoint"])) == before
        other.api.remove_volume(volume)
    finally:
        other.close()
