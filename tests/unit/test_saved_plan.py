"""Saved plans: ``Plan.to_dict``/``from_dict``, and the file ``dsr plan --out`` writes.

A saved plan must come back exactly as it was shown, parameters and fingerprint included;
anything that is not one (a spec file, a folder, another JSON document) reads as ``None``
so that ``dsr apply PATH`` treats it as a spec; a saved plan that is damaged is a
``PlanError``, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import PlanError
from reconciler.plan import Action, Change, Plan, Risk, plan
from reconciler.plan.model import (
    ContainerParams,
    ImageParams,
    MountParams,
    ReasonCode,
    VolumeParams,
)
from reconciler.plan.operations import with_operations
from reconciler.plan.simulate import simulate
from reconciler.render import render_json
from reconciler.saved import (
    SAVED_KIND,
    SavedPlan,
    _digest,
    _sign,
    fingerprint,
    read_saved_plan,
    save_plan,
)
from reconciler.snapshot import Observed
from reconciler.spec import load_spec

LABELS = {"dsr.managed": "true", "dsr.project": "web"}

# Every kind of parameter, every optional field set, so that nothing can be lost silently.
EVERYTHING = Plan(
    project="web",
    changes=tuple(
        with_operations(c)  # as the planner makes them
        for c in (
            Change(
                resource="container:old-app",
                action=Action.DELETE,
                code=ReasonCode.LEFT_SPEC,
                reason="it left the spec; its volumes are kept",
                target_id="f" * 64,
            ),
            Change(
                resource="image:htdocs",
                action=Action.BUILD,
                code=ReasonCode.MISSING,
                reason="it has not been built yet",
                image=ImageParams(
                    tag="dsr/web-htdocs:0123456789abcdef",
                    labels={**LABELS, "dsr.kind": "image"},
                    context="/srv/specs/htdocs",
                    path="/usr/local/apache2/htdocs",
                    base="scratch",
                ),
            ),
            Change(
                resource="volume:data",
                action=Action.CREATE,
                code=ReasonCode.MISSING,
                reason="it does not exist",
                volume=VolumeParams(
                    name="data", driver="local", driver_opts={"type": "tmpfs"}, labels=LABELS
                ),
            ),
            Change(
                resource="volume:gone",
                action=Action.BLOCKED,
                code=ReasonCode.VOLUME_DATA,
                reason="driver_opts differ",
                risk=Risk.DATA_LOSS,
            ),
            Change(
                resource="container:web1",
                action=Action.REPLACE,
                code=ReasonCode.CONFIG_CHANGED,
                reason="mounts differ: /data was read-write, spec says read-only",
                risk=Risk.RESTART,
                depends_on=("container:old-app", "image:htdocs", "volume:data"),
                target_id="e" * 64,
                container=ContainerParams(
                    name="web1",
                    image="dsr/web-htdocs:0123456789abcdef",
                    labels={**LABELS, "dsr.spec": '{"a":1}'},
                    command=("httpd-foreground",),
                    entrypoint=("/bin/sh", "-c"),
                    env=("A=1", "B=2"),
                    ports=("127.0.0.1:8080:80/tcp",),
                    restart="on-failure:3",
                    working_dir="/srv",
                    user="1000:1000",
                    mounts=(
                        MountParams(type="volume", target="/data", source="data", read_only=True),
                        MountParams(type="volume", target="/cache", source="a" * 64, nocopy=True),
                        MountParams(
                            type="bind",
                            target="/site",
                            source="/srv/site",
                            propagation="rslave",
                            selinux="z",
                        ),
                        MountParams(type="tmpfs", target="/tmp", tmpfs_size=1 << 20),
                    ),
                    volumes_from=("vc_data", "vc_tools:ro"),
                    network_disabled=False,
                    start=True,
                    pull=True,
                    make_dirs=("/srv/site",),
                ),
            ),
            Change(
                resource="container:idle",
                action=Action.START,
                code=ReasonCode.STOPPED,
                reason="it is exited, spec says running",
                target_id="d" * 64,
            ),
        )
    ),
    orphans=("volume:old-data",),
    errors=("volume:ext: the external volume ext does not exist",),
    fingerprint={"container:web1": "0123456789abcdef", "volume:data": "fedcba9876543210"},
)

SPEC = """
    version: 1
    project: web
    volumes:
      data: {}
    volume_containers:
      vc_data:
        mounts: [data:/data, /cache]
    containers:
      app:
        image: busybox:1.36
        command: [sleep, "3600"]
        env: {TZ: UTC}
        ports: ["8080:80"]
        volumes_from: ["vc_data:ro"]
        mounts:
          - type: tmpfs
            target: /tmp
            tmpfs_size: 1024
    """


def planned(tmp_path: Path) -> Plan:
    """A plan made by the planner: from an empty engine, and with a fingerprint."""
    path = tmp_path / "web" / "spec.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(SPEC).lstrip("\n"))
    desired = load_spec(str(path), env={})
    converged = simulate(desired, {})
    # An engine with only the volume on it: the rest is to create, the volume is fingerprinted.
    observed = Observed(volumes=converged.volumes)
    result = plan(desired, observed)
    names = {*desired.volumes, *desired.containers, *desired.volume_containers}
    result = dataclasses.replace(result, fingerprint=fingerprint(observed, result, names))
    assert result.fingerprint and result.changes
    return result


def through_json(value: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(value))
    return loaded


# --- to_dict / from_dict ------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    assert Plan.from_dict(through_json(EVERYTHING.to_dict())) == EVERYTHING


def test_round_trip_of_a_planned_plan(tmp_path: Path) -> None:
    original = planned(tmp_path)
    copy = Plan.from_dict(through_json(original.to_dict()))
    assert copy == original
    assert render_json(copy) == render_json(original)


def test_round_trip_gives_tuples_back() -> None:
    copy = Plan.from_dict(through_json(EVERYTHING.to_dict()))
    params = copy.changes[4].container
    assert params is not None
    assert isinstance(params.mounts, tuple)
    assert isinstance(params.mounts[0], MountParams)
    assert isinstance(params.command, tuple)
    assert isinstance(params.volumes_from, tuple)
    assert copy.changes[4].action is Action.REPLACE
    assert copy.changes[4].risk is Risk.RESTART


# --- save_plan / read_saved_plan -------------------------------------------------------------


KEY = b"k" * 64


def save(path: Path, saved: Plan, names: set[str]) -> None:
    save_plan(str(path), saved, names, json.loads(render_json(saved)), KEY)


def read(path: Path) -> SavedPlan | None:
    return read_saved_plan(str(path), KEY)


def resign(document: dict[str, Any]) -> None:
    """Sign an edited document again, as one holding the key could: what is left to catch
    is the damage itself."""
    body = {k: v for k, v in document.items() if k not in ("digest", "signature")}
    document["digest"] = _digest(body)
    document["signature"] = _sign(KEY, document["digest"])


def test_saved_plan_reads_back(tmp_path: Path) -> None:
    original = planned(tmp_path)
    path = tmp_path / "plan.json"
    save(path, original, {"data", "vc_data", "app"})

    assert read(path) == SavedPlan(original, frozenset({"data", "vc_data", "app"}))
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_saved_plan_file_holds_the_contract_json(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})

    document = json.loads(path.read_text())
    assert document["kind"] == SAVED_KIND
    assert document["format_version"] == 1
    public = json.loads(render_json(EVERYTHING))
    assert {k: document[k] for k in public} == public


def test_saving_over_an_older_plan_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    newer = planned(tmp_path)
    save(path, newer, {"app"})
    assert read(path) == SavedPlan(newer, frozenset({"app"}))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("spec.yaml", "version: 1\nvolumes:\n  data: {}\n", id="yaml-spec"),
        pytest.param("flow.yaml", "{version: 1, volumes: {data: {}}}\n", id="flow-style-spec"),
        pytest.param("json.yaml", '{"version": 1, "volumes": {"data": {}}}\n', id="json-spec"),
        pytest.param("plan.json", '{"format_version": 1, "changes": []}\n', id="public-json"),
        pytest.param("list.json", "[1, 2]\n", id="json-list"),
        pytest.param("empty.yaml", "", id="empty-file"),
        pytest.param("binary.yaml", b"{\xff\xfe".decode("latin-1"), id="not-utf8"),
    ],
)
def test_what_is_not_a_saved_plan_reads_as_none(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    assert read(path) is None


def test_a_folder_or_a_missing_path_is_not_a_saved_plan(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "web.yaml").write_text("version: 1\n")
    assert read(tmp_path / "specs") is None
    assert read(tmp_path / "nothing-here.json") is None


def damage(document: dict[str, Any], where: str) -> None:
    """Break one part of a saved plan document."""
    saved = document["plan"]
    container = next(c for c in saved["changes"] if c["container"])
    if where == "no-plan":
        del document["plan"]
    elif where == "no-names":
        del document["names"]
    elif where == "plan-is-a-list":
        document["plan"] = []
    elif where == "no-project":
        del saved["project"]
    elif where == "unknown-action":
        saved["changes"][0]["action"] = "explode"
    elif where == "unknown-risk":
        saved["changes"][0]["risk"] = "maybe"
    elif where == "change-is-text":
        saved["changes"][0] = "container:web1"
    elif where == "mount-without-target":
        del container["container"]["mounts"][0]["target"]
    elif where == "unknown-container-field":
        container["container"]["privileged"] = True
    elif where == "container-is-text":
        container["container"] = "web1"
    elif where == "volume-is-a-list":
        next(c for c in saved["changes"] if c["volume"])["volume"] = ["data"]
    elif where == "fingerprint-is-a-number":
        saved["fingerprint"] = 7
    else:
        raise AssertionError(where)


DAMAGES = [
    "no-plan",
    "no-names",
    "plan-is-a-list",
    "no-project",
    "unknown-action",
    "unknown-risk",
    "change-is-text",
    "mount-without-target",
    "unknown-container-field",
    "container-is-text",
    "volume-is-a-list",
    "fingerprint-is-a-number",
]


@pytest.mark.parametrize("where", DAMAGES)
def test_a_damaged_saved_plan_is_a_plan_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    document = json.loads(path.read_text())
    damage(document, where)
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match=r"plan\.json: the saved plan was edited after dsr plan"):
        read(path)

    resign(document)
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match=r"plan\.json: the saved plan is damaged: "):
        read(path)


@pytest.mark.parametrize(
    "edit",
    [
        "bind-the-docker-socket",
        "delete-by-another-id",
        "public-reason-reworded",
        "names-added",
        "fingerprint-emptied",
    ],
)
def test_an_edited_saved_plan_is_refused(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    document = json.loads(path.read_text())
    changes = document["plan"]["changes"]
    if edit == "bind-the-docker-socket":
        changes[4]["container"]["mounts"][2]["source"] = "/var/run/docker.sock"
    elif edit == "delete-by-another-id":
        changes[0]["target_id"] = "0" * 64
    elif edit == "public-reason-reworded":
        document["changes"][0]["reason"] = "harmless"
    elif edit == "names-added":
        document["names"].append("someone-else")
    else:
        document["plan"]["fingerprint"] = {}
    path.write_text(json.dumps(document, indent=2))
    with pytest.raises(PlanError, match="was edited after dsr plan wrote it"):
        read(path)


def test_a_plan_signed_elsewhere_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    with pytest.raises(PlanError, match="not made with this state directory"):
        read_saved_plan(str(path), b"x" * 64)


@pytest.mark.parametrize("cut", [1, 10, 30, 100, 1000, -200, -2])
def test_a_truncated_saved_plan_is_a_damaged_plan_not_a_spec(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    text = path.read_text()
    path.write_text(text[: cut if cut > 0 else len(text) + cut])
    if 0 < cut < 30:  # too little is left to tell it was a plan: it is read as a spec
        assert read(path) is None
        return
    with pytest.raises(PlanError, match="the saved plan is damaged"):
        read(path)


def test_a_signature_missing_is_a_damaged_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save(path, EVERYTHING, {"web1"})
    document = json.loads(path.read_text())
    del document["signature"]
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match="damaged: it has no digest or signature"):
        read(path)
