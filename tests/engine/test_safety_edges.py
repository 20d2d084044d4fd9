"""Safety at the edges, against the real engine: saved plans checked again, ownership that
cannot be inherited, no data deleted as a leftover, states dsr can always leave, and bind
sources compared by kind. Each test asserts with ``docker inspect`` that nothing unmanaged
was touched and no data was lost."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
from specgen import plan_json

from reconciler.saved import _digest, _sign
from reconciler.statedir import StateDir

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def changes_of(dsr: DsrRunner, spec: Path) -> dict[str, dict[str, Any]]:
    planned = plan_json(dsr("plan", spec, "--format", "json", check=False))
    return {c["resource"]: c for c in planned["changes"]}


def app_spec(prefix: str, busybox: str, **extra: str) -> str:
    lines = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    return f"""
version: 1
containers:
  {prefix}-app:
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    init: true{lines}
"""


def write_layer(client: docker.DockerClient, name: str, size: int) -> None:
    client.containers.get(name).exec_run(["sh", "-c", f"head -c {size} /dev/zero > /kept.bin"])


def resign(state_dir: Path, document: dict[str, Any]) -> None:
    """Sign an edited plan with the state directory's own key: the checks after the
    signature (ownership, policy) must refuse it on their own."""
    key = StateDir(str(state_dir)).plan_key()
    body = {k: v for k, v in document.items() if k not in ("digest", "signature")}
    document["digest"] = _digest(body)
    document["signature"] = _sign(key, document["digest"])


# -- 1. saved plans are input ----------------------------------------------------------------


@pytest.mark.parametrize("signed", [False, True], ids=["edited", "edited-and-re-signed"])
def test_an_edited_saved_plan_neither_binds_the_socket_nor_deletes_others(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    signed: bool,
) -> None:
    bystander = docker_client.containers.create(
        busybox_image, ["true"], name=f"{prefix}-bystander", labels=labels
    )
    spec = tmp_spec(app_spec(prefix, busybox_image))
    saved = tmp_path / "plan.json"
    dsr("plan", spec.parent, "--out", saved, check=0)
    document = json.loads(saved.read_text())
    create = document["plan"]["changes"][0]
    create["container"]["mounts"].append({**_bind("/var/run/docker.sock", "/var/run/docker.sock")})
    document["plan"]["changes"].append(
        {
            **create,
            "resource": f"container:{prefix}-bystander",
            "action": "delete",
            "code": "left-spec",
            "target_id": bystander.id,
            "container": None,
            "depends_on": [],
            # the calls a delete makes, so the plan gets past the operations check and
            # meets the ownership check it is aimed at
            "operations": [
                {"op": "stop-container", "target": f"{prefix}-bystander"},
                {"op": "remove-container", "target": f"{prefix}-bystander"},
            ],
        }
    )
    if signed:
        resign(dsr_state_dir, document)
    saved.write_text(json.dumps(document))

    refused = dsr("apply", saved, check=1)
    if signed:
        assert "the saved plan is refused" in refused.stderr
        assert "/var/run/docker.sock resolves to /run/docker.sock, which is the Docker socket" in (
            refused.stderr
        )
        assert f"container:{prefix}-bystander: the container it acts on" in refused.stderr
    else:
        assert "was edited after dsr plan wrote it" in refused.stderr
    docker_client.containers.get(bystander.id)  # untouched
    assert not docker_client.containers.list(all=True, filters={"name": f"{prefix}-app"})


def _bind(source: str, target: str) -> dict[str, Any]:
    return {
        "type": "bind",
        "target": target,
        "source": source,
        "read_only": False,
        "propagation": "",
        "selinux": "",
        "nocopy": False,
        "tmpfs_size": None,
        "labels": {},
    }


def test_a_saved_plan_from_another_state_dir_or_project_is_refused(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image))
    saved = tmp_path / "plan.json"
    dsr("plan", spec.parent, "--out", saved, check=0)
    other = tmp_path / "other-state"
    refused = dsr("apply", saved, env={"DSR_STATE_DIR": str(other)}, check=1)
    assert "was not made with this state directory" in refused.stderr
    refused = dsr("apply", saved, "--project", "someone-else", check=1)
    assert f"is a plan of the project '{prefix}', but --project says 'someone-else'" in (
        refused.stderr
    )
    assert not docker_client.containers.list(all=True, filters={"name": prefix})
    saved.write_text(saved.read_text()[:-300])
    damaged = dsr("apply", saved, check=1)
    assert "the saved plan is damaged" in damaged.stderr


# -- 4. a saved plan sees what changed inside containers, and behind tags ---------------------


def test_a_saved_plan_is_stale_once_a_layer_it_drops_holds_new_data(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image))
    dsr("apply", spec.parent, check=0)
    spec.write_text(app_spec(prefix, busybox_image, stop_timeout="5"))
    saved = tmp_path / "plan.json"
    dsr("plan", spec.parent, "--out", saved, check=0)
    assert "its writable layer is empty" in saved.read_text()
    before = docker_client.containers.get(f"{prefix}-app").id
    write_layer(docker_client, f"{prefix}-app", 9)

    stale = dsr("apply", saved, check=1)
    assert f"writable layer of container:{prefix}-app changed" in stale.stderr
    assert docker_client.containers.get(f"{prefix}-app").id == before


def test_a_saved_plan_is_stale_once_a_tag_it_uses_moved(
    prefix: str,
    busybox_image: str,
    empty_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    tag = f"{prefix}/moving:1"
    docker_client.images.get(busybox_image).tag(tag)
    spec = tmp_spec(app_spec(prefix, tag))
    saved = tmp_path / "plan.json"
    dsr("plan", spec.parent, "--out", saved, check=0)
    docker_client.images.get(empty_image).tag(tag)  # the tag now names another image
    stale = dsr("apply", saved, check=1)
    assert f"image {tag} changed" in stale.stderr
    assert not docker_client.containers.list(all=True, filters={"name": f"{prefix}-app"})


# -- 2, 3. no data deleted as a leftover; ownership never inherited ---------------------------


def test_a_renamed_container_with_data_is_kept_and_one_without_is_deleted(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image))
    dsr("apply", spec.parent, check=0)
    app = docker_client.containers.get(f"{prefix}-app")
    write_layer(docker_client, app.name, 100_000)
    app.rename(f"{prefix}-app-debug")

    changes = changes_of(dsr, spec.parent)
    kept = changes[f"container:{prefix}-app-debug"]
    assert (kept["action"], kept["risk"], kept["reason_code"]) == (
        "blocked",
        "data-loss",
        "writable-layer-data",
    )
    assert "renamed since" in kept["reason"] and "97.7 KiB" in kept["reason"]
    assert changes[f"container:{prefix}-app"]["action"] == "create"
    dsr("apply", spec.parent, check=3)  # converged but for the blocked one
    debug = docker_client.containers.get(f"{prefix}-app-debug")
    assert debug.id == app.id
    assert debug.exec_run(["wc", "-c", "/kept.bin"]).output.split()[0] == b"100000"
    assert docker_client.containers.get(f"{prefix}-app").status == "running"

    # Renamed again, with nothing written: it is only a container that left the spec.
    empty = docker_client.containers.get(f"{prefix}-app")
    empty.rename(f"{prefix}-app-spare")
    changes = changes_of(dsr, spec.parent)
    assert changes[f"container:{prefix}-app-spare"]["action"] == "delete"
    assert changes[f"container:{prefix}-app-spare"]["reason_code"] == "left-spec"


@pytest.mark.parametrize("how", ["commit", "labelled-image"])
def test_a_container_whose_dsr_labels_come_from_its_image_is_never_touched(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    how: str,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image))
    dsr("apply", spec.parent, check=0)
    tag = f"{prefix}/copied:1"
    if how == "commit":  # an image of dsr's own container: all its labels
        docker_client.containers.get(f"{prefix}-app").commit(repository=f"{prefix}/copied", tag="1")
    else:  # an image labelled like one of dsr's containers
        source = docker_client.containers.create(busybox_image, ["true"], labels=labels)
        source.commit(
            repository=f"{prefix}/copied",
            tag="1",
            changes=[f"LABEL dsr.managed=true dsr.project={prefix} dsr.kind=container"],
        )
        source.remove()
    copy = docker_client.containers.create(
        tag, ["sh", "-c", "exec sleep 3600"], name=f"{prefix}-by-hand", labels=labels
    )
    assert copy.labels["dsr.managed"] == "true" and copy.labels["dsr.project"] == prefix
    planned = changes_of(dsr, spec.parent)
    assert f"container:{prefix}-by-hand" not in planned, planned
    dsr("apply", spec.parent, check=0)
    docker_client.containers.get(copy.id)  # still there


# -- 5. states dsr can always leave --------------------------------------------------------------


def test_a_paused_container_is_unpaused(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image))
    dsr("apply", spec.parent, check=0)
    app = docker_client.containers.get(f"{prefix}-app")
    app.pause()
    change = changes_of(dsr, spec.parent)[f"container:{prefix}-app"]
    assert (change["action"], change["reason_code"]) == ("start", "paused")
    dsr("apply", spec.parent, check=0)
    app.reload()
    assert app.status == "running"  # the same container, unpaused
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)

    # Paused while its spec changes: it is stopped (unpaused first) and replaced.
    app.pause()
    spec.write_text(app_spec(prefix, busybox_image, stop_timeout="3"))
    dsr("apply", spec.parent, check=0)
    assert docker_client.containers.get(f"{prefix}-app").status == "running"
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)


def test_a_container_renamed_onto_another_spec_name_is_replaced_once(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(
        app_spec(prefix, busybox_image)
        + f"""  {prefix}-two:
    image: {busybox_image}
    command: [sh, -c, "exec sleep 3601"]
    init: true
