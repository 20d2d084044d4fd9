"""What dsr must never do: take over what it does not manage, act on an invalid spec, apply
a stale saved plan, or touch another project's objects. Plus the plan's exit codes and
markdown form."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import NotFound
from specgen import (
    SLEEP_COMMAND,
    changes_by_resource,
    exec_out,
    inspect,
    plan_json,
    prefixed_containers,
    prefixed_volumes,
    write_spec,
)

# The fixtures' types live in conftest.py, which tests do not import.
DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def sleeper(image: str, **extra: Any) -> dict[str, Any]:
    return {"image": image, "command": list(SLEEP_COMMAND), **extra}


def document(project: str, **sections: Any) -> dict[str, Any]:
    return {"version": 1, "project": project, **sections}


def test_unmanaged_objects_are_blocked_and_untouched_while_the_rest_applies(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    labels: dict[str, str],
) -> None:
    theirs_volume, theirs_container = f"{prefix}-theirs-data", f"{prefix}-theirs"
    mine_volume, mine_container = f"{prefix}-mine-data", f"{prefix}-mine"
    user = f"{prefix}-user"  # a dsr container that mounts the unmanaged volume
    # Made by someone else: the test's labels, no dsr.managed; with data in the volume.
    volume = docker_client.volumes.create(theirs_volume, labels=labels)
    docker_client.containers.run(
        busybox_image,
        list(SLEEP_COMMAND),
        name=theirs_container,
        labels=labels,
        volumes={theirs_volume: {"bind": "/data", "mode": "rw"}},
        network_mode="none",
        detach=True,
    )
    exec_out(docker_client, theirs_container, "sh", "-c", "echo theirs > /data/file")
    before = inspect(docker_client, theirs_container)
    volume_before = docker_client.api.inspect_volume(volume.name)

    spec = tmp_spec(
        yaml.safe_dump(
            document(
                prefix,
                volumes={theirs_volume: {}, mine_volume: {}},
                containers={
                    theirs_container: sleeper(busybox_image, env={"X": "1"}),
                    mine_container: sleeper(busybox_image, mounts=[f"{mine_volume}:/data"]),
                    user: sleeper(busybox_image, mounts=[f"{theirs_volume}:/data"]),
                },
            )
        )
    )
    planned = plan_json(dsr("plan", spec, "--format", "json", check=True))
    changes = changes_by_resource(planned)

    for resource in (f"volume:{theirs_volume}", f"container:{theirs_container}"):
        assert changes[resource]["action"] == "blocked", changes[resource]
        assert "dsr does not manage it" in changes[resource]["reason"], changes[resource]
    assert changes[f"container:{user}"]["action"] == "blocked"
    assert f"volume:{theirs_volume}" in changes[f"container:{user}"]["reason"]
    assert changes[f"volume:{mine_volume}"]["action"] == "create"
    assert changes[f"container:{mine_container}"]["action"] == "create"
    assert planned["summary"]["blocked"] == 3

    result = dsr("apply", spec, check=3)

    assert "3 blocked" in result.stdout
    after = inspect(docker_client, theirs_container)
    assert after["Id"] == before["Id"]
    assert after["State"]["Status"] == "running"
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["Config"]["Labels"] == before["Config"]["Labels"]
    assert "X=1" not in after["Config"]["Env"]
    assert docker_client.api.inspect_volume(theirs_volume) == volume_before
    assert exec_out(docker_client, theirs_container, "cat", "/data/file") == "theirs\n"
    # The independent changes went through.
    assert docker_client.volumes.get(mine_volume).attrs["Labels"]["dsr.managed"] == "true"
    assert inspect(docker_client, mine_container)["State"]["Status"] == "running"
    with pytest.raises(NotFound):
        docker_client.containers.get(user)


def test_an_invalid_file_in_a_spec_set_changes_nothing(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    cleanup: Any,
) -> None:
    good = tmp_spec(
        yaml.safe_dump(
            document(
                prefix,
                volumes={f"{prefix}-data": {}},
                volume_containers={f"{prefix}-vc": {"mounts": ["/cache"]}},
                containers={f"{prefix}-web": sleeper(busybox_image)},
            )
        ),
        name="a-good.yaml",
    )
    tmp_spec(
        f"""
        version: 1
        project: {prefix}
        containers:
          {prefix}-bad:
            image: {busybox_image}
            mounts:
              - {prefix}-missing-volume:/data
        """,
        name="b-bad.yaml",
    )

    result = dsr("apply", good.parent, check=1)

    assert "b-bad.yaml:7" in result.stdout + result.stderr
    assert f"{prefix}-missing-volume" in result.stdout + result.stderr
    assert prefixed_containers(docker_client, prefix) == []
    assert prefixed_volumes(docker_client, prefix) == []
    assert cleanup.owned().is_empty
    dsr("plan", good.parent, check=1)
    assert cleanup.owned().is_empty


def test_a_saved_plan_applies_only_while_the_engine_has_not_moved(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    prefix: str,
    busybox_image: str,
) -> None:
    web, data, extra = f"{prefix}-web", f"{prefix}-data", f"{prefix}-extra"
    sections: dict[str, Any] = {
        "volumes": {data: {}},
        "containers": {web: sleeper(busybox_image, mounts=[f"{data}:/data"])},
    }
    spec = tmp_spec(yaml.safe_dump(document(prefix, **sections)))
    dsr("apply", spec, check=True)

    # Saved, then applied with nothing moved: fine.
    sections["volumes"][extra] = {}
    tmp_spec(yaml.safe_dump(document(prefix, **sections)))
    saved = tmp_path / "fresh.plan.json"
    dsr("plan", spec, "--out", saved, check=True)
    # The application writes its data meanwhile; that is not the engine moving.
    exec_out(docker_client, web, "sh", "-c", "sleep 1.1; echo row > /data/table")
    public = json.loads(saved.read_text(encoding="utf-8"))
    assert public["format_version"] == 1
    assert [c["resource"] for c in public["changes"]] == [f"volume:{extra}"]
    dsr("apply", saved, check=True)
    assert docker_client.volumes.get(extra).attrs["Labels"]["dsr.project"] == prefix

    # Saved, then the engine moved (a managed container stopped): refused, nothing done.
    sections["volumes"][f"{prefix}-later"] = {}
    tmp_spec(yaml.safe_dump(document(prefix, **sections)))
    stale = tmp_path / "stale.plan.json"
    dsr("plan", spec, "--out", stale, check=True)
    docker_client.containers.get(web).stop(timeout=1)

    result = dsr("apply", stale, check=1)

    message = result.stdout + result.stderr
    assert "stale" in message
    assert f"container:{web} changed" in message, message
    with pytest.raises(NotFound):
        docker_client.volumes.get(f"{prefix}-later")
    assert inspect(docker_client, web)["State"]["Status"] == "exited"
    # A plan made now sees the stopped container and converges.
    dsr("apply", spec, check=True)
    assert inspect(docker_client, web)["State"]["Status"] == "running"
    dsr("plan", spec, "--detailed-exitcode", check=0)


def test_plan_exit_codes_and_markdown(
    dsr: DsrRunner, tmp_spec: SpecWriter, prefix: str, busybox_image: str
) -> None:
    web = f"{prefix}-web"
    spec = tmp_spec(
        yaml.safe_dump(
            document(
                prefix, volumes={f"{prefix}-data": {}}, containers={web: sleeper(busybox_image)}
            )
        )
    )
    assert dsr("plan", spec, check=0).stdout.startswith("dsr will perform")
    dsr("plan", spec, "--detailed-exitcode", check=2)
    markdown = dsr("plan", spec, "--format", "markdown", "--detailed-exitcode", check=2).stdout
    lines = markdown.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| "))
    assert re.fullmatch(r"\|[-|: ]+\|", lines[header + 1]), markdown
    rows = [line for line in lines[header + 2 :] if line.startswith("|")]
    assert len(rows) == 2
    assert any(f"`container:{web}`" in row and "create" in row for row in rows)

    dsr("apply", spec, check=True)

    dsr("plan", spec, "--detailed-exitcode", check=0)
    assert "No changes" in dsr("plan", spec, "--format", "markdown", check=0).stdout
    assert plan_json(dsr("plan", spec, "--format", "json", check=0))["changes"] == []


def test_projects_side_by_side_never_touch_each_other(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    prefix: str,
    busybox_image: str,
) -> None:
    def sections(project: str) -> dict[str, Any]:
        return {
            "volumes": {f"{project}-data": {}},
            "volume_containers": {f"{project}-vc": {"mounts": ["/cache"]}},
            "containers": {
                f"{project}-web": sleeper(
                    busybox_image,
                    mounts=[f"{project}-data:/data"],
                    volumes_from=[f"{project}-vc"],
                ),
            },
        }

    one, two = f"{prefix}-one", f"{prefix}-two"
    spec_one = write_spec(tmp_path / "one" / "dsr.yaml", document(one, **sections(one)))
    spec_two = write_spec(tmp_path / "two" / "dsr.yaml", document(two, **sections(two)))
    dsr("apply", spec_one, check=True)
    dsr("apply", spec_two, check=True)
    two_ids = {c["Id"] for c in prefixed_containers(docker_client, two)}
    assert len(two_ids) == 2

    # Project one drops every resource; its plan never mentions project two's objects.
    write_spec(spec_one, document(one))
    planned = plan_json(dsr("plan", spec_one, "--format", "json", check=True))
    assert {c["resource"]: c["action"] for c in planned["changes"]} == {
        f"container:{one}-web": "delete",
        f"volume_container:{one}-vc": "delete",
    }
    assert planned["orphans"] == [f"volume:{one}-data"]
    dsr("apply", "--allow-empty", spec_one, check=True)

    assert prefixed_containers(docker_client, one) == []
    assert {c["Id"] for c in prefixed_containers(docker_client, two)} == two_ids
    assert inspect(docker_client, f"{two}-web")["State"]["Status"] == "running"
    docker_client.volumes.get(f"{two}-data")
    docker_client.volumes.get(f"{one}-data")  # retained: reclaim defaults to retain
    dsr("plan", spec_two, "--detailed-exitcode", check=0)

    # A name project two holds is blocked for project one, not taken over.
    write_spec(spec_one, document(one, containers={f"{two}-web": sleeper(busybox_image)}))
    change = changes_by_resource(plan_json(dsr("plan", spec_one, "--format", "json")))[
        f"container:{two}-web"
    ]
    assert change["action"] == "blocked"
    assert f"belongs to the dsr project '{two}'" in change["reason"], change
    dsr("apply", spec_one, check=3)
    assert {c["Id"] for c in prefixed_containers(docker_client, two)} == two_ids


def test_a_replacement_that_cannot_start_leaves_the_old_container_running(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
) -> None:
    web = f"{prefix}-web"
    spec = tmp_spec(
        yaml.safe_dump(document(prefix, containers={web: sleeper(busybox_image, mounts=["/c"])}))
    )
    dsr("apply", spec, check=True)
    before = inspect(docker_client, web)

    broken = {"image": busybox_image, "command": ["/no/such/program"], "mounts": ["/c"]}
    tmp_spec(yaml.safe_dump(document(prefix, containers={web: broken})))
    result = dsr("apply", spec, check=1)

    assert f"container:{web}: failed" in result.stderr, result.stderr
    after = inspect(docker_client, web)
    assert after["Id"] == before["Id"]
    assert after["State"]["Status"] == "running"
    assert after["Mounts"][0]["Name"] == before["Mounts"][0]["Name"]
    assert [c["Names"][0][1:] for c in prefixed_containers(docker_client, prefix)] == [web]
