"""Adoption in the planner: literal specs and snapshots in, the planned changes out."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler.errors import SpecError
from reconciler.plan import plan
from reconciler.plan.model import Action, Plan, Risk
from reconciler.snapshot import LiveContainer, LiveMount, LiveVolume, Observed
from reconciler.spec import Desired, load_spec

CREATED = "2026-12-07T10:00:00Z"
ANON = "b" * 64
DSR = {"dsr.managed": "true", "dsr.project": "shop", "dsr.kind": "volume", "dsr.name": "data"}


def load(tmp_path: Path, text: str) -> Desired:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nproject: web\n" + textwrap.dedent(text))
    return load_spec(str(path), env={})


def summary(result: Plan) -> list[tuple[str, str, str, str]]:
    return [(c.resource, c.action.value, c.code.value, c.risk.value) for c in result.changes]


def hand_volume(name: str = "data", created: str = CREATED, **kw: object) -> LiveVolume:
    return LiveVolume(name=name, created_at=created, **kw)  # type: ignore[arg-type]


def test_without_adopt_a_taken_name_stays_blocked(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  data: {}\n")
    result = plan(desired, Observed(volumes={"data": hand_volume()}))
    assert summary(result) == [("volume:data", "blocked", "unmanaged-clash", "none")]


def test_a_volume_is_adopted_as_it_is_and_recorded_by_creation_time(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    observed = Observed(volumes={"data": hand_volume(labels={"com.docker.compose.project": "x"})})
    result = plan(desired, observed)
    assert summary(result) == [("volume:data", "adopt", "adopt", "none")]
    assert result.changes[0].identity == CREATED
    assert result.summary()["adopt"] == 1
    # Once recorded, it is dsr's: nothing to do, with or without adopt.
    assert plan(desired, observed, adoptions={"data": CREATED}).changes == ()
    plain = load(tmp_path, "volumes:\n  data: {}\n")
    assert plan(plain, observed, adoptions={"data": CREATED}).changes == ()


def test_a_volume_made_again_behind_dsrs_back_is_not_the_adopted_one(tmp_path: Path) -> None:
    observed = Observed(volumes={"data": hand_volume(created="2026-12-08T00:00:00Z")})
    plain = load(tmp_path, "volumes:\n  data: {}\n")
    result = plan(plain, observed, adoptions={"data": CREATED})
    assert summary(result) == [("volume:data", "blocked", "unmanaged-clash", "none")]
    again = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    result = plan(again, observed, adoptions={"data": CREATED})
    assert summary(result) == [("volume:data", "adopt", "adopt", "none")]


def test_differing_driver_options_follow_on_change(tmp_path: Path) -> None:
    observed = Observed(volumes={"data": hand_volume(options={"type": "tmpfs"})})
    block = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    result = plan(block, observed)
    assert summary(result) == [("volume:data", "blocked", "volume-data", "data-loss")]
    assert "driver_opts differ" in result.changes[0].reason
    recreate = load(tmp_path, "volumes:\n  data: {adopt: true, on_change: recreate}\n")
    assert summary(plan(recreate, observed)) == [
        ("volume:data", "replace", "config-changed", "data-loss")
    ]
    # An adopted one whose spec changed since: the same rule.
    adopted = Observed(volumes={"data": hand_volume()})
    changed = load(tmp_path, "volumes:\n  data: {driver_opts: {type: tmpfs}}\n")
    result = plan(changed, adopted, adoptions={"data": CREATED})
    assert summary(result) == [("volume:data", "blocked", "volume-data", "data-loss")]


def test_another_projects_volume_is_never_adopted(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    result = plan(desired, Observed(volumes={"data": hand_volume(labels=DSR)}))
    assert summary(result) == [("volume:data", "blocked", "other-project", "none")]


def test_a_volume_with_no_creation_time_cannot_be_adopted(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    result = plan(desired, Observed(volumes={"data": hand_volume(created="")}))
    assert summary(result) == [("volume:data", "blocked", "unmanaged-clash", "none")]


def test_an_adopted_volume_that_leaves_the_spec_follows_its_reclaim(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  other: {}\n")
    observed = Observed(volumes={"data": hand_volume(), "other": hand_volume("other")})
    reclaim = {"data": {"reclaim": "delete", "destination": ""}}
    adoptions = {"data": CREATED, "other": CREATED}
    result = plan(desired, observed, reclaim=reclaim, adoptions=adoptions)
    assert summary(result) == [("volume:data", "delete", "left-spec", "data-loss")]
    retained = plan(desired, observed, adoptions=adoptions)
    assert retained.changes == () and retained.orphans == ("volume:data",)
    # Not adopted: never reclaimed, never an orphan of this project.
    foreign = plan(desired, observed, reclaim=reclaim, adoptions={"other": CREATED})
    assert foreign.changes == () and foreign.orphans == ()


def hand_container(**kw: object) -> LiveContainer:
    values: dict[str, object] = {
        "id": "c" * 64,
        "name": "app",
        "image": "busybox:1.36",
        "image_id": "sha256:" + "1" * 64,
        "state": "running",
        "mounts": (
            LiveMount(type="volume", target="/data", name="data"),
            LiveMount(type="volume", target="/image-volume", name=ANON),
        ),
        "size_rw": 0,
    }
    return LiveContainer(**{**values, **kw})  # type: ignore[arg-type]


APP = """
volumes:
  data: {adopt: true}
