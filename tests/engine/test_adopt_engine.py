"""Adoption against the engine: objects made by hand (``docker run -v``) are taken over
with ``adopt: true`` without moving a byte, refused without it, and an adopted volume that
leaves the spec follows its ``reclaim``."""

from __future__ import annotations

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

TREE_SUM = 'cd /v && find . | sort | while read -r f; do [ -f "$f" ] && sha256sum "$f"; done'


def tree_sum(client: docker.DockerClient, image: str, volume: str, prefix: str) -> str:
    """Every file of ``volume`` with its sha256, read from a throwaway container."""
    out = client.containers.run(
        image,
        ["sh", "-c", TREE_SUM + "; ls -lnR /v"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    return bytes(out).decode()


def plan_json(dsr: DsrRunner, spec: Path) -> dict[str, object]:
    result = dsr("plan", spec.parent, "--format", "json", check=0)
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_hand_made_volume_and_container_are_adopted_without_moving_data(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    data, app = f"{prefix}-data", f"{prefix}-app"
    docker_client.volumes.create(data, labels=labels)
    # docker run -v DATA:/data -v /anon: a named volume and an anonymous one, with files.
    label_args = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
    subprocess.run(
        ["docker", "run", "-d", "--name", app, "--init", "--network", "none", *label_args,
         "-v", f"{data}:/data", "-v", "/anon", busybox_image, "sh", "-c",
         "echo db > /data/f && mkdir -p /data/d && echo x > /data/d/g "
         "&& echo anon > /anon/a && exec sleep 3600"],
        check=True, capture_output=True,
    )  # fmt: skip
    for _ in range(50):  # the files are written once the shell ran
        if docker_client.containers.get(app).exec_run(["cat", "/anon/a"]).exit_code == 0:
            break
        time.sleep(0.1)
    anon = next(m["Name"] for m in docker_client.api.inspect_container(app)["Mounts"]
                if m["Destination"] == "/anon")  # fmt: skip
    before = tree_sum(docker_client, busybox_image, data, prefix)
    spec_text = f"""
        version: 1
        volumes:
          {data}: {{ADOPT reclaim: delete}}
        containers:
          {app}:
            image: {busybox_image}
            command: [sh, -c, "exec sleep 3600"]
            init: true
            ADOPT_CONTAINER
            mounts: ["{data}:/data", "/anon"]
        """
    refused = tmp_spec(spec_text.replace("ADOPT ", "").replace("ADOPT_CONTAINER", ""))
    plan = plan_json(dsr, refused)
    assert [(c["resource"], c["action"], c["reason_code"]) for c in plan["changes"]] == [  # type: ignore[index, union-attr]
        (f"volume:{data}", "blocked", "unmanaged-clash"),
        (f"container:{app}", "blocked", "unmanaged-clash"),
    ]
    spec = tmp_spec(
        spec_text.replace("ADOPT ", "adopt: true, ").replace("ADOPT_CONTAINER", "adopt: true")
    )
    plan = plan_json(dsr, spec)
    changes = plan["changes"]
    assert [(c["resource"], c["action"], c["risk"]) for c in changes] == [  # type: ignore[union-attr, index]
        (f"volume:{data}", "adopt", "none"),
        (f"container:{app}", "adopt", "restart"),
    ]
    assert plan["summary"]["adopt"] == 2  # type: ignore[index]
    text = dsr("plan", spec.parent, check=0).stdout
    assert f"<= volume:{data} will be adopted" in text
    assert "2 to adopt" in text
    dsr("apply", spec.parent, check=0)

    live = docker_client.api.inspect_container(app)
    assert live["Config"]["Labels"]["dsr.managed"] == "true"
    assert live["State"]["Running"]
    mounts = {m["Destination"]: m["Name"] for m in live["Mounts"]}
    assert mounts == {"/data": data, "/anon": anon}
    assert tree_sum(docker_client, busybox_image, data, prefix) == before
    assert docker_client.containers.get(app).exec_run(["cat", "/anon/a"]).output == b"anon\n"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)

    # The adopted volume leaves the spec (with its container): its reclaim (delete) applies.
    tmp_spec(f"version: 1\nvolumes:\n  {prefix}-other: {{}}\n")
    plan = plan_json(dsr, spec)
    assert {(c["resource"], c["action"]) for c in plan["changes"]} == {  # type: ignore[union-attr, index]
        (f"container:{app}", "delete"),
        (f"volume:{data}", "delete"),
        (f"volume:{prefix}-other", "create"),
    }
    dsr("apply", spec.parent, check=0)
    try:
        docker_client.volumes.get(data)
        raise AssertionError("the adopted volume was not reclaimed")
    except NotFound:
        pass


def test_a_volume_made_again_behind_dsrs_back_is_not_the_adopted_one(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    dsr_state_dir: Path,
) -> None:
    data = f"{prefix}-data"
    docker_client.volumes.create(data, labels=labels)
    spec = tmp_spec(f"version: 1\nvolumes:\n  {data}: {{adopt: true}}\n")
    dsr("apply", spec.parent, check=0)
    record = StateDir(str(dsr_state_dir)).read_record(prefix)
    assert data in record["adopted"]["volume"]
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)
    docker_client.volumes.get(data).remove()
    time.sleep(1.1)  # CreatedAt has whole seconds
    docker_client.volumes.create(data, labels=labels)
    plan = plan_json(dsr, spec)
    assert [(c["resource"], c["action"]) for c in plan["changes"]] == [  # type: ignore[union-attr, index]
        (f"volume:{data}", "adopt")
    ]
    # Without adopt, the new one is somebody else's.
    tmp_spec(f"version: 1\nvolumes:\n  {data}: {{}}\n")
    plan = plan_json(dsr, spec)
    assert [(c["action"], c["reason_code"]) for c in plan["changes"]] == [  # type: ignore[union-attr, index]
        ("blocked", "unmanaged-clash")
    ]


def test_an_adopted_volume_stays_adopted_when_a_file_is_made_at_its_top(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    """Docker's CreatedAt of a local volume is its data folder's mtime: a database making
    its pid file at the top moves it. The adoption must not hang on it."""
    data = f"{prefix}-data"
    docker_client.volumes.create(data, labels=labels)
    created = docker_client.api.inspect_volume(data)["CreatedAt"]
    spec = tmp_spec(f"version: 1\nvolumes:\n  {data}: {{adopt: true, reclaim: delete}}\n")
    dsr("apply", spec.parent, check=0)
    time.sleep(1.1)  # CreatedAt has whole seconds
    docker_client.containers.run(
        busybox_image,
        ["sh", "-c", "echo 1 > /v/postmaster.pid"],
        volumes={data: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        labels=labels,
        remove=True,
    )
    assert docker_client.api.inspect_volume(data)["CreatedAt"] != created
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)
    # Still dsr's: leaving the spec, it follows its reclaim.
    tmp_spec(f"version: 1\nvolumes:\n  {prefix}-other: {{}}\n")
    plan = plan_json(dsr, spec)
    assert (f"volume:{data}", "delete") in {(c["resource"], c["action"]) for c in plan["changes"]}  # type: ignore[union-attr, index]
    dsr("apply", spec.parent, check=0)
    try:
        docker_client.volumes.get(data)
        raise AssertionError("the adopted volume was not reclaimed")
    except NotFound:
        pass
