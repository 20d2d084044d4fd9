"""What a real host showed (issue 18): an empty spec set, a replace that needs its port or
name free first, drift ``docker update`` makes, and the exit codes that tell them apart."""

from __future__ import annotations

import json
import socket
import textwrap

import docker
from conftest import DsrRunner, SpecWriter


def test_apply_refuses_an_empty_spec_unless_allowed(
    dsr: DsrRunner,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(f"version: 1\nvolumes:\n  {prefix}-a: {{reclaim: delete}}\n")
    dsr("apply", spec.parent, check=0)
    spec.write_text("version: 1\n")

    refused = dsr("apply", spec.parent, check=1)
    assert "--allow-empty" in refused.stderr
    assert "will be deleted" in refused.stdout  # the plan it refused is shown
    docker_client.volumes.get(f"{prefix}-a")  # nothing was changed

    # No spec file at all is an empty spec set too: the folder names the project.
    spec.unlink()
    dsr("apply", spec.parent, check=1)
    docker_client.volumes.get(f"{prefix}-a")
    dsr("apply", "--allow-empty", spec.parent, check=0)
    assert not docker_client.volumes.list(filters={"name": f"{prefix}-a"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_container_publishing_a_port_is_replaced_then_renamed(
    dsr: DsrRunner,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    port = free_port()

    def spec(name: str, seconds: str) -> str:
        return f"""
            version: 1
            containers:
              {name}:
                image: {busybox_image}
                command: [sleep, "{seconds}"]
                init: true
                ports: ["127.0.0.1:{port}:80"]
            """

    web, renamed = f"{prefix}-web", f"{prefix}-site"
    path = tmp_spec(spec(web, "3600"))
    dsr("apply", path.parent, check=0)

    path.write_text(textwrap.dedent(spec(web, "3601")))
    replaced = dsr("apply", path.parent, check=0)
    assert "order:  create-then-delete; downtime: from the old container's stop" in (
        replaced.stdout
    )
    assert f"rename-container {web}_dsr_new -> {web}" in replaced.stdout

    path.write_text(textwrap.dedent(spec(renamed, "3601")))
    plan = json.loads(dsr("plan", "--format", "json", path.parent, check=0).stdout)
    created = next(c for c in plan["changes"] if c["resource"] == f"container:{renamed}")
    assert created["depends_on"] == [f"container:{web}"]
    assert created["order"] == "delete-then-create"
    assert f"host port {port} is free only once container:{web} stops" in created["downtime"]
    assert [o["op"] for o in created["operations"]] == ["create-container", "start-container"]
    dsr("apply", path.parent, check=0)

    left = docker_client.containers.list(all=True, filters={"name": prefix})
    assert [(c.name, c.status) for c in left] == [(renamed, "running")]
    assert left[0].ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


def test_a_restart_policy_changed_by_hand_is_updated_in_place(
    dsr: DsrRunner,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    web, port = f"{prefix}-web", free_port()

    def spec(restart: str) -> str:
        return f"""
            version: 1
            containers:
              {web}:
                image: {busybox_image}
                command: [sleep, "3600"]
                init: true
                restart: {restart}
                env: {{TZ: UTC, MODE: "0755"}}
                working_dir: /tmp
                stop_signal: SIGTERM
                stop_timeout: 3
                ports: ["127.0.0.1::80", "{port}:81/udp"]
            """

    path = tmp_spec(spec("always"))
    dsr("apply", path.parent, check=0)
    # Every live value Docker reports for what the spec sets matches: nothing to do.
    dsr("plan", "--detailed-exitcode", path.parent, check=0)

    container = docker_client.containers.get(web)
    started = container.attrs["State"]["StartedAt"]
    container.update(restart_policy={"Name": "no"})  # docker update --restart no
    plan = json.loads(dsr("plan", "--format", "json", path.parent, check=0).stdout)
    (change,) = plan["changes"]
    assert (change["action"], change["reason_code"], change["risk"]) == (
        "update",
        "restart-drifted",
        "none",
    )
    assert "restart policy is no on the engine, spec says always" in change["reason"]
    assert change["operations"] == [
        {"op": "update-container", "target": web, "to": "restart always"}
    ]
    dsr("plan", "--detailed-exitcode", path.parent, check=2)
    dsr("apply", path.parent, check=0)
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert container.attrs["State"]["StartedAt"] == started  # not restarted
    dsr("plan", "--detailed-exitcode", path.parent, check=0)

    # The spec changing only the restart policy is an update in place too, and stays done
    # although the container's labels still hash the old policy.
    path.write_text(textwrap.dedent(spec("unless-stopped")))
    plan = json.loads(dsr("plan", "--format", "json", path.parent, check=0).stdout)
    assert [(c["action"], c["reason_code"]) for c in plan["changes"]] == [
        ("update", "config-changed")
    ]
    dsr("apply", path.parent, check=0)
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert (container.id, container.attrs["State"]["StartedAt"]) == (container.id, started)
    dsr("plan", "--detailed-exitcode", path.parent, check=0)
