"""``dsr run`` against the engine: edits applied, drift healed, bursts coalesced, idle quiet."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import yaml
from daemonproc import DaemonProcess, Starter, run_daemon
from docker.errors import NotFound
from specgen import SLEEP_COMMAND

__all__ = ["run_daemon"]  # the fixture, used by name

SpecWriter = Callable[..., Path]


def spec_text(prefix: str, image: str, volumes: list[str], **extra: Any) -> str:
    document = {
        "version": 1,
        "project": prefix,
        "volumes": {f"{prefix}-{v}": {} for v in volumes},
        "containers": {
            f"{prefix}-web": {
                "image": image,
                "command": SLEEP_COMMAND,
                "mounts": [f"{prefix}-{volumes[0]}:/data"],
            }
        },
        **extra,
    }
    return yaml.safe_dump(document)


def volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_volume(name)
        return True
    except NotFound:
        return False


def container_state(client: docker.DockerClient, name: str) -> str:
    try:
        return str(client.api.inspect_container(name)["State"]["Status"])
    except NotFound:
        return "absent"


def converged(daemon: DaemonProcess) -> bool:
    """The newest pass changed nothing and failed nothing."""
    passes = daemon.passes()
    return bool(passes) and not passes[-1]["changes"] and not passes[-1]["failed"]


def test_edits_are_applied_and_drift_is_healed(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(spec_text(prefix, busybox_image, ["data"]))
    daemon = run_daemon(spec.parent)
    web = f"{prefix}-web"
    daemon.wait_for(lambda: container_state(docker_client, web) == "running", what="first pass")
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    assert daemon.passes()[0]["trigger"] == "start"

    # An edit of the spec file is applied.
    tmp_spec(spec_text(prefix, busybox_image, ["data", "more"]))
    daemon.wait_for(lambda: volume_exists(docker_client, f"{prefix}-more"), what="the edit")
    # (A pass that another trigger started may read the edit first: files are compared.)
    daemon.wait_for(lambda: any("file" in p["trigger"] for p in daemon.passes()), what="")

    # Out of band: a volume removed, a container stopped, removed, renamed.
    docker_client.api.remove_volume(f"{prefix}-more")
    daemon.wait_for(lambda: volume_exists(docker_client, f"{prefix}-more"), what="volume back")
    docker_client.api.stop(web, timeout=5)
    daemon.wait_for(lambda: container_state(docker_client, web) == "running", what="restarted")
    docker_client.api.remove_container(web, force=True)
    daemon.wait_for(lambda: container_state(docker_client, web) == "running", what="recreated")
    docker_client.api.rename(web, f"{prefix}-moved")
    daemon.wait_for(
        lambda: (
            container_state(docker_client, web) == "running"
            and container_state(docker_client, f"{prefix}-moved") == "absent"
        ),
        what="the rename repaired",
    )
    triggers = {p["trigger"] for p in daemon.passes()}
    assert "event" in triggers

    # Every change was counted; what dsr did itself started no pass of its own.
    created = daemon.metric("dsr_changes_total", action="create", outcome="ok")
    assert created >= 5  # 2 volumes and the container, then a volume and a container again
    assert daemon.metric("dsr_changes_total", action="start", outcome="ok") >= 1
    assert daemon.metric("dsr_reconcile_total", result="ok") == len(daemon.passes())
    assert daemon.metric("dsr_resources", kind="volume", status="in_sync") == 2
    assert daemon.metric("dsr_spec_errors") == 0
    assert daemon.metric("dsr_last_success_timestamp_seconds") > time.time() - 60
    changing = [p for p in daemon.passes() if p["changes"]]
    assert len(daemon.passes()) <= 2 * len(changing) + 3, daemon.describe()
    assert daemon.get("/readyz")[0] == 200
    assert daemon.terminate()[0] == 0


def test_a_burst_of_saves_makes_at_most_two_passes(
    run_daemon: Starter, tmp_spec: SpecWriter, prefix: str, docker_client: docker.DockerClient
) -> None:
    def text(n: int, volumes: list[str]) -> str:
        names = {f"{prefix}-{v}": {} for v in volumes}
        return yaml.safe_dump({"version": 1, "project": prefix, "volumes": names}) + f"# {n}\n"

    spec = tmp_spec(text(0, ["a"]))
    daemon = run_daemon(spec.parent)
    daemon.wait_for(lambda: volume_exists(docker_client, f"{prefix}-a"), what="first pass")
    daemon.wait_idle()
    before = len(daemon.passes())
    started = time.monotonic()
    for n in range(1, 101):
        spec.write_text(text(n, ["a", "b"] if n == 100 else ["a"]))
        time.sleep(max(0.0, started + n * 0.01 - time.monotonic()))
    assert time.monotonic() - started < 1.5
    daemon.wait_for(lambda: volume_exists(docker_client, f"{prefix}-b"), what="the last save")
    daemon.wait_idle()
    burst = daemon.passes()[before:]
    assert 1 <= len(burst) <= 2, daemon.describe()


def test_idle_interval_passes_make_no_write_call(
    run_daemon: Starter, tmp_spec: SpecWriter, prefix: str, docker_client: docker.DockerClient
) -> None:
    volumes = {f"{prefix}-v{i}": {} for i in range(5)}
    spec = tmp_spec(yaml.safe_dump({"version": 1, "project": prefix, "volumes": volumes}))
    daemon = run_daemon(spec.parent, "--interval", "0.1")
    daemon.wait_for(lambda: converged(daemon), what="convergence")
    first = len(daemon.passes())
    since = time.time()
    daemon.wait_for(lambda: len(daemon.passes()) >= first + 30, what="30 interval passes")
    idle = daemon.passes()[first:]
    assert {p["trigger"] for p in idle} == {"interval"}
    # No apply stage, no change: list calls only (containers, volumes, images).
    assert all(not p["changes"] and "apply" not in p["stages_ms"] for p in idle), idle
    assert all(p["calls"] <= 4 for p in idle), idle  # reads only: the three lists
    events = docker_client.events(since=since, until=time.time(), decode=True)
    ours = [e for e in events if prefix in str(e.get("Actor", {}).get("Attributes", {}))]
    assert ours == []
    assert daemon.metric("dsr_reconcile_total", result="ok") >= first + 30
    assert daemon.metric("dsr_drift_total") == 0


def test_notify_watchdog_sighup_and_scheduled_backups(
    run_daemon: Starter, tmp_spec: SpecWriter, prefix: str, tmp_path: Path
) -> None:
    """Under systemd: READY=1 after the first pass, STATUS=, WATCHDOG=1 pings; SIGHUP
    reloads; a backup rule's schedule runs ``dsr backup`` on time (cron's finest grain, a
    minute: the test waits for the next one), then retention, and the backup metrics show
    the snapshot."""
    document = {
        "version": 1,
        "project": prefix,
        "volumes": {f"{prefix}-data": {}},
        "backups": {
            "often": {
                "volumes": [f"{prefix}-data"],
                "schedule": "* * * * *",
                "destination": str(tmp_path / "backups"),
                "keep": {"last": 1},
            }
        },
    }
    spec = tmp_spec(yaml.safe_dump(document))
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(0.2)
        daemon = run_daemon(
            spec.parent, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"}
        )
        messages: list[str] = []

        def received(text: str) -> bool:
            with contextlib.suppress(TimeoutError):
                messages.append(sock.recv(4096).decode())
            return any(m.startswith(text) for m in messages)

        daemon.wait_for(lambda: received("READY=1"), what="READY=1")
        daemon.wait_for(lambda: received("WATCHDOG=1"), what="watchdog pings")
        assert any(m.startswith("STATUS=last pass: ok") for m in messages), messages

        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: any("hup" in p["trigger"] for p in daemon.passes()), what="")

        source = f"volume:{prefix}-data"

        def backed_up() -> bool:
            return daemon.metric("dsr_backup_last_success_timestamp_seconds", source=source) > 0

        daemon.wait_for(backed_up, timeout=100, what="the scheduled backup")
        runs = [e for e in daemon.named("scheduled backup") if e["rule"] == "often"]
        assert runs and not daemon.named("scheduled backup failed")
        assert daemon.metric("dsr_backup_failures_total", rule="often") == 0
        assert list((tmp_path / "backups").glob("*/*/manifest.json"))
        assert daemon.terminate()[0] == 0


def test_own_changes_start_no_pass_and_failures_back_off(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    """A replace (stop, rename, destroy: all events the daemon listens to) wakes nothing;
    a change that keeps failing is retried 1 s, 2 s, 4 s… apart, not on every pass."""
    spec = tmp_spec(spec_text(prefix, busybox_image, ["data"]))
    daemon = run_daemon(spec.parent, "--interval", "0.2")
    web = f"{prefix}-web"
    daemon.wait_for(lambda: container_state(docker_client, web) == "running", what="start")
    first_id = docker_client.api.inspect_container(web)["Id"]

    document = yaml.safe_load(spec.read_text())
    document["containers"][web]["env"] = ["CHANGED=1"]
    document["containers"][f"{prefix}-broken"] = {"image": "dsr-test-no-registry.invalid/x:1"}
    spec.write_text(yaml.safe_dump(document))

    def replaced() -> bool:
        try:
            return docker_client.api.inspect_container(web)["Id"] != first_id
        except NotFound:
            return False

    daemon.wait_for(replaced, what="the replace")
    daemon.wait_for(lambda: daemon.metric("dsr_events_ignored_own_total") >= 2, what="ignored")
    time.sleep(7)
    passes = daemon.passes()
    assert not any("event" in p["trigger"] for p in passes), daemon.describe()

    attempts = [
        e["timestamp"]
        for e in daemon.named("change")
        if e["resource"] == f"container:{prefix}-broken"
    ]
    assert 3 <= len(attempts) <= 5, attempts  # ~0, 1, 3, 7 s; not one per 0.2 s pass
    assert daemon.named("deferred")
    assert daemon.metric("dsr_changes_total", action="create", outcome="failed") == len(attempts)
    assert daemon.metric("dsr_resources", kind="container", status="failed") == 1