"""
    )
    dsr("apply", spec.parent, check=0)
    docker_client.containers.get(f"{prefix}-two").remove(force=True)
    docker_client.containers.get(f"{prefix}-app").rename(f"{prefix}-two")
    planned = plan_json(dsr("plan", spec.parent, "--format", "json", check=0))
    resources = [c["resource"] for c in planned["changes"]]
    assert len(resources) == len(set(resources)), resources
    two = next(c for c in planned["changes"] if c["resource"] == f"container:{prefix}-two")
    assert (two["action"], two["reason_code"]) == ("replace", "renamed")
    dsr("apply", spec.parent, check=0)
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)
    cmds = {
        c.name: c.attrs["Config"]["Cmd"][-1]
        for c in docker_client.containers.list(all=True, filters={"name": prefix})
    }
    assert cmds == {f"{prefix}-app": "exec sleep 3600", f"{prefix}-two": "exec sleep 3601"}


def test_reserved_suffixes_are_spec_errors(
    prefix: str, busybox_image: str, tmp_spec: SpecWriter, dsr: DsrRunner
) -> None:
    spec = tmp_spec(
        app_spec(prefix, busybox_image)
        + f"""  {prefix}-app_dsr_old:
    image: {busybox_image}
"""
    )
    refused = dsr("validate", spec.parent, check=1)
    assert f"containers.{prefix}-app_dsr_old: '{prefix}-app_dsr_old' ends with _dsr_old" in (
        refused.stderr
    )


# -- 7. bind sources compared by kind ----------------------------------------------------------


def test_a_bind_source_swapped_for_a_file_is_drift(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(app_spec(prefix, busybox_image, mounts='["./site:/srv/site:ro"]'))
    site = spec.parent / "site"
    site.mkdir()
    dsr("apply", spec.parent, check=0)
    site.rmdir()
    site.write_text("a file\n")
    change = changes_of(dsr, spec.parent)[f"container:{prefix}-app"]
    assert (change["action"], change["reason_code"]) == ("replace", "mounts-drifted")
    assert "was a directory when the container was made and is now a file" in change["reason"]
