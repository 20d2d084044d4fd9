"""One writer per engine and project: applies started together converge once, a second
writer gives up after --lock-timeout naming the holder, and a killed holder blocks no one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker

from reconciler.engine import engine_url
from reconciler.statedir import StateDir, locked

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
ROUNDS = 10


def spec_text(prefix: str, busybox: str, round_: int) -> str:
    """Three containers whose command changes every round (a replace of each), sharing a
    volume container and a named volume. ``init`` makes each stop at once on SIGTERM."""
    containers = "".join(
        f"""
  {prefix}-app{i}:
    image: {busybox}
    command: [sh, -c, "echo round {round_}; exec sleep 3600"]
    init: true
    mounts: ["{prefix}-data:/data"]
    volumes_from: [{prefix}-vc]
"""
        for i in range(3)
    )
    return f"""version: 1
volumes:
  {prefix}-data: {{}}
volume_containers:
  {prefix}-vc:
    mounts: [/scratch]
containers:{containers}"""


def apply_together(spec: Path, state_dir: Path) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DSR_STATE_DIR": str(state_dir)}
    argv = [sys.executable, "-m", "reconciler", "apply", str(spec)]
    processes = [
        subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
    return results


def test_two_applies_started_together_converge_once(
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec_dir = tmp_path / prefix
    spec_dir.mkdir()
    spec = spec_dir / "dsr.yaml"
    for round_ in range(ROUNDS):
        spec.write_text(spec_text(prefix, busybox_image, round_))
        results = apply_together(spec_dir, dsr_state_dir)
        for result in results:
            assert result.returncode == 0, f"round {round_}:\n{result.stdout}\n{result.stderr}"
        dsr("plan", spec_dir, "--detailed-exitcode", check=0)
        names = sorted(
            c.name for c in docker_client.containers.list(all=True, filters={"name": prefix})
        )
        assert names == [f"{prefix}-app0", f"{prefix}-app1", f"{prefix}-app2", f"{prefix}-vc"]
        for i in range(3):
            logs = docker_client.containers.get(f"{prefix}-app{i}").logs().decode()
            assert logs.strip() == f"round {round_}"
        volumes = docker_client.volumes.list(filters={"label": f"dsr.project={prefix}"})
        anonymous = [v for v in volumes if v.attrs["Labels"].get("dsr.kind") == "anonymous_volume"]
        assert len(anonymous) == 1, "the volume container's anonymous volume, carried over"


def test_a_second_writer_gives_up_naming_the_holder_and_changes_nothing(
    prefix: str,
    busybox_image: str,
    tmp_spec: Callable[..., Path],
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(spec_text(prefix, busybox_image, 0))
    state = StateDir(str(dsr_state_dir))
    with locked(state, engine_url(), prefix, timeout=0, what="dsr apply (the test)"):
        started = time.monotonic()
        refused = dsr("apply", spec.parent, "--lock-timeout", "0", check=1)
        assert time.monotonic() - started < 20
        assert f"process {os.getpid()} (dsr apply (the test)) holds the lock" in refused.stderr
        waited = dsr("--lock-timeout", "0.5", "apply", spec.parent, check=1)
        assert "after waiting 0.5 s" in waited.stderr
        # plan and validate take no lock
        dsr("plan", spec.parent, check=0)
        dsr("validate", spec.parent, check=0)
    assert docker_client.containers.list(all=True, filters={"name": prefix}) == []
    assert docker_client.volumes.list(filters={"label": f"dsr.project={prefix}"}) == []
    dsr("apply", spec.parent, "--lock-timeout", "0", check=0)


def test_a_lock_left_by_a_killed_process_blocks_no_one(
    prefix: str, tmp_spec: Callable[..., Path], dsr: DsrRunner, dsr_state_dir: Path
) -> None:
    spec = tmp_spec(f"version: 1\nvolumes:\n  {prefix}-data: {{}}\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from reconciler.engine import engine_url\n"
            "from reconciler.statedir import StateDir, locked\n"
            f"with locked(StateDir({str(dsr_state_dir)!r}), engine_url(), {prefix!r}, timeout=0):\n"
            "    print('held', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = dsr("apply", spec.parent, "--lock-timeout", "0", check=1)
        assert f"process {holder.pid} " in refused.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        dsr("apply", spec.parent, "--lock-timeout", "0", check=0)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
