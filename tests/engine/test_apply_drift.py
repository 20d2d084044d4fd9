"""Drift, found and repaired: what changed out of band or in the spec, the change the plan
shows for it (action, risk, reason, order) and what the engine holds after the apply."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import NotFound
from specgen import (
    ANONYMOUS,
    SLEEP_COMMAND,
    changes_by_resource,
    exec_out,
    inspect,
    mounts_by_target,
    plan_json,
)

# The fixtures' types live in conftest.py, which tests do not import.
DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


@pytest.fixture
def write(tmp_spec: SpecWriter, prefix: str) -> Callable[[dict[str, Any]], Path]:
    """Writes a spec document for project ``prefix``; returns the spec file."""

    def write(sections: dict[str, Any]) -> Path:
        return tmp_spec(yaml.safe_dump({"version": 1, "project": prefix, **sections}))

    return write


def sleeper(image: str, **extra: Any) -> dict[str, Any]:
    return {"image": image, "command": list(SLEEP_COMMAND), **extra}


def plan_of(dsr: DsrRunner, spec: Path) -> dict[str, dict[str, Any]]:
    """The plan's changes by resource, checking --detailed-exitcode says there are some."""
    return changes_by_resource(plan_json(dsr("plan", spec, "--format", "json", check=True)))


def assert_converged(dsr: DsrRunner, spec: Path) -> None:
    dsr("plan", spec, "--detailed-exitcode", check=0)


