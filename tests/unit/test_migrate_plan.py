"""Planning on_change, and the rest of a migration that was interrupted."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from reconciler.plan import Action, Risk, plan
from reconciler.plan.simulate import simulate
from reconciler.snapshot import LiveContainer, LiveMount, Observed
from reconciler.spec import Desired, load_spec

SPEC = """
    version: 1
    project: web
    volumes:
      data:
        labels: {{tier: {tier}}}
        on_change: {on_change}
    containers:
      app:
        image: busybox:1.36
        mounts: ["data:/data"]
    """


def load(tmp_path: Path, tier: str, on_change: str) -> Desired:
    path = tmp_path / f"{tier}-{on_change}" / "spec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(SPEC.format(tier=tier, on_change=on_change)))
    return load_spec(str(path), env={})


@pytest.mark.parametrize(
    ("on_change", "action", "risk"),
    [
        ("block", Action.BLOCKED, Risk.DATA_LOSS),
        ("recreate", Action.REPLACE, Risk.DATA_LOSS),
        ("migrate", Action.REPLACE, Risk.RESTART),
    ],
)
def test_on_change(tmp_path: Path, on_change: str, action: Action, risk: Risk) -> None:
    engine = simulate(load(tmp_path, "a", on_change), {})
    result = plan(load(tmp_path, "b", on_change), engine, reclaim={"data": {"destination": "/b"}})
    changes = {c.resource: c for c in result.changes}
    volume = changes["volume:data"]
    assert (volume.action, volume.risk) == (action, risk)
    assert "labels differ" in volume.reason
    if action is Action.BLOCKED:
        assert set(changes) == {"volume:data"}
        return
    assert volume.removes == (engine.containers["app"].id,)
    assert volume.backup_to == ("/b" if on_change == "migrate" else None)
    app = changes["container:app"]
    assert (app.action, app.code, app.depends_on) == (
        Action.CREATE,
        "volume-replaced",
        ("volume:data",),
    )
    order = [c.resource for c in result.changes]
    assert order.index("volume:data") < order.index("container:app")


def test_a_user_of_someone_else_blocks_a_migration(tmp_path: Path) -> None:
    engine = simulate(load(tmp_path, "a", "migrate"), {})
    other = LiveContainer(
        id="f" * 64,
        name="theirs",
        image="busybox",
        image_id="sha256:" + "1" * 64,
        state="running",
        mounts=(LiveMount(type="volume", target="/d", name="data"),),
    )
    engine = dataclasses.replace(engine, containers={**engine.containers, "theirs": other})
    (change,) = plan(load(tmp_path, "b", "migrate"), engine).changes
    assert change.action is Action.BLOCKED and "theirs use it" in change.reason


def test_an_interrupted_migration_is_finished_from_its_backup(tmp_path: Path) -> None:
    old, new = load(tmp_path, "a", "migrate"), load(tmp_path, "b", "migrate")
    migrations = {"data": "/b/web/volume-data/data-1"}
    after_removal = dataclasses.replace(simulate(old, {}), volumes={})
    (volume, *_) = plan(new, after_removal, migrations=migrations).changes
    assert (volume.action, volume.code, volume.restore_from) == (
        Action.CREATE,
        "migration",
        migrations["data"],
    )
    recreated = simulate(new, {})  # made again with the new settings, maybe half restored
    (volume,) = plan(new, recreated, migrations=migrations).changes
    assert (volume.action, volume.restore_from) == (Action.UPDATE, migrations["data"])
    # Killed before the volume went: its users were stopped before the backup, so the
    # recorded backup holds what the volume holds; it is made again from that backup.
    untouched: Observed = simulate(old, {})
    changes = plan(new, untouched, migrations=migrations, reclaim={}).changes
    assert changes[0].action is Action.REPLACE
    assert (changes[0].restore_from, changes[0].backup_to) == (migrations["data"], None)


def test_a_spec_changed_again_mid_migration_never_backs_up_the_emptied_volume(
    tmp_path: Path,
) -> None:
    """Killed once the volume was made again with settings b (still empty), then the spec
    says a again: the data is in the recorded backup, and a new backup of the empty
    volume would replace it in the record. The volume is made again from the record."""
    old, new = load(tmp_path, "a", "migrate"), load(tmp_path, "b", "migrate")
    migrations = {"data": "/b/web/volume-data/data-1"}
    emptied = simulate(new, {})  # the volume made with b, not yet refilled
    changes = plan(old, emptied, migrations=migrations, reclaim={}).changes
    volume = changes[0]
    assert (volume.resource, volume.action, volume.code) == (
        "volume:data",
        Action.REPLACE,
        "migration",
    )
    assert (volume.restore_from, volume.backup_to) == (migrations["data"], None)
    assert volume.volume is not None and volume.volume.labels["tier"] == "a"
    assert volume.removes  # its users go first, and are made again after
