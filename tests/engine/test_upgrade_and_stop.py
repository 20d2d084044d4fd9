"""Upgrades restart nothing; replaces and deletes stop containers as they were made to stop.

The upgrade test runs dsr 0.1.0 itself, taken from this repository's history (its last
commit, before the config hash was versioned), to create the objects; this version must
find nothing to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
V0_1_0 = "062548a"  # the last commit of dsr 0.1.0


def old_dsr(tmp_path: Path) -> Path:
    """dsr 0.1.0's package, unpacked from git; skips when the history is not there."""
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{V0_1_0}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"commit {V0_1_0} (dsr 0.1.0) is not in this clone's history (shallow?)")
    target = tmp_path / "dsr-0.1.0"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", V0_1_0, "reconciler"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def test_objects_made_by_dsr_0_1_0_are_not_replaced_by_the_upgrade(
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    tmp_spec: Callable[..., Path],
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello\n")
    spec = tmp_spec(
        f"""
        version: 1
        volumes:
          {prefix}-data:
            labels: {{tier: gold}}
          {prefix}-opts:
            driver_opts: {{type: tmpfs, device: tmpfs, o: size=1m}}
        volume_containers:
          {prefix}-vc:
            mounts: ["{site}:/srv/site:ro", /scratch]
        containers:
          {prefix}-web:
            image: {busybox_image}
            command: [sleep, "3600"]
            env: {{MODE: prod}}
            restart: unless-stopped
            labels: {{role: web}}
            mounts:
              - {prefix}-data:/data
              - {{type: tmpfs, target: /tmp/cache}}
            volumes_from: ["{prefix}-vc:ro"]
          {prefix}-idle:
            image: {busybox_image}
            state: created
            mounts: ["{prefix}-opts:/opts"]
        """
    )
    old = old_dsr(tmp_path)
    made = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", str(spec.parent)],
        cwd=old,
        env={**os.environ, "PYTHONPATH": str(old), "DSR_STATE_DIR": str(dsr_state_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    web = docker_client.containers.get(f"{prefix}-web")
    assert not web.labels["dsr.config-hash"].startswith("v2:")  # 0.1.0 made it
    ids = {c.name: c.id for c in docker_client.containers.list(all=True, filters={"name": prefix})}

    planned = dsr("plan", spec.parent, "--format", "json", "--detailed-exitcode", check=False)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    dsr("apply", spec.parent, check=0)
    after = {
        c.name: c.id for c in docker_client.containers.list(all=True, filters={"name": prefix})
    }
    assert after == ids

    # A real change after the upgrade still replaces, and gives the new hash.
    spec.write_text(spec.read_text().replace("MODE: prod", "MODE: test"))
    dsr("apply", spec.parent, check=0)
    web = docker_client.containers.get(f"{prefix}-web")
    assert web.id != ids[f"{prefix}-web"] and web.labels["dsr.config-hash"].startswith("v2:")
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)


def test_init_lets_a_shell_stop_on_sigterm_and_the_stop_signal_is_used(
    prefix: str,
    busybox_image: str,
    tmp_spec: Callable[..., Path],
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(
        f"""
        version: 1
        containers:
          {prefix}-shell:
            image: {busybox_image}
            command: [sh, -c, "sleep 3600"]
            init: true
            stop_timeout: 60
          {prefix}-usr1:
            image: {busybox_image}
            command: [sh, -c, "trap 'exit 0' USR1; while true; do sleep 0.2; done"]
            stop_signal: SIGUSR1
            stop_timeout: 60
        """
    )
    dsr("apply", spec.parent, check=0)
    shell = docker_client.containers.get(f"{prefix}-shell")
    assert shell.attrs["HostConfig"]["Init"] is True
    assert shell.attrs["Config"]["StopTimeout"] == 60
    usr1 = docker_client.containers.get(f"{prefix}-usr1")
    assert usr1.attrs["Config"]["StopSignal"] == "SIGUSR1"

    planned = dsr("plan", spec.parent, check=0)
    assert "No changes" in planned.stdout or "0 to replace" in planned.stdout

    spec.write_text(spec.read_text().replace("sleep 3600", "sleep 3601"))
    started = time.monotonic()
    replaced = dsr("apply", spec.parent, check=0)
    # Without init, sh as PID 1 ignores SIGTERM and the stop would wait the full 60 s.
    assert time.monotonic() - started < 30, replaced.stdout
    assert "stopping it may take up to 1 min" in replaced.stdout
    assert docker_client.containers.get(f"{prefix}-shell").id != shell.id

    # Left the spec: deleted, stopped with its own signal (SIGUSR1), never forced.
    spec.write_text(spec.read_text().split(f"  {prefix}-usr1:")[0])
    started = time.monotonic()
    dsr("apply", spec.parent, check=0)
    assert time.monotonic() - started < 30
    assert not docker_client.containers.list(all=True, filters={"name": f"{prefix}-usr1"})
