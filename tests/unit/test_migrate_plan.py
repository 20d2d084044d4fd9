"""Planning on_change, and the rest of a migration that was interrupted."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from reconciler.plan import Action, Risk, plan
from reconciler.plan.simulate import simulate
from reconciler.snapshot import INSTANCE, LiveContainer, LiveMount, Observed
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
    # Made again with the new settings, maybe half restored; its users were removed.
    recreated = dataclasses.replace(simulate(new, {}), containers={})
    (volume, *_) = plan(new, recreated, migrations=migrations).changes
    assert (volume.action, volume.restore_from) == (Action.UPDATE, migrations["data"])


def with_created(observed: Observed, instance: str) -> Observed:
    """Each volume made by dsr as the volume ``instance`` (its ``dsr.instance`` label)."""
    volumes = {
        n: dataclasses.replace(v, labels={**v.labels, INSTANCE: instance})
        for n, v in observed.volumes.items()
    }
    return dataclasses.replace(observed, volumes=volumes)


def test_an_interrupted_migration_of_the_untouched_volume_takes_a_new_backup(
    tmp_path: Path,
) -> None:
    """Killed before the volume went: a user started again since (restart: always, or
    anyone) may have written after the recorded backup, and the volume still holds every
    byte: the migration starts again from a new backup, never from the stale one."""
    old, new = load(tmp_path, "a", "migrate"), load(tmp_path, "b", "migrate")
    untouched = with_created(simulate(old, {}), "a1a1")
    record = {"data": {"folder": "/b/web/volume-data/data-1", "original": "a1a1"}}
    changes = plan(new, untouched, migrations=record, reclaim={}).changes
    assert changes[0].action is Action.REPLACE and changes[0].restore_from is None
    assert changes[0].backup_to is not None and "new backup" in changes[0].reason
    assert changes[0].removes  # its users are stopped before that backup
    # The spec went back to the original's settings: nothing is left to finish.
    assert plan(old, untouched, migrations=record, reclaim={}).changes == ()
    # An older record does not say which volume the backup was of: a user that ran on the
    # volume there blocks it rather than be overwritten by the backup.
    (change, *_) = plan(new, untouched, migrations={"data": "/b/x"}, reclaim={}).changes
    assert change.action is Action.BLOCKED and "app ran on the volume" in change.reason


def test_a_container_on_the_volume_a_migration_made_blocks_its_end(tmp_path: Path) -> None:
    """Someone else's container that mounted the half-made volume would be stopped and its
    files wiped by the restore: it blocks, named, as it blocks a migration."""
    new = load(tmp_path, "b", "migrate")
    made = dataclasses.replace(with_created(simulate(new, {}), "b2b2"), containers={})
    theirs = LiveContainer(
        id="f" * 64, name="theirs", image="busybox", image_id="sha256:" + "1" * 64,
        state="exited", mounts=(LiveMount(type="volume", target="/d", name="data"),),
    )  # fmt: skip
    engine = dataclasses.replace(made, containers={"theirs": theirs})
    record = {"data": {"folder": "/b/web/volume-data/data-1", "original": "a1a1"}}
    (change, *_) = plan(new, engine, migrations=record, reclaim={}).changes
    assert change.action is Action.BLOCKED and "theirs" in change.reason
    assert change.risk is Risk.DATA_LOSS


def test_a_spec_changed_again_mid_migration_never_backs_up_the_emptied_volume(
    tmp_path: Path,
) -> None:
    """Killed once the volume was made again with settings b (still empty), then the spec
    says a again: the data is in the recorded backup, and a new backup of the empty
    volume would replace it in the record. The volume is made again from the record."""
    old, new = load(tmp_path, "a", "migrate"), load(tmp_path, "b", "migrate")
    migrations = {"data": "/b/web/volume-data/data-1"}
    made = simulate(new, {})  # the volume made with b, not yet refilled; its user made
    emptied = dataclasses.replace(  # again but never started (a started one blocks it)
        made,
        containers={n: dataclasses.replace(c, state="created") for n, c in made.containers.items()},
    )
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


def test_a_reclaim_decision_belongs_to_the_volume_that_left(tmp_path: Path) -> None:
    """Bound to the dsr.instance of the volume that left the spec: a volume of that name
    made since (brought back by a restore) is another one, and is retained."""
    old = load(tmp_path, "a", "block")
    empty = load_spec(str(_write(tmp_path / "empty", "version: 1\nproject: web\n")), env={})
    engine = dataclasses.replace(with_created(simulate(old, {}), "one1"), containers={})
    bound = {"data": {"reclaim": "delete", "destination": "", "instance": "one1"}}
    (change,) = plan(empty, engine, reclaim=bound).changes
    assert change.action is Action.DELETE
    restored = with_created(engine, "two2")
    assert plan(empty, restored, reclaim=bound).changes == ()
    assert "volume:data" in plan(empty, restored, reclaim=bound).orphans


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(text)
    return folder / "spec.yaml"
