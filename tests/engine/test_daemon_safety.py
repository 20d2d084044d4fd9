"""``dsr run``'s safety: a broken or emptied spec deletes nothing, the suspend file holds,
one daemon per project, and SIGTERM mid-pass exits 0 with the rest finished next time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import yaml
from daemonproc import Starter, run_daemon
from docker.errors import NotFound

__all__ = ["run_daemon"]

SpecWriter = Callable[..., Path]


def volumes_doc(prefix: str, names: list[str]) -> str:
    volumes = {f"{prefix}-{n}": {} for n in names}
    return yaml.safe_dump({"version": 1, "project": prefix, "volumes": volumes})


def containers_doc(prefix: str, image: str, names: list[str]) -> str:
    """Containers that are created, never started: quick, and deleted when they leave."""
    containers = {f"{prefix}-{n}": {"image": image, "state": "created"} for n in names}
    return yaml.safe_dump({"version": 1, "project": prefix, "containers": containers})


def exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_volume(name)
        return True
    except NotFound:
        return False


def has_container(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_container(name)
        return True
    except NotFound:
        return False


def test_broken_and_emptied_specs_delete_nothing(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(containers_doc(prefix, busybox_image, ["a", "b"]))
    daemon = run_daemon(spec.parent, "--interval", "0.5")
    a, b = f"{prefix}-a", f"{prefix}-b"
    both = lambda: has_container(docker_client, a) and has_container(docker_client, b)  # noqa: E731
    daemon.wait_for(both, what="start")

    # A broken file: logged with its errors and counted; the last good spec stays in force.
    spec.write_text(containers_doc(prefix, busybox_image, ["a"]) + "  oops: [\n")
    daemon.wait_for(lambda: daemon.named("spec error"), what="the spec error")
    assert "dsr.yaml" in daemon.named("spec error")[0]["errors"][0]
    daemon.wait_for(lambda: daemon.metric("dsr_spec_errors") >= 1, what="counted")
    docker_client.api.remove_container(b)
    daemon.wait_for(both, what="the last good spec enforced")

    # Fixed: applied (b leaves the spec, so it is deleted).
    spec.write_text(containers_doc(prefix, busybox_image, ["a"]))
    daemon.wait_for(lambda: not has_container(docker_client, b), what="the fix applied")
    daemon.wait_for(lambda: daemon.metric("dsr_spec_errors") == 0, what="errors cleared")

    # No files at all, then a file that declares nothing: both refused.
    spec.unlink()
    daemon.wait_for(lambda: daemon.named("spec refused"), what="the empty folder refused")
    spec.write_text(yaml.safe_dump({"version": 1, "project": prefix}))
    daemon.wait_for(lambda: daemon.named("refused"), what="the empty spec refused")
    daemon.wait_for(
        lambda: daemon.metric("dsr_reconcile_total", result="refused") >= 2, what="counted"
    )
    assert has_container(docker_client, a)
    assert daemon.terminate()[0] == 0

    # --allow-empty lets the empty spec delete the project.
    allowing = run_daemon(spec.parent, "--allow-empty")
    allowing.wait_for(lambda: not has_container(docker_client, a), what="the allowed deletion")


def test_the_suspend_file_holds(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(volumes_doc(prefix, ["a"]))
    suspend = tmp_path / "suspend"
    daemon = run_daemon(spec.parent, "--suspend-file", str(suspend))
    a = f"{prefix}-a"
    daemon.wait_for(lambda: exists(docker_client, a), what="start")
    suspend.touch()
    docker_client.api.remove_volume(a)
    daemon.wait_for(lambda: len(daemon.named("suspended")) >= 1, what="a suspended pass")
    time.sleep(1)
    assert not exists(docker_client, a)
    assert daemon.named("suspended")[-1]["changes"] == {"create": 1}
    suspend.unlink()  # wakes the loop: the suspend file is watched
    daemon.wait_for(lambda: exists(docker_client, a), timeout=5, what="resumed")
    assert daemon.metric("dsr_reconcile_total", result="suspended") >= 1


def test_a_second_daemon_exits_1_naming_the_first(
    run_daemon: Starter, tmp_spec: SpecWriter, prefix: str, docker_client: docker.DockerClient
) -> None:
    spec = tmp_spec(volumes_doc(prefix, ["a"]))
    first = run_daemon(spec.parent)
    first.wait_for(lambda: first.passes(), what="the first daemon's pass")
    second = run_daemon(spec.parent)
    assert second.proc.wait(20) == 1
    second.terminate()
    assert f"process {first.proc.pid} (dsr run)" in "\n".join(second.other_lines)


def test_sigterm_mid_pass_exits_0_and_the_next_start_finishes(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
    dsr_state_dir: Path,
) -> None:
    names = [f"v{i:03d}" for i in range(300)]
    spec = tmp_spec(volumes_doc(prefix, names))
    daemon = run_daemon(spec.parent, "--workers", "2")
    daemon.wait_for(lambda: daemon.named("change"), timeout=30, what="the first change")
    code, seconds = daemon.terminate(timeout=15)
    assert code == 0 and seconds < 10, daemon.describe()
    made = [n for n in names if exists(docker_client, f"{prefix}-{n}")]
    assert 0 < len(made) < len(names), "SIGTERM came too late to test anything"
    skipped = [e for e in daemon.named("change") if e["outcome"] == "skipped"]
    assert skipped and skipped[0]["error"] == "stopped before it started"

    again = run_daemon(spec.parent)
    again.wait_for(
        lambda: all(exists(docker_client, f"{prefix}-{n}") for n in names[-3:]),
        timeout=60,
        what="the rest",
    )
    again.wait_for(lambda: again.passes() and not again.passes()[-1]["failed"], what="")
    dsr = [sys.executable, "-m", "reconciler", "plan", str(spec.parent), "--detailed-exitcode"]
    env = {**os.environ, "DSR_STATE_DIR": str(dsr_state_dir)}
    assert subprocess.run(dsr, env=env, capture_output=True, check=False).returncode == 0


def test_a_held_project_lock_makes_passes_wait_and_sigterm_still_prompt(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
    dsr_state_dir: Path,
) -> None:
    """While another dsr (here: the test) holds the project's lock, passes wait and retry;
    once it is released they apply; SIGTERM is not held up by the wait."""
    from reconciler.engine import engine_url
    from reconciler.statedir import StateDir, locked

    spec = tmp_spec(volumes_doc(prefix, ["a"]))
    url = engine_url(os.environ.get("DOCKER_HOST"))
    with locked(StateDir(str(dsr_state_dir)), url, prefix, timeout=0, what="dsr apply"):
        daemon = run_daemon(spec.parent)
        daemon.wait_for(
            lambda: daemon.metric("dsr_reconcile_total", result="locked") >= 2, what="waits"
        )
        assert not exists(docker_client, f"{prefix}-a")
    daemon.wait_for(lambda: exists(docker_client, f"{prefix}-a"), what="applied after release")
    # The volume exists before the pass that made it ends and lets go of the lock.
    with locked(StateDir(str(dsr_state_dir)), url, prefix, timeout=10, what="dsr apply"):
        docker_client.api.remove_volume(f"{prefix}-a")
        daemon.wait_for(lambda: daemon.named("the project's lock is held; trying again in 1 s"))
        code, seconds = daemon.terminate()
    assert code == 0 and seconds < 5


def test_a_pass_past_its_deadline_starts_nothing_more_and_later_passes_finish(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
) -> None:
    """``--pass-timeout``: once a pass is past it, the changes running finish and no other
    starts (each skipped one says so); the daemon logs it, stays up, and the next passes
    carry on from what the engine then holds."""
    names = [f"v{i:03d}" for i in range(300)]
    spec = tmp_spec(volumes_doc(prefix, names))
    daemon = run_daemon(spec.parent, "--workers", "1", "--pass-timeout", "0.3", "--interval", "0.5")
    daemon.wait_for(lambda: daemon.named("pass timed out"), timeout=30, what="a timed-out pass")
    timed_out = daemon.named("pass timed out")[0]
    assert timed_out["pass_timeout"] == 0.3
    first = daemon.passes()[0]
    assert 0 < first["changes"]["create"] == len(names)
    skipped = [e for e in daemon.named("change") if e["outcome"] == "skipped"]
    assert skipped and skipped[0]["error"] == "stopped before it started"
    assert len(skipped) < len(names)  # some were made before the deadline
    daemon.wait_for(
        lambda: all(exists(docker_client, f"{prefix}-{n}") for n in names),
        timeout=120,
        what="later passes to make the rest",
    )
    assert daemon.proc.poll() is None
    code, _ = daemon.terminate()
    assert code == 0
