"""Golden tests of the operations each change makes (one engine or backup call each, in
order): a container's replace, a volume migration, a migration resumed at each point it can
be cut, and a container that takes a host port another one frees. No Docker here."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from reconciler.errors import PlanError
from reconciler.plan import Plan, plan
from reconciler.plan.model import Action, Change, Operation, Order
from reconciler.plan.operations import host_ports
from reconciler.plan.simulate import simulate
from reconciler.render import render_text
from reconciler.snapshot import INSTANCE, Observed
from reconciler.spec import Desired, load_spec

APP = """
    version: 1
    project: web
    volumes:
      data:
        labels: {{tier: {tier}}}
        on_change: migrate
    containers:
      {name}:
        image: busybox:1.36
        command: [{command}]
        ports: ["{port}:80"]
        mounts: ["data:/data"]
    """


def load(tmp_path: Path, tier: str = "a", name: str = "app", command: str = "httpd", port: int = 8080) -> Desired:  # fmt: skip
    path = tmp_path / f"{tier}-{name}-{command}-{port}" / "spec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = APP.format(tier=tier, name=name, command=command, port=port)
    path.write_text(textwrap.dedent(text))
    return load_spec(str(path), env={})


def running_with_ports(observed: Observed, port: int) -> Observed:
    """The snapshot of an engine where each container runs and holds its host port."""
    return dataclasses.replace(
        observed,
        containers={
            name: dataclasses.replace(c, state="running", ports=(f"{port}/tcp",), size_rw=0)
            for name, c in observed.containers.items()
        },
    )


def calls(result: Plan) -> dict[str, list[str]]:
    return {c.resource: [str(o) for o in c.operations] for c in result.changes}


def test_a_replace_creates_beside_stops_swaps_starts_then_removes(tmp_path: Path) -> None:
    engine = running_with_ports(simulate(load(tmp_path), {}), 8080)
    result = plan(load(tmp_path, command="sleep"), engine)
    (change,) = result.changes
    assert calls(result) == {
        "container:app": [
            "create-container app_dsr_new",
            "stop-container app",
            "rename-container app -> app_dsr_old",
            "rename-container app_dsr_new -> app",
            "start-container app",
            "remove-container app_dsr_old",
        ]
    }
    assert change.order is Order.CREATE_THEN_DELETE
    assert change.downtime == "from the old container's stop (up to 10 s) until the new one starts"
    text = render_text(result)
    assert "order:  create-then-delete; downtime: from the old container's stop" in text
    assert "calls:  create-container app_dsr_new, stop-container app, rename-container" in text


def test_a_renamed_container_waits_for_the_port_its_old_name_frees(tmp_path: Path) -> None:
    engine = running_with_ports(simulate(load(tmp_path), {}), 8080)
    result = plan(load(tmp_path, name="web"), engine)
    changes = {c.resource: c for c in result.changes}
    created, deleted = changes["container:web"], changes["container:app"]
    assert deleted.action is Action.DELETE and created.action is Action.CREATE
    assert created.depends_on == ("container:app",)
    assert created.order is Order.DELETE_THEN_CREATE
    assert created.downtime == (
        "host port 8080 is free only once container:app stops: nothing answers on it from "
        "that stop until this container starts"
    )
    assert calls(result) == {
        "container:app": ["stop-container app", "remove-container app"],
        "container:web": ["create-container web", "start-container web"],
    }
    order = [c.resource for c in result.changes]
    assert order.index("container:app") < order.index("container:web")
    # Another port, or a container that does not run (it holds no port): nothing to wait for.
    other = plan(load(tmp_path, name="web", port=9090), engine)
    assert {c.resource: c.order for c in other.changes}["container:web"] is None
    stopped = dataclasses.replace(
        engine, containers={n: dataclasses.replace(c, ports=()) for n, c in engine.containers.items()}
    )  # fmt: skip
    assert {c.resource: c.depends_on for c in plan(load(tmp_path, name="web"), stopped).changes}[
        "container:web"
    ] == ()


def test_a_migration_stops_backs_up_records_removes_recreates_restores(tmp_path: Path) -> None:
    engine = simulate(load(tmp_path), {})
    app_id = engine.containers["app"].id
    result = plan(load(tmp_path, tier="b"), engine, reclaim={"data": {"destination": "/b"}})
    assert calls(result) == {
        "volume:data": [
            f"stop-container {app_id[:12]}",
            "back-up-volume data -> /b",
            "record migration of data",
            f"remove-container {app_id[:12]}",
            "remove-volume data",
            "create-volume data",
            "restore-volume data -> the backup just taken",
            "record end of the migration of data",
        ],
        "container:app": ["create-container app", "start-container app"],
    }


def test_a_resumed_migration_does_only_what_is_left(tmp_path: Path) -> None:
    old, new = load(tmp_path), load(tmp_path, tier="b")
    folder = "/b/web/volume-data/data-1"
    migrations = {"data": folder}
    finish = [f"restore-volume data -> {folder}", "record end of the migration of data"]
    # Cut after the volume was removed: made again, then refilled.
    gone = dataclasses.replace(simulate(old, {}), volumes={})
    assert calls(plan(new, gone, migrations=migrations))["volume:data"] == [
        "create-volume data",
        *finish,
    ]
    # Cut after the volume was made again (its users not made yet): only refilled.
    made = dataclasses.replace(simulate(new, {}), containers={})
    assert calls(plan(new, made, migrations=migrations))["volume:data"] == finish
    # Cut before the volume went: it holds every byte, so a new backup is taken first.
    untouched = simulate(old, {})
    untouched = dataclasses.replace(
        untouched,
        volumes={
            n: dataclasses.replace(v, labels={**v.labels, INSTANCE: "a1a1"})
            for n, v in untouched.volumes.items()
        },
    )
    app = untouched.containers["app"].id[:12]
    record = {"data": {"folder": folder, "original": "a1a1"}}
    planned = plan(new, untouched, migrations=record, reclaim={"data": {"destination": "/b"}})
    assert calls(planned)["volume:data"] == [
        f"stop-container {app}",
        "back-up-volume data -> /b",
        "record migration of data",
        f"remove-container {app}",
        "remove-volume data",
        "create-volume data",
        "restore-volume data -> the backup just taken",
        "record end of the migration of data",
    ]
    # The spec changed back mid-migration, the volume made again and empty: made again
    # from the recorded backup, never backed up again.
    emptied = simulate(new, {})
    emptied = dataclasses.replace(
        emptied,
        containers={n: dataclasses.replace(c, state="created") for n, c in emptied.containers.items()},
    )  # fmt: skip
    app = emptied.containers["app"].id[:12]
    assert calls(plan(old, emptied, migrations=migrations, reclaim={}))["volume:data"] == [
        f"stop-container {app}",
        f"remove-container {app}",
        "remove-volume data",
        "create-volume data",
        *finish,
    ]


def test_host_ports_reads_every_form_docker_takes() -> None:
    assert host_ports(("8080:80", "127.0.0.1:53:53/udp", "[::1]:9000-9001:90-91", "80")) == {
        "8080/tcp",
        "53/udp",
        "9000/tcp",
        "9001/tcp",
    }


def payloads(change: Change) -> list[str]:
    """Each operation as the applier runs it: its payload class and target, and what runs
    when it fails (``rollback``), after ``|``."""

    def one(operation: Operation) -> str:
        payload = operation.payload
        assert payload is not None, operation
        fields = dataclasses.asdict(payload)
        shown = {k: v for k, v in fields.items() if k not in ("params",) and v not in ("", None, False)}  # fmt: skip
        text = f"{type(payload).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"
        if operation.rollback:
            text += " | " + "; ".join(one(o) for o in operation.rollback)
        return text

    return [one(o) for o in change.operations]


def test_every_operation_carries_what_the_applier_runs(tmp_path: Path) -> None:
    """The replace's payloads, in order, and its rollback when the new one does not start."""
    engine = running_with_ports(simulate(load(tmp_path), {}), 8080)
    (change,) = plan(load(tmp_path, command="sleep"), engine).changes
    old = engine.containers["app"].id
    assert payloads(change) == [
        "CreateContainer(name=app_dsr_new)",
        f"StopContainer(target={old}, timeout=10)",
        f"RenameContainer(target={old}, to=app_dsr_old)",
        "RenameContainer(target=app_dsr_new, to=app)",
        "StartContainer(target=app) | RemoveContainer(target=app, force=True); "
        f"RenameContainer(target={old}, to=app); StartContainer(target={old}, if_stopped_here=True)",
        f"RemoveContainer(target={old})",
    ]


