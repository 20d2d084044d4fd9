"""An interrupted migration finishes only from a backup nothing has written past, and
never under a container that is not dsr's (the faults injected here: a SIGKILL right
after the backup was recorded, a user started again, a foreign container on the volume)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.models.containers import Container
from test_migrate import FILL, LISTING, run_in_volume, spec_text

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def killed_once_recorded(spec: Path, state_dir: Path, project: str) -> bool:
    """Run ``dsr apply``; SIGKILL it the moment its record names a migration in flight
    (after the verified backup, before anything is removed). True if it was caught so."""
    from reconciler.statedir import StateDir

    state = StateDir(str(state_dir))
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply", str(spec)],
        env={**os.environ, "DSR_STATE_DIR": str(state_dir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    caught = False
    while process.poll() is None and time.monotonic() < deadline:
        if state.read_record(project).get("migrations"):
            process.send_signal(signal.SIGSTOP)  # frozen at once, then killed
            caught = True
            break
        time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return caught


def still_before_removals(
    client: docker.DockerClient, app: str, volume: str, instance: str
) -> Container | None:
    """The app container, when it and the volume the migration backed up are both still
    there. A removal the killed apply had sent goes on in the engine after the kill: the
    engine is asked only once it had time to finish such a removal."""
    time.sleep(1)
    try:
        container = client.containers.get(app)
        labels = client.api.inspect_volume(volume)["Labels"] or {}
    except docker.errors.NotFound:
        return None
    return container if labels.get("dsr.instance") == instance else None


def test_writes_after_an_interrupted_migrations_backup_are_kept(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(spec_text(prefix, busybox_image, "a"))
    dsr("apply", spec.parent, check=0)
    volume = f"{prefix}-data"
    run_in_volume(docker_client, busybox_image, volume, FILL, prefix)
    original = docker_client.api.inspect_volume(volume)["Labels"]["dsr.instance"]
    for _ in range(5):
        spec.write_text(spec_text(prefix, busybox_image, "b"))
        # The record names the migration until it ends, so on a loaded machine the apply
        # may be caught past its removals: only a kill before them is the case tested here.
        if killed_once_recorded(spec.parent, dsr_state_dir, prefix) and (
            found := still_before_removals(docker_client, f"{prefix}-app", volume, original)
        ):
            app = found
            break
        spec.write_text(spec_text(prefix, busybox_image, "a"))  # missed: start over
        dsr("apply", spec.parent, check=0)
    else:
        raise AssertionError("never caught the apply between its backup and its removals")
    # The app comes back (restart: always after an engine restart, or anyone) and writes.
    app.start()
    app.exec_run(["sh", "-c", "echo written after the backup > /data/newer"])
    before = run_in_volume(docker_client, busybox_image, volume, LISTING, prefix)
    assert "newer" in before
    planned = dsr("plan", spec.parent, check=0).stdout
    assert "new backup" in planned, planned
    dsr("apply", spec.parent, check=0)
    assert docker_client.volumes.get(volume).attrs["Labels"]["tier"] == "b"
    assert run_in_volume(docker_client, busybox_image, volume, LISTING, prefix) == before
    assert docker_client.containers.get(f"{prefix}-app").status == "running"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)


def test_a_foreign_container_on_a_half_migrated_volume_blocks_its_end(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    """The state a migration killed after making the volume again leaves (its users
    removed, the new volume not refilled); then someone else's container mounts it."""
    from reconciler.backup.run import Options, backup_volume
    from reconciler.backup.store import snapshot_folder
    from reconciler.engine import Engine
    from reconciler.statedir import StateDir

    spec = tmp_spec(spec_text(prefix, busybox_image, "a"))
    dsr("apply", spec.parent, check=0)
    volume = f"{prefix}-data"
    run_in_volume(docker_client, busybox_image, volume, FILL, prefix)
    state = StateDir(str(dsr_state_dir))
    original = docker_client.api.inspect_volume(volume)["Labels"]["dsr.instance"]
    engine = Engine()
    try:
        manifest = backup_volume(
            engine, prefix, volume, state.backups, Options(key=state.backup_key())
        )
    finally:
        engine.close()
    folder = snapshot_folder(state.backups, prefix, manifest.id)
    spec.write_text(spec_text(prefix, busybox_image, "b", "recreate"))
    dsr("apply", spec.parent, check=0)
    docker_client.containers.get(f"{prefix}-app").remove(force=True)
    record = state.read_record(prefix)
    migration = {"folder": folder, "original": original}
    state.write_record(prefix, {**record, "migrations": {volume: migration}})

    theirs = docker_client.containers.run(
        busybox_image,
        ["sh", "-c", "echo mine > /v/theirs && exec sleep 3600"],
        name=f"{prefix}-theirs",
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        detach=True,
    )
    time.sleep(0.5)
    spec.write_text(spec_text(prefix, busybox_image, "b"))
    applied = dsr("apply", spec.parent, check=False)
    assert applied.returncode in (1, 3), applied.stdout
    assert f"{prefix}-theirs use it" in applied.stdout, applied.stdout
    theirs.reload()
    assert theirs.status == "running"
    assert run_in_volume(docker_client, busybox_image, volume, "cat /v/theirs", prefix) == "mine\n"
    assert state.read_record(prefix)["migrations"][volume]["folder"] == folder

    # Once it is gone, the migration finishes from its backup.
    theirs.remove(force=True)
    dsr("apply", spec.parent, check=0)
    listing = run_in_volume(docker_client, busybox_image, volume, LISTING, prefix)
    assert "big.bin" in listing and "theirs" not in listing
    assert docker_client.containers.get(f"{prefix}-app").status == "running"


