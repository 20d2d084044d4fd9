"""on_change against the engine: block keeps the volume, recreate empties it, migrate keeps
every byte through a verified backup, also when applies are killed at random moments."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from specgen import kill_apply_after

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]
SEED = int(os.environ.get("DSR_MIGRATE_SEED", "20261130"))
KILLS = 20
FILL = (
    "mkdir -p /v/sub/empty && echo one > /v/a.txt && echo two > /v/sub/b.txt && "
    "head -c 300000 /dev/urandom > /v/sub/big.bin && chmod 4755 /v/a.txt && "
    "chown 123:456 /v/sub/b.txt && ln -s a.txt /v/link && ln /v/a.txt /v/hard"
)
LISTING = (
    "cd /v && find . | sort | while read f; do ls -ld \"$f\" | awk '{print $1,$3,$4,$5,$9}'; "
    'if [ -f "$f" ]; then md5sum "$f"; fi; done'
)


def spec_text(prefix: str, busybox: str, tier: str, on_change: str = "migrate") -> str:
    return f"""version: 1
volumes:
  {prefix}-data:
    labels: {{tier: {tier}}}
    on_change: {on_change}
containers:
  {prefix}-app:
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    mounts: ["{prefix}-data:/data"]
"""


def run_in_volume(
    client: docker.DockerClient, image: str, volume: str, script: str, prefix: str
) -> str:
    out = client.containers.run(
        image,
        ["sh", "-c", script],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    return bytes(out).decode()


@pytest.fixture
def filled(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> tuple[Path, str]:
    """The spec applied with tier a, the volume filled; returns (spec, its listing)."""
    spec = tmp_spec(spec_text(prefix, busybox_image, "a"))
    dsr("apply", spec.parent, check=0)
    run_in_volume(docker_client, busybox_image, f"{prefix}-data", FILL, prefix)
    return spec, run_in_volume(docker_client, busybox_image, f"{prefix}-data", LISTING, prefix)


def applied_with_every_byte(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    spec: Path,
    prefix: str,
    busybox_image: str,
    tier: str,
    before: str,
) -> None:
    """An apply leaves the volume with ``tier``'s settings and the listing ``before``, its
    app running, and nothing more to do."""
    dsr("apply", spec.parent, check=0)
    assert docker_client.volumes.get(f"{prefix}-data").attrs["Labels"]["tier"] == tier
    after = run_in_volume(docker_client, busybox_image, f"{prefix}-data", LISTING, prefix)
    assert after == before
    assert docker_client.containers.get(f"{prefix}-app").status == "running"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)


def test_migrate_keeps_every_byte_and_makes_the_users_again(
    filled: tuple[Path, str],
    prefix: str,
    busybox_image: str,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec, before = filled
    assert "a.txt" in before and "big.bin" in before
    old_app = docker_client.containers.get(f"{prefix}-app").id
    spec.write_text(spec_text(prefix, busybox_image, "b"))
    planned = dsr("plan", spec.parent, check=0).stdout
    assert f"volume:{prefix}-data will be replaced (risk: restart)" in planned, planned
    assert "on_change is migrate" in planned and f"{prefix}-app are stopped" in planned
    applied_with_every_byte(dsr, docker_client, spec, prefix, busybox_image, "b", before)
    assert docker_client.containers.get(f"{prefix}-app").id != old_app


def test_block_keeps_and_recreate_empties(
    filled: tuple[Path, str],
    prefix: str,
    busybox_image: str,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec, before = filled
    spec.write_text(spec_text(prefix, busybox_image, "b", "block"))
    blocked = dsr("apply", spec.parent, check=3)
    assert "on_change is block, so its data stays as it is" in blocked.stdout
    assert docker_client.volumes.get(f"{prefix}-data").attrs["Labels"]["tier"] == "a"
    assert run_in_volume(docker_client, busybox_image, f"{prefix}-data", LISTING, prefix) == before

    spec.write_text(spec_text(prefix, busybox_image, "b", "recreate"))
    planned = dsr("plan", spec.parent, check=0).stdout
    assert "will be replaced (risk: data-loss)" in planned
    dsr("apply", spec.parent, check=0)
    assert docker_client.volumes.get(f"{prefix}-data").attrs["Labels"]["tier"] == "b"
    assert run_in_volume(docker_client, busybox_image, f"{prefix}-data", "ls -A /v", prefix) == ""
    assert docker_client.containers.get(f"{prefix}-app").status == "running"


def test_a_migration_killed_at_random_steps_never_loses_a_byte(
    filled: tuple[Path, str],
    prefix: str,
    busybox_image: str,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec, before = filled
    # How long one migration takes here: the kills land within that time, whatever the
    # machine's speed (a fixed range killed too few applies on a quiet machine).
    spec.write_text(spec_text(prefix, busybox_image, "b"))
    started = time.monotonic()
    dsr("apply", spec.parent, check=0)
    took = time.monotonic() - started
    rng = random.Random(SEED)
    story = []
    for round_ in range(KILLS):
        spec.write_text(spec_text(prefix, busybox_image, "ab"[round_ % 2]))
        delay = rng.uniform(0.0, max(took - 1.0, 0.3))
        story.append((round(delay, 2), kill_apply_after(spec.parent, dsr_state_dir, delay)[0]))
    assert sum(killed for _, killed in story) >= KILLS // 2, f"seed {SEED}: {story}"
    finished = dsr("apply", spec.parent, check=False)
    assert finished.returncode == 0, f"seed {SEED}: {story}\n{finished.stdout}\n{finished.stderr}"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)
    after = run_in_volume(docker_client, busybox_image, f"{prefix}-data", LISTING, prefix)
    assert after == before, f"seed {SEED}: {story}"
    assert docker_client.containers.get(f"{prefix}-app").status == "running"


def test_a_spec_changed_again_mid_migration_refills_from_the_recorded_backup(
    filled: tuple[Path, str],
    prefix: str,
    busybox_image: str,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    """The state a migration killed after making the volume again (settings b, still
    empty) leaves, then the spec says a again: the next apply refills the volume from the
    recorded backup. (Backing the empty volume up as a new migration would lose it all.)"""
    from reconciler.backup.run import Options, backup_volume
    from reconciler.backup.store import snapshot_folder
    from reconciler.engine import Engine
    from reconciler.statedir import StateDir

    spec, before = filled
    state = StateDir(str(dsr_state_dir))
    engine = Engine()
    try:
        manifest = backup_volume(
            engine, prefix, f"{prefix}-data", state.backups, Options(key=state.backup_key())
        )
    finally:
        engine.close()
    folder = snapshot_folder(state.backups, prefix, manifest.id)
    original = docker_client.api.inspect_volume(f"{prefix}-data")["Labels"]["dsr.instance"]
    # Made again with b and not refilled: what `recreate` leaves, its users removed (as a
    # migration removes them), then the record of the migration whose backup holds the data.
    spec.write_text(spec_text(prefix, busybox_image, "b", "recreate"))
    dsr("apply", spec.parent, check=0)
    assert run_in_volume(docker_client, busybox_image, f"{prefix}-data", "ls -A /v", prefix) == ""
    docker_client.containers.get(f"{prefix}-app").remove(force=True)
    record = state.read_record(prefix)
    migration = {"folder": folder, "original": original}
    state.write_record(prefix, {**record, "migrations": {f"{prefix}-data": migration}})

    spec.write_text(spec_text(prefix, busybox_image, "a"))
    planned = dsr("plan", spec.parent, check=0).stdout
    assert "a migration was interrupted" in planned and folder in planned, planned
    applied_with_every_byte(dsr, docker_client, spec, prefix, busybox_image, "a", before)
    assert (
        "migrations" not in state.read_record(prefix) or not state.read_record(prefix)["migrations"]
    )


def test_a_migration_whose_backup_fails_starts_its_users_again(
    filled: tuple[Path, str],
    prefix: str,
    busybox_image: str,
    dsr: DsrRunner,
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    """Users are stopped before the backup (nothing writes after it); when the backup
    fails, nothing was removed, and those that were running run again."""
    spec, before = filled
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup destination's folders would go")
    rule = f"backups:\n  nightly:\n    volumes: [{prefix}-data]\n    destination: {blocker}/x\n"
    spec.write_text(spec_text(prefix, busybox_image, "b") + rule)
    old_app = docker_client.containers.get(f"{prefix}-app").id
    failed = dsr("apply", spec.parent, check=1)
    assert "not-a-folder" in failed.stdout + failed.stderr
    app = docker_client.containers.get(f"{prefix}-app")
    assert app.id == old_app and app.status == "running"
    assert docker_client.volumes.get(f"{prefix}-data").attrs["Labels"]["tier"] == "a"
    assert run_in_volume(docker_client, busybox_image, f"{prefix}-data", LISTING, prefix) == before
