"""Reclaim: a managed volume that left the spec is kept, deleted, or backed up and deleted,
by the policy recorded when it was last applied; with no record it is kept."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.plan import Action, Risk, plan
from reconciler.plan.simulate import simulate
from reconciler.reconcile import reclaim_of, record_reclaim
from reconciler.record import VolumeRecord
from reconciler.snapshot import LiveContainer, LiveMount, LiveVolume, Observed
from reconciler.spec import Desired, load_spec
from reconciler.statedir import StateDir

WITH = """
    version: 1
    project: web
    volumes:
      keep-me: {}
      drop-me: {reclaim: delete}
      save-me: {reclaim: backup-then-delete}
      in-use: {reclaim: delete}
    backups:
      nightly:
        volumes: [save-me]
        destination: /srv/backups
    """
WITHOUT = """
    version: 1
    project: web
    volumes: {}
    """


def load(tmp_path: Path, name: str, text: str) -> Desired:
    path = tmp_path / name / "spec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return load_spec(str(path), env={})


def engine_after(desired: Desired) -> Observed:
    """The engine right after ``desired`` was applied, plus a container of someone else's
    that mounts in-use."""
    observed = simulate(desired, {})
    user = LiveContainer(
        id="c" * 64,
        name="someone",
        image="busybox",
        image_id="sha256:" + "1" * 64,
        state="running",
        mounts=(LiveMount(type="volume", target="/d", name="in-use"),),
    )
    return dataclasses.replace(observed, containers={**observed.containers, "someone": user})


def test_each_policy_does_what_it_says(tmp_path: Path) -> None:
    before = load(tmp_path, "before", WITH)
    records = reclaim_of(before, "/var/lib/dsr/backups")
    assert records["save-me"] == VolumeRecord("backup-then-delete", "/srv/backups")
    assert records["drop-me"].destination == "/var/lib/dsr/backups"
    result = plan(load(tmp_path, "after", WITHOUT), engine_after(before), reclaim=records)
    changes = {c.resource: c for c in result.changes}
    assert set(changes) == {"volume:drop-me", "volume:save-me", "volume:in-use"}

    drop = changes["volume:drop-me"]
    assert (drop.action, drop.risk, drop.code, drop.backup_to) == (
        Action.DELETE,
        Risk.DATA_LOSS,
        "left-spec",
        None,
    )
    save = changes["volume:save-me"]
    assert (save.action, save.risk, save.backup_to) == (
        Action.DELETE,
        Risk.DATA_LOSS,
        "/srv/backups",
    )
    assert "deleted only once that backup verified" in save.reason
    used = changes["volume:in-use"]
    assert (used.action, used.code) == (Action.BLOCKED, "volume-in-use")
    assert "someone still uses it" in used.reason
    assert result.orphans == ("volume:keep-me",)
    assert result.actionable and all(c.action is not Action.BLOCKED for c in [drop, save])


def test_with_no_record_a_volume_is_retained(tmp_path: Path) -> None:
    before = load(tmp_path, "before", WITH)
    result = plan(load(tmp_path, "after", WITHOUT), engine_after(before), reclaim={})
    assert result.changes == ()
    assert set(result.orphans) == {
        f"volume:{n}" for n in ("keep-me", "drop-me", "save-me", "in-use")
    }


def test_a_volume_whose_only_user_leaves_goes_after_it(tmp_path: Path) -> None:
    before = load(
        tmp_path,
        "before",
        WITH.rstrip(" ") + "    containers:\n      app:\n        image: busybox:1.36\n"
        "        mounts: [drop-me:/data]\n",
    )
    observed = simulate(before, {})
    result = plan(load(tmp_path, "after", WITHOUT), observed, reclaim=reclaim_of(before, "/b"))
    changes = {c.resource: c for c in result.changes}
    assert changes["container:app"].action is Action.DELETE
    assert changes["volume:drop-me"].depends_on == ("container:app",)
    order = [c.resource for c in result.changes]
    assert order.index("volume:drop-me") > order.index("container:app")


def test_volumes_of_others_are_never_reclaimed(tmp_path: Path) -> None:
    before = load(tmp_path, "before", WITH)
    observed = simulate(before, {})
    unmanaged = {n: LiveVolume(name=n) for n in observed.volumes}
    other = {
        n: dataclasses.replace(v, labels={**v.labels, "dsr.project": "other"})
        for n, v in observed.volumes.items()
    }
    records = reclaim_of(before, "/b")
    after = load(tmp_path, "after", WITHOUT)
    for volumes in (unmanaged, other):
        result = plan(after, dataclasses.replace(observed, volumes=volumes), reclaim=records)
        assert result.changes == () and result.orphans == ()


def test_the_record_keeps_the_last_applied_policy_of_volumes_still_there(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    before = load(tmp_path, "before", WITH)
    observed = simulate(before, {})
    record_reclaim(state, before, observed)
    after = load(tmp_path, "after", WITHOUT)
    record_reclaim(state, after, observed)  # left the spec: the records stay
    volumes = state.read_record("web")["volumes"]
    assert volumes["drop-me"]["reclaim"] == "delete"
    gone = dataclasses.replace(observed, volumes={"keep-me": observed.volumes["keep-me"]})
    record_reclaim(state, after, gone)  # deleted since: their records go
    assert set(state.read_record("web")["volumes"]) == {"keep-me"}


def test_diff_shows_reclaim_from_the_old_spec(tmp_path: Path) -> None:
    old = tmp_path / "old" / "web"
    new = tmp_path / "new" / "web"
    for folder, text in ((old, WITH), (new, WITHOUT)):
        folder.mkdir(parents=True)
        (folder / "spec.yaml").write_text(textwrap.dedent(text))
    result = CliRunner().invoke(cli, ["diff", str(old), str(new), "--format", "json"])
    assert result.exit_code == 0, result.output
    changes = {c["resource"]: c for c in json.loads(result.output)["changes"]}
    assert changes["volume:drop-me"]["risk"] == "data-loss"
    assert "backed up to /srv/backups" in changes["volume:save-me"]["reason"]