def test_a_user_started_during_the_migrations_backup_loses_nothing(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    """Anyone (restart: always, a script) starts the user again while the migration backs
    the volume up: each start writes a line to the volume and to a host folder; every line
    the volume got is still there once the migration is done."""
    import threading

    mirror = tmp_path / "mirror"
    mirror.mkdir()

    def text(tier: str) -> str:
        return f"""version: 1
volumes:
  {prefix}-data: {{labels: {{tier: {tier}}}, on_change: migrate}}
containers:
  {prefix}-app:
    image: {busybox_image}
    command: [sh, -c, "t=$(date +%s%N); echo $t >> /data/starts; echo $t >> /mirror/starts; exec sleep 3600"]
    init: true
    mounts: ["{prefix}-data:/data", "{mirror}:/mirror"]
"""

    spec = tmp_spec(text("a"))
    dsr("apply", spec.parent, check=0)
    run_in_volume(
        docker_client,
        busybox_image,
        f"{prefix}-data",
        "head -c 30000000 /dev/urandom > /v/big",
        prefix,
    )
    stop = threading.Event()
    starts = [0]

    def restarter() -> None:
        while not stop.is_set():
            for c in docker_client.containers.list(all=True, filters={"name": f"{prefix}-app"}):
                if c.status != "running":
                    try:
                        c.start()
                        starts[0] += 1
                    except docker.errors.APIError:
                        pass
            time.sleep(0.02)

    thread = threading.Thread(target=restarter, daemon=True)
    spec.write_text(text("b"))
    thread.start()
    try:
        for _ in range(4):  # failed migrations (a user started) leave all as it was
            if dsr("apply", spec.parent, check=False).returncode == 0:
                break
    finally:
        stop.set()
        thread.join()
    dsr("apply", spec.parent, check=0)
    assert docker_client.volumes.get(f"{prefix}-data").attrs["Labels"]["tier"] == "b"
    kept = run_in_volume(docker_client, busybox_image, f"{prefix}-data", "cat /v/starts", prefix)
    assert kept == (mirror / "starts").read_text(), f"{starts[0]} starts by the writer"
