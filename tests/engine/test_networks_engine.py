"""Networks against the engine: made, joined with aliases (services find each other by
name), reclaimed when they leave the spec; a name taken by hand stays blocked unless
adopted."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import NotFound

from reconciler.statedir import StateDir

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def spec_text(prefix: str, image: str, net: str) -> str:
    return f"""
        version: 1
        networks:
          {net}: {{}}
        containers:
          {prefix}-db:
            image: {image}
            command: [sh, -c, "mkdir -p /w && echo pong > /w/ping && exec httpd -f -p 80 -h /w"]
            init: true
            mounts: [{{type: tmpfs, target: /w}}]
            networks:
              {net}: {{aliases: [db]}}
          {prefix}-app:
            image: {image}
            command: [sh, -c, "exec sleep 3600"]
            init: true
            networks: [{net}]
        """


def reach(client: docker.DockerClient, container: str, host: str) -> str:
    for _ in range(30):
        # The test image's static busybox wget cannot resolve names; nc can.
        result = client.containers.get(container).exec_run(
            ["sh", "-c", f"printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80"]
        )
        body = bytes(result.output).decode(errors="replace")
        if result.exit_code == 0 and "\r\n\r\n" in body:
            return body.split("\r\n\r\n", 1)[1]
        time.sleep(0.2)
    return ""


def test_containers_find_each_other_by_alias_and_networks_are_reclaimed(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    net = f"{prefix}-net"
    spec = tmp_spec(spec_text(prefix, busybox_image, net))
    try:
        dsr("apply", spec.parent, check=0)
        network = docker_client.networks.get(net)
        assert network.attrs["Labels"]["dsr.managed"] == "true"
        assert reach(docker_client, f"{prefix}-app", "db") == "pong\n"
        assert reach(docker_client, f"{prefix}-app", f"{prefix}-db") == "pong\n"
        dsr("plan", spec.parent, "--detailed-exitcode", check=0)

        # Disconnected behind dsr's back: drift, and a replace joins it again.
        docker_client.networks.get(net).disconnect(f"{prefix}-app")
        plan = json.loads(dsr("plan", spec.parent, "--format", "json", check=0).stdout)
        assert [(c["resource"], c["reason_code"]) for c in plan["changes"]] == [
            (f"container:{prefix}-app", "networks-drifted")
        ]
        dsr("apply", spec.parent, check=0)
        assert reach(docker_client, f"{prefix}-app", "db") == "pong\n"

        # The network and its users leave the spec: the network goes after them.
        tmp_spec(f"version: 1\nvolumes:\n  {prefix}-other: {{}}\n")
        plan = json.loads(dsr("plan", spec.parent, "--format", "json", check=0).stdout)
        deleted = {c["resource"] for c in plan["changes"] if c["action"] == "delete"}
        assert f"network:{net}" in deleted
        dsr("apply", spec.parent, check=0)
        try:
            docker_client.networks.get(net)
            raise AssertionError("the network that left the spec is still there")
        except NotFound:
            pass
    finally:
        for leftover in docker_client.networks.list(names=[net]):
            leftover.reload()
            for container in leftover.containers:
                if container.name.startswith(prefix):
                    container.remove(force=True)
            leftover.remove()


def test_a_network_made_by_hand_is_blocked_unless_adopted(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    dsr_state_dir: Path,
) -> None:
    net = f"{prefix}-net"
    hand = docker_client.networks.create(net, driver="bridge", labels=labels)
    try:
        spec = tmp_spec(f"version: 1\nnetworks:\n  {net}: {{}}\n")
        plan = json.loads(dsr("plan", spec.parent, "--format", "json", check=0).stdout)
        assert [(c["action"], c["reason_code"]) for c in plan["changes"]] == [
            ("blocked", "unmanaged-clash")
        ]
        tmp_spec(f"version: 1\nnetworks:\n  {net}: {{adopt: true}}\n")
        plan = json.loads(dsr("plan", spec.parent, "--format", "json", check=0).stdout)
        assert [(c["action"], c["reason_code"]) for c in plan["changes"]] == [("adopt", "adopt")]
        dsr("apply", spec.parent, check=0)
        record = StateDir(str(dsr_state_dir)).read_record(prefix)
        assert record["adopted"]["network"] == {net: hand.id}
        dsr("plan", spec.parent, "--detailed-exitcode", check=0)
        # Left the spec: a saved plan deletes it, the record (not labels) saying it is
        # the project's own.
        tmp_spec(f"version: 1\nvolumes:\n  {prefix}-keep: {{}}\n")
        saved = spec.parent.parent / "saved-plan.json"
        dsr("plan", spec.parent, "--out", saved, check=0)
        public = json.loads(saved.read_text())
        assert ("delete", f"network:{net}") in [
            (c["action"], c["resource"]) for c in public["changes"]
        ]
        dsr("apply", saved, check=0)
        names = [n.id for n in docker_client.networks.list(names=[net])]
        assert hand.id not in names, "the adopted network was not deleted by the saved plan"
    finally:
        with contextlib.suppress(NotFound):
            hand.remove()