def test_a_migrations_payloads_record_before_they_remove(tmp_path: Path) -> None:
    engine = simulate(load(tmp_path), {})
    app = engine.containers["app"].id
    result = plan(load(tmp_path, tier="b"), engine, reclaim={"data": {"destination": "/b"}})
    volume = {c.resource: c for c in result.changes}["volume:data"]
    assert payloads(volume) == [
        f"StopContainer(target={app})",
        "BackUpVolume(volume=data, destination=/b, migration=True) | "
        f"StartContainer(target={app}, if_stopped_here=True)",
        "RecordMigration(volume=data)",
        f"RemoveContainer(target={app})",
        "RemoveVolume(name=data)",
        "CreateVolume()",
        "RestoreVolume(volume=data)",
        "EndMigration(volume=data)",
    ]
    # Resumed after the volume went: made if missing, refilled from the recorded folder.
    gone = dataclasses.replace(simulate(load(tmp_path), {}), volumes={})
    resumed = plan(load(tmp_path, tier="b"), gone, migrations={"data": "/b/web/x"})
    volume = {c.resource: c for c in resumed.changes}["volume:data"]
    assert payloads(volume) == [
        "CreateVolume(if_missing=True)",
        "RestoreVolume(volume=data, folder=/b/web/x)",
        "EndMigration(volume=data)",
    ]


def test_a_saved_plan_gets_its_payloads_back_and_refuses_other_calls(tmp_path: Path) -> None:
    engine = running_with_ports(simulate(load(tmp_path), {}), 8080)
    made = plan(load(tmp_path, command="sleep"), engine)
    assert Plan.from_dict(made.to_dict()) == made
    edited = made.to_dict()
    edited["changes"][0]["operations"].pop(4)  # the start-container, say
    with pytest.raises(PlanError, match="the saved plan's operations are not those"):
        Plan.from_dict(edited)