def test_out_of_band_drift_is_repaired(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    volume, stopped, removed, steady = (f"{prefix}-{n}" for n in ("data", "stopped", "gone", "ok"))
    spec = write(
        {
            "volumes": {volume: {}},
            "containers": {
                stopped: sleeper(busybox_image),
                removed: sleeper(busybox_image),
                steady: sleeper(busybox_image, mounts=[f"{volume}:/data"]),
            },
        }
    )
    dsr("apply", spec, check=True)
    steady_id = inspect(docker_client, steady)["Id"]
    stopped_id = inspect(docker_client, stopped)["Id"]
    removed_id = inspect(docker_client, removed)["Id"]

    # A managed volume removed while no container uses it; a container stopped; another
    # killed and removed.
    docker_client.containers.get(steady).remove(force=True)
    docker_client.volumes.get(volume).remove()
    docker_client.containers.get(stopped).stop(timeout=1)
    gone = docker_client.containers.get(removed)
    gone.kill()
    gone.remove()

    changes = plan_of(dsr, spec)
    assert {r: c["action"] for r, c in changes.items()} == {
        f"volume:{volume}": "create",
        f"container:{stopped}": "start",
        f"container:{removed}": "create",
        f"container:{steady}": "create",
    }
    assert changes[f"volume:{volume}"]["reason"] == "it does not exist"
    assert "exited" in changes[f"container:{stopped}"]["reason"]
    assert changes[f"container:{stopped}"]["risk"] == "none"
    assert changes[f"container:{steady}"]["depends_on"] == [f"volume:{volume}"]
    dsr("plan", spec, "--detailed-exitcode", check=2)

    dsr("apply", spec, check=True)

    labels = docker_client.volumes.get(volume).attrs["Labels"]
    assert labels["dsr.managed"] == "true" and labels["dsr.project"] == prefix
    assert inspect(docker_client, stopped)["Id"] == stopped_id, "a start must not recreate"
    assert inspect(docker_client, removed)["Id"] != removed_id
    assert inspect(docker_client, steady)["Id"] != steady_id
    for name in (stopped, removed, steady):
        assert inspect(docker_client, name)["State"]["Status"] == "running"
    assert mounts_by_target(inspect(docker_client, steady))["/data"]["Name"] == volume
    assert_converged(dsr, spec)


def test_a_mount_mode_change_replaces_the_container_and_keeps_the_data(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    volume, name = f"{prefix}-data", f"{prefix}-reader"
    sections = {"volumes": {volume: {}}, "containers": {name: sleeper(busybox_image)}}
    sections["containers"][name]["mounts"] = [f"{volume}:/data"]
    spec = write(sections)
    dsr("apply", spec, check=True)
    before = inspect(docker_client, name)
    assert mounts_by_target(before)["/data"]["RW"] is True
    exec_out(docker_client, name, "sh", "-c", "echo kept > /data/file")

    sections["containers"][name]["mounts"] = [f"{volume}:/data:ro"]
    write(sections)
    changes = plan_of(dsr, spec)
    assert list(changes) == [f"container:{name}"]
    change = changes[f"container:{name}"]
    assert change["action"] == "replace"
    assert change["risk"] == "restart"
    assert "/data was read-write, spec says read-only" in change["reason"], change

    dsr("apply", spec, check=True)

    after = inspect(docker_client, name)
    assert after["Id"] != before["Id"]
    assert after["State"]["Status"] == "running"
    mount = mounts_by_target(after)["/data"]
    assert (mount["Name"], mount["RW"]) == (volume, False)
    assert exec_out(docker_client, name, "cat", "/data/file") == "kept\n"
    code, _ = docker_client.containers.get(name).exec_run(["touch", "/data/new"])
    assert code != 0, "a read-only mount took a write"
    assert_converged(dsr, spec)


def test_a_command_or_env_change_replaces_and_says_why(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    by_env, by_command, untouched = (f"{prefix}-{n}" for n in ("env", "cmd", "same"))
    sections: dict[str, Any] = {
        "containers": {
            by_env: sleeper(busybox_image, env={"COLOR": "blue", "SIZE": "1"}),
            by_command: sleeper(busybox_image),
            untouched: sleeper(busybox_image),
        }
    }
    spec = write(sections)
    dsr("apply", spec, check=True)
    untouched_id = inspect(docker_client, untouched)["Id"]

    sections["containers"][by_env]["env"] = {"COLOR": "green", "SIZE": "1"}
    new_command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3599 & wait"]
    sections["containers"][by_command]["command"] = new_command
    write(sections)
    changes = plan_of(dsr, spec)

    assert set(changes) == {f"container:{by_env}", f"container:{by_command}"}
    env_change, command_change = changes[f"container:{by_env}"], changes[f"container:{by_command}"]
    for change in (env_change, command_change):
        assert (change["action"], change["risk"]) == ("replace", "restart")
        # Both were running: what their writable layers hold is said.
        assert "writable layer" in change["reason"], change
    assert "env COLOR changed" in env_change["reason"]
    assert "SIZE" not in env_change["reason"]
    assert "command was" in command_change["reason"] and "3599" in command_change["reason"]

    dsr("apply", spec, check=True)

    assert "COLOR=green" in inspect(docker_client, by_env)["Config"]["Env"]
    assert inspect(docker_client, by_command)["Config"]["Cmd"] == new_command
    assert inspect(docker_client, untouched)["Id"] == untouched_id
    assert_converged(dsr, spec)


def test_a_replace_reports_what_the_writable_layer_holds(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    name = f"{prefix}-layer"
    sections: dict[str, Any] = {"containers": {name: sleeper(busybox_image, env={"V": "1"})}}
    spec = write(sections)
    dsr("apply", spec, check=True)
    exec_out(docker_client, name, "sh", "-c", "head -c 300000 /dev/urandom > /tmp/blob")

    sections["containers"][name]["env"] = {"V": "2"}
    write(sections)
    change = plan_of(dsr, spec)[f"container:{name}"]

    assert change["action"] == "replace"
    assert re.search(r"writable layer holds 29\d\.\d KiB", change["reason"]), change


def test_an_anonymous_volume_is_carried_over_on_replace(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    name = f"{prefix}-anon"
    sections: dict[str, Any] = {
        "containers": {name: sleeper(busybox_image, env={"V": "1"}, mounts=["/cache"])}
    }
    spec = write(sections)
    dsr("apply", spec, check=True)
    before = inspect(docker_client, name)
    anonymous = mounts_by_target(before)["/cache"]["Name"]
    assert ANONYMOUS.fullmatch(anonymous)
    exec_out(docker_client, name, "sh", "-c", "echo precious > /cache/marker")

    sections["containers"][name]["env"] = {"V": "2"}
    write(sections)
    assert plan_of(dsr, spec)[f"container:{name}"]["action"] == "replace"
    dsr("apply", spec, check=True)

    after = inspect(docker_client, name)
    assert after["Id"] != before["Id"]
    assert "V=2" in after["Config"]["Env"]
    assert mounts_by_target(after)["/cache"]["Name"] == anonymous
    assert exec_out(docker_client, name, "cat", "/cache/marker") == "precious\n"
    assert_converged(dsr, spec)


class _Events(list[dict[str, Any]]):
    """Container events of the engine as they happen, read by a thread until closed."""

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__()
        # The request is made here: the engine sends every event from now on.
        self._stream = client.events(decode=True, filters={"type": "container"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.append(event)
        except Exception:  # closed under it: done
            pass

    def close(self) -> None:
        self._stream.close()
        self._reader.join(timeout=10)


def watch_events(client: docker.DockerClient) -> _Events:
    return _Events(client)


def test_replacing_a_volume_container_replaces_its_users_after_it(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    tools, vc, other = f"{prefix}-tools", f"{prefix}-vc", f"{prefix}-other"
    users = [f"{prefix}-user{i}" for i in range(3)]
    sections: dict[str, Any] = {
        "volumes": {tools: {}},
        "volume_containers": {vc: {"mounts": [f"{tools}:/tools", "/cache"]}},
        "containers": {
            **{u: sleeper(busybox_image, volumes_from=[vc]) for u in users},
            other: sleeper(busybox_image, mounts=[f"{tools}:/tools"]),
        },
    }
    spec = write(sections)
    dsr("apply", spec, check=True)
    cache = mounts_by_target(inspect(docker_client, vc))["/cache"]["Name"]
    exec_out(docker_client, users[0], "sh", "-c", "echo shared > /cache/marker")
    other_id = inspect(docker_client, other)["Id"]
    user_ids = {u: inspect(docker_client, u)["Id"] for u in users}

    sections["volume_containers"][vc]["mounts"] = [f"{tools}:/tools:ro", "/cache", "/extra"]
    write(sections)
    result = dsr("plan", spec, "--format", "json", check=True)
    planned = plan_json(result)
    order = [c["resource"] for c in planned["changes"]]
    changes = changes_by_resource(planned)

    assert set(order) == {f"volume_container:{vc}", *(f"container:{u}" for u in users)}
    vc_change = changes[f"volume_container:{vc}"]
    assert (vc_change["action"], vc_change["risk"]) == ("replace", "restart")
    assert "/tools was read-write, spec says read-only" in vc_change["reason"]
    assert "/extra is new" in vc_change["reason"]
    for user in users:
        change = changes[f"container:{user}"]
        assert (change["action"], change["risk"]) == ("replace", "restart")
        assert f"volume_container:{vc}" in change["depends_on"]
        assert f"{vc} is replaced" in change["reason"], change
        assert order.index(f"volume_container:{vc}") < order.index(f"container:{user}")

    # The events are read live, from before the apply: asked for afterwards (since/until),
    # they come from the engine's last 256 events, which a busy shared engine overwrites.
    events = watch_events(docker_client)
    dsr("apply", spec, check=True)

    def named() -> list[tuple[int, str, str]]:
        return [
            (e["timeNano"], e["Actor"]["Attributes"].get("name", ""), e["Action"])
            for e in list(events)
            if e.get("Type") == "container"
        ]

    def users_created() -> list[int]:
        return [t for t, n, a in named() if n.startswith(f"{prefix}-user") and a == "create"]

    deadline = time.monotonic() + 60  # the apply is done: its events are on their way
    while len(users_created()) < len(users) and time.monotonic() < deadline:
        time.sleep(0.05)
    events.close()
    # In dependency order: the volume container was swapped before any user was created.
    vc_done = max(t for t, n, a in named() if n.startswith(vc) and a.startswith("rename"))
    assert len(users_created()) == len(users), named()
    assert vc_done < min(users_created())

    new_vc = mounts_by_target(inspect(docker_client, vc))
    assert new_vc["/cache"]["Name"] == cache, "the anonymous volume was not carried over"
    for user in users:
        attrs = inspect(docker_client, user)
        assert attrs["Id"] != user_ids[user]
        assert attrs["HostConfig"]["VolumesFrom"] == [vc]
        mounts = mounts_by_target(attrs)
        assert set(mounts) == {"/tools", "/cache", "/extra"}
        assert mounts["/tools"]["RW"] is False and mounts["/tools"]["Name"] == tools
        assert mounts["/extra"]["Name"] == new_vc["/extra"]["Name"]
        assert mounts["/cache"]["Name"] == cache
        assert exec_out(docker_client, user, "cat", "/cache/marker") == "shared\n"
    assert inspect(docker_client, other)["Id"] == other_id
    assert_converged(dsr, spec)


def test_a_container_that_left_the_spec_is_deleted_unless_its_layer_holds_data(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    prefix: str,
    busybox_image: str,
) -> None:
    clean, dirty, kept = (f"{prefix}-{n}" for n in ("clean", "dirty", "kept"))
    volume = f"{prefix}-data"
    spec = write(
        {
            "volumes": {volume: {}},
            "containers": {
                clean: sleeper(busybox_image, mounts=[f"{volume}:/data", "/anon"]),
                dirty: sleeper(busybox_image),
                kept: sleeper(busybox_image),
            },
        }
    )
    dsr("apply", spec, check=True)
    exec_out(docker_client, clean, "sh", "-c", "echo in-volume > /data/file")
    anonymous = mounts_by_target(inspect(docker_client, clean))["/anon"]["Name"]
    exec_out(docker_client, dirty, "sh", "-c", "echo only-copy > /tmp/x")
    dirty_id = inspect(docker_client, dirty)["Id"]

    write({"volumes": {volume: {}}, "containers": {kept: sleeper(busybox_image)}})
    changes = plan_of(dsr, spec)

    assert set(changes) == {f"container:{clean}", f"container:{dirty}"}
    deleted, blocked = changes[f"container:{clean}"], changes[f"container:{dirty}"]
    assert (deleted["action"], deleted["risk"]) == ("delete", "none")
    assert "left the spec" in deleted["reason"]
    assert "writable layer is empty" in deleted["reason"], deleted
    assert (blocked["action"], blocked["risk"]) == ("blocked", "data-loss")
    assert "writable layer holds" in blocked["reason"], blocked

    result = dsr("apply", spec, check=3)

    assert "blocked" in result.stdout
    with pytest.raises(NotFound):
        docker_client.containers.get(clean)
    # Its volumes outlive it: the named one and the anonymous one.
    docker_client.volumes.get(volume)
    docker_client.volumes.get(anonymous)
    after = inspect(docker_client, dirty)
    assert (after["Id"], after["State"]["Status"]) == (dirty_id, "running")
    assert exec_out(docker_client, dirty, "cat", "/tmp/x") == "only-copy\n"
    assert inspect(docker_client, kept)["State"]["Status"] == "running"
    # The block stays until the user acts; nothing else is left to do.
    assert set(plan_of(dsr, spec)) == {f"container:{dirty}"}
