"""Interrupted work is finished from the project record: a quiesced backup or a restore
killed while it held containers stopped, a killed ``restore --into``; and a full disk
leaves no manifest.json.tmp, no partial archive and no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from test_migrate import run_in_volume

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]
BIG = "head -c 60000000 /dev/urandom > /v/big && echo small > /v/small"


def record_of(state_dir: Path, project: str) -> dict[str, object]:
    from reconciler.statedir import StateDir

    return dict(StateDir(str(state_dir)).read_record(project))


def kill_when(argv: list[str], state_dir: Path, ready: Callable[[], bool]) -> bool:
    """Run dsr ``argv``; SIGKILL it as soon as ``ready()``. True if it was caught so."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *argv],
        env={**os.environ, "DSR_STATE_DIR": str(state_dir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, caught = time.monotonic() + 120, False
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.005)
    process.kill()
    process.wait(timeout=60)
    return caught


def quiesced_spec(prefix: str, busybox: str, destination: Path) -> str:
    return f"""version: 1
volumes:
  {prefix}-data: {{}}
containers:
  {prefix}-app:
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    mounts: ["{prefix}-data:/data"]
backups:
  nightly:
    volumes: [{prefix}-data]
    quiesce: true
    destination: {destination}
    keep: {{last: 9}}
"""


def test_a_killed_quiesced_backup_and_restore_stop_are_undone_by_the_next_run(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(quiesced_spec(prefix, busybox_image, tmp_path / "dest"))
    dsr("apply", spec.parent, check=0)
    run_in_volume(docker_client, busybox_image, f"{prefix}-data", BIG, prefix)
    app = docker_client.containers.get(f"{prefix}-app")

    def app_stopped() -> bool:
        app.reload()
        stopped = record_of(dsr_state_dir, prefix).get("interrupted", {})
        return app.status == "exited" and bool(stopped and stopped.get("stopped"))  # type: ignore[union-attr]

    assert kill_when(["backup", str(spec.parent)], dsr_state_dir, app_stopped)
    app.reload()
    assert app.status == "exited"  # left stopped by the killed backup
    dsr("backup", spec.parent, check=0)  # the next run starts it first, then backs up
    app.reload()
    assert app.status == "running"

    # The same for a restore --stop killed while the app is stopped; apply undoes it.
    assert kill_when(
        ["restore", str(spec.parent), f"{prefix}-data", "--stop"], dsr_state_dir, app_stopped
    )
    dsr("apply", spec.parent, check=0)
    app.reload()
    assert app.status == "running"
    assert not record_of(dsr_state_dir, prefix)["interrupted"]["stopped"]  # type: ignore[index]


def test_a_killed_restore_into_is_finished_by_the_next(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(quiesced_spec(prefix, busybox_image, tmp_path / "dest"))
    dsr("apply", spec.parent, check=0)
    run_in_volume(docker_client, busybox_image, f"{prefix}-data", BIG, prefix)
    dsr("backup", spec.parent, check=0)
    listing = "md5sum /v/big /v/small"
    before = run_in_volume(docker_client, busybox_image, f"{prefix}-data", listing, prefix)
    new = f"{prefix}-new"

    def made() -> bool:
        try:
            docker_client.api.inspect_volume(new)
        except docker.errors.NotFound:
            return False
        return True

    argv = ["restore", str(spec.parent), f"{prefix}-data", "--into", new]
    assert kill_when(argv, dsr_state_dir, made)
    assert made()  # half filled, and recorded as such
    dsr(*argv, check=0)
    assert run_in_volume(docker_client, busybox_image, new, listing, prefix) == before
    assert not record_of(dsr_state_dir, prefix)["interrupted"]["restoring"]  # type: ignore[index]
    refused = dsr(*argv, check=1)  # a volume that was finished is never replaced
    assert "exists already" in refused.stdout + refused.stderr


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_leaves_nothing_behind_and_no_traceback(
    tmp_spec: SpecWriter, tmp_path: Path, dsr: DsrRunner
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "random").write_bytes(os.urandom(3_000_000))
    with small_disk(tmp_path / "dest", "1m") as dest:
        spec = tmp_spec(f"""
            version: 1
            backups:
              files:
                paths: [{site}]
                destination: {dest}
                keep: {{last: 3}}
            """)
        failed = dsr("backup", spec, check=1)
        assert "Traceback" not in failed.stderr and "No space left" in failed.stdout + failed.stderr
        assert not [p for p in dest.rglob("*") if p.is_file()], sorted(dest.rglob("*"))
    # A backup that fits, restored into a folder too small for it: a clear error.
    spec = tmp_spec(f"""
        version: 1
        backups:
          files:
            paths: [{site}]
            destination: {tmp_path / "roomy"}
            keep: {{last: 3}}
        """)
    dsr("backup", spec, check=0)
    with small_disk(tmp_path / "target", "1m") as target:
        failed = dsr("restore", spec, str(site), "--into", str(target / "x"), check=1)
        out = failed.stdout + failed.stderr
        assert "Traceback" not in out and "No space left" in out and "intact" in out, out