containers:
  app:
    image: busybox:1.36
    adopt: true
    stop_timeout: 30
    WRITABLE
    mounts: [data:/data]
"""


def test_a_container_is_adopted_by_a_replace_keeping_its_anonymous_volumes(
    tmp_path: Path,
) -> None:
    desired = load(tmp_path, APP.replace("WRITABLE", ""))
    observed = Observed(containers={"app": hand_container()}, volumes={"data": hand_volume()})
    result = plan(desired, observed)
    assert summary(result) == [
        ("volume:data", "adopt", "adopt", "none"),
        ("container:app", "adopt", "adopt", "restart"),
    ]
    change = result.changes[1]
    assert change.target_id == "c" * 64 and change.depends_on == ("volume:data",)
    assert change.stop_timeout == 30
    assert "stopping it may take up to 30 s" in change.reason
    assert change.container is not None
    kept = {m.target: m.source for m in change.container.mounts}
    assert kept == {"/data": "data", "/image-volume": ANON}
    assert change.container.labels["dsr.managed"] == "true"


def test_protect_blocks_adopting_a_container_whose_layer_holds_data(tmp_path: Path) -> None:
    desired = load(tmp_path, APP.replace("WRITABLE", "writable_layer: protect"))
    observed = Observed(
        containers={"app": hand_container(size_rw=4096)},
        volumes={"data": hand_volume()},
    )
    result = plan(desired, observed)
    assert summary(result)[1] == ("container:app", "blocked", "writable-layer-data", "data-loss")
    assert result.changes[1].risk is Risk.DATA_LOSS


def test_without_adopt_a_container_stays_blocked(tmp_path: Path) -> None:
    desired = load(tmp_path, APP.replace("WRITABLE", "").replace("    adopt: true\n", ""))
    observed = Observed(containers={"app": hand_container()}, volumes={"data": hand_volume()})
    result = plan(desired, observed)
    assert [c.action for c in result.changes] == [Action.ADOPT, Action.BLOCKED]


def test_adopt_and_external_exclude_each_other(tmp_path: Path) -> None:
    try:
        load(tmp_path, "volumes:\n  data: {adopt: true, external: true}\n")
    except SpecError as err:
        assert "adopt" in str(err.issues[0])
    else:
        raise AssertionError("adopt with external was accepted")


def test_an_adoption_killed_between_its_renames_is_finished_from_the_record(
    tmp_path: Path,
) -> None:
    """The user's container, renamed app_dsr_old by an adoption that was killed: the record
    names it, so dsr's own is made with its volumes, and it goes once that one is made."""
    desired = load(tmp_path, APP.replace("WRITABLE", ""))
    old = hand_container(name="app_dsr_old", state="exited")
    observed = Observed(containers={"app_dsr_old": old}, volumes={"data": hand_volume()})
    result = plan(desired, observed, adoptions={"data": CREATED}, adopting={"app": "c" * 64})
    assert summary(result) == [
        ("container:app", "create", "missing", "none"),
        ("container:app_dsr_old", "delete", "leftover", "none"),
    ]
    create, delete = result.changes
    assert create.container is not None
    assert {m.target: m.source for m in create.container.mounts} == {
        "/data": "data",
        "/image-volume": ANON,  # the image's anonymous volume carried over
    }
    assert delete.target_id == "c" * 64 and delete.depends_on == ("container:app",)
    # Without the record, a container merely named so is not dsr's: never touched.
    alone = plan(desired, observed, adoptions={"data": CREATED})
    assert [c.resource for c in alone.changes] == ["container:app"]
    # (Once dsr's own runs under the name: tests/engine/test_adopt_interrupted.py.)


def test_a_renamed_container_whose_name_left_the_spec_is_kept(tmp_path: Path) -> None:
    desired = load(tmp_path, "volumes:\n  data: {adopt: true}\n")
    old = hand_container(name="app_dsr_old", state="exited")
    observed = Observed(containers={"app_dsr_old": old}, volumes={"data": hand_volume()})
    result = plan(desired, observed, adoptions={"data": CREATED}, adopting={"app": "c" * 64})
    assert summary(result) == [("container:app_dsr_old", "blocked", "leftover", "none")]
    assert "docker rename app_dsr_old app" in result.changes[0].reason
