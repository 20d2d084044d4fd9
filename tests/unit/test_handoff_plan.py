"""A volume that moves between hosts: each side's plan, from literal statements.

Table-driven: the spec (the volume placed on host ``a`` before, on ``b`` now), what each
host's engine holds and what each host stated in the shared folder go in; the changes of
that host's plan come out. The statements' own file format is tested at the end.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from reconciler.handoff import (
    Statement,
    placement_digest,
    read_statements,
    statement_path,
    write_statement,
)
from reconciler.kinds import Kind
from reconciler.plan import plan
from reconciler.plan.model import ReasonCode
from reconciler.plan.params import container_params, volume_params
from reconciler.snapshot import LiveContainer, LiveMount, LiveVolume, Observed
from reconciler.spec import load_spec
from reconciler.spec.desired import Desired
from reconciler.spec.hosts import Host
from reconciler.spec.share import share

A, B = Host("a"), Host("b")


def spec(tmp_path: Path, where: str, reclaim: str = "delete", rule: bool = True) -> Desired:
    folder = tmp_path / f"spec-{where}"
    folder.mkdir(exist_ok=True)
    text = textwrap.dedent(f"""\
        version: 1
        project: p
        volumes:
          vol: {{hosts: [{where}], reclaim: {reclaim}}}
        containers:
          app:
            image: busybox:1
            hosts: [{where}]
            mounts: [vol:/data]
        """)
    if rule:
        text += f"backups:\n  nightly: {{volumes: [vol], destination: {tmp_path / 'shared'}}}\n"
    (folder / "spec.yaml").write_text(text)
    return load_spec(str(folder))


def holding(desired: Desired, with_app: bool = True) -> Observed:
    """An engine that holds ``vol`` (and ``app`` using it) as dsr made them."""
    volume = volume_params("p", "vol", desired.volumes["vol"])
    volumes = {"vol": LiveVolume(name="vol", labels=dict(volume.labels))}
    containers = {}
    if with_app:
        params = container_params(
            "p", Kind.CONTAINER, "app", desired.containers["app"], "busybox:1", pull=False, carry={}
        )
        containers["app"] = LiveContainer(
            id="c" * 64,
            name="app",
            image="busybox:1",
            image_id="sha256:" + "1" * 64,
            state="running",
            labels=dict(params.labels),
            mounts=(LiveMount(type="volume", target="/data", name="vol"),),
        )
    return Observed(containers=containers, volumes=volumes)


def changes(result: object) -> list[tuple[str, str, str]]:
    return [(c.resource, c.action.value, c.code.value) for c in result.changes]  # type: ignore[attr-defined]


def test_the_old_host_offers_it_once_its_containers_are_gone(tmp_path: Path) -> None:
    old, new = spec(tmp_path, "a"), spec(tmp_path, "b")
    result = plan(share(new, A), holding(share(old, A)))
    assert changes(result) == [
        ("container:app", "delete", "left-spec"),
        ("volume:vol", "update", "handoff"),
    ]
    offer = result.changes[1]
    assert offer.depends_on == ("container:app",)
    assert offer.backup_to == str(tmp_path / "shared")
    assert offer.handoff is not None and offer.handoff.state == "offered"
    assert offer.risk.value == "none"


def test_offered_it_is_kept_until_restored_elsewhere(tmp_path: Path) -> None:
    old, new = spec(tmp_path, "a"), spec(tmp_path, "b")
    observed = holding(share(old, A), with_app=False)
    offered = {"vol": {"a": Statement("a", "offered", snapshot="vol-1")}}
    result = plan(share(new, A), observed, handoffs=offered)
    assert not result.changes and result.orphans == ("volume:vol",)
    # Restored elsewhere, but from another snapshot (an older move): still kept.
    other = {**offered["vol"], "b": Statement("b", "restored", snapshot="vol-0", source="a")}
    result = plan(share(new, A), observed, handoffs={"vol": other})
    assert not result.changes and result.orphans == ("volume:vol",)


@pytest.mark.parametrize(
    ("reclaim", "expected"),
    [("delete", [("volume:vol", "delete", "left-spec")]), ("retain", [])],
)
def test_restored_elsewhere_it_is_reclaimed_by_its_policy(
    tmp_path: Path, reclaim: str, expected: list[tuple[str, str, str]]
) -> None:
    old, new = spec(tmp_path, "a", reclaim), spec(tmp_path, "b", reclaim)
    done = {
        "a": Statement("a", "offered", snapshot="vol-1"),
        "b": Statement("b", "restored", snapshot="vol-1", source="a"),
    }
    record = {"vol": {"reclaim": reclaim, "destination": ""}}
    result = plan(
        share(new, A), holding(share(old, A), False), reclaim=record, handoffs={"vol": done}
    )
    assert changes(result) == expected


def test_the_new_host_waits_for_the_old_one_and_makes_nothing_empty(tmp_path: Path) -> None:
    new = spec(tmp_path, "b")
    held = {"vol": {"a": Statement("a", "held", placement=placement_digest(["a"]))}}
    result = plan(share(new, B), Observed(), {}, handoffs=held)
    assert changes(result) == [
        ("volume:vol", "blocked", "handoff"),
        ("container:app", "blocked", "dependency-blocked"),
    ]
    assert not result.actionable


def test_the_new_host_restores_the_offer(tmp_path: Path) -> None:
    new = spec(tmp_path, "b")
    offered = {"vol": {"a": Statement("a", "offered", snapshot="vol-20261207T000000Z")}}
    result = plan(share(new, B), Observed(), handoffs=offered)
    assert changes(result)[0] == ("volume:vol", "create", "handoff")
    create = result.changes[0]
    assert create.restore_from == os.path.join(tmp_path / "shared", "p", "vol-20261207T000000Z")
    assert create.handoff is not None
    assert (create.handoff.state, create.handoff.source) == ("restored", "a")
    assert create.handoff.placement == placement_digest(["b"])


@pytest.mark.parametrize(
    "statements",
    [
        {},  # nobody ever held it: a new volume
        {"a": Statement("a", "held", placement=placement_digest(["b"]))},  # a copy of its own
        {"a": Statement("a", "released", snapshot="vol-1")},  # an old move, done
    ],
)
def test_with_no_offer_and_no_older_holder_it_is_a_new_volume(
    tmp_path: Path, statements: dict[str, Statement]
) -> None:
    result = plan(share(spec(tmp_path, "b"), B), Observed(), handoffs={"vol": statements})
    assert changes(result)[0] == ("volume:vol", "create", ReasonCode.MISSING.value)
    assert result.changes[0].restore_from is None


def test_a_move_without_a_shared_folder_is_blocked_and_keeps_the_volume(tmp_path: Path) -> None:
    old, new = spec(tmp_path, "a", rule=False), spec(tmp_path, "b", rule=False)
    result = plan(share(new, A), holding(share(old, A), False))
    assert changes(result) == [("volume:vol", "blocked", "handoff")]
    assert "no backup rule lists it" in result.changes[0].reason


def test_a_user_that_stays_blocks_the_offer(tmp_path: Path) -> None:
    old, new = spec(tmp_path, "a"), spec(tmp_path, "b")
    observed = holding(share(old, A))
    foreign = LiveContainer(
        id="d" * 64,
        name="someone",
        image="busybox:1",
        image_id="sha256:" + "2" * 64,
        state="running",
        mounts=(LiveMount(type="volume", target="/x", name="vol"),),
    )
    observed = Observed(
        containers={**observed.containers, "someone": foreign}, volumes=observed.volumes
    )
    result = plan(share(new, A), observed)
    assert ("volume:vol", "blocked", "volume-in-use") in changes(result)
    assert not [c for c in result.actionable if c.resource == "volume:vol"]


def test_a_spec_without_hosts_never_reads_statements(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "spec.yaml").write_text("version: 1\nproject: p\nvolumes: {vol: {}}\n")
    desired = load_spec(str(folder))
    offered = {"vol": {"a": Statement("a", "offered", snapshot="vol-1")}}
    result = plan(desired, Observed(), handoffs=offered)
    assert changes(result) == [("volume:vol", "create", "missing")]


# -- the statements on disk ---------------------------------------------------------------


def test_statements_round_trip_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    dest = str(tmp_path)
    write_statement(dest, "p", "vol", Statement("a", "offered", snapshot="vol-1", time="t"))
    folder = Path(statement_path(dest, "p", "vol", "a")).parent
    # A statement naming another host than its file, a path for a snapshot, a bad state,
    # a huge file, a FIFO, a link: none makes a host act.
    bad = {
        "x.json": {"format_version": 1, "host": "y", "state": "offered", "snapshot": "s"},
        "c.json": {"format_version": 1, "host": "c", "state": "offered", "snapshot": "../../etc"},
        "d.json": {"format_version": 1, "host": "d", "state": "stolen"},
        "e.json": {"format_version": 2, "host": "e", "state": "held"},
    }
    for name, data in bad.items():
        (folder / name).write_text(json.dumps(data))
    (folder / "f.json").write_text(" " * (1 << 20))
    os.mkfifo(folder / "g.json")
    (folder / "h.json").symlink_to("/etc/hostname")
    found = read_statements(dest, "p", "vol")
    assert list(found) == ["a"]
    assert found["a"] == Statement("a", "offered", snapshot="vol-1", time="t")
    with pytest.raises(ValueError):
        write_statement(dest, "p", "vol", Statement("../x", "held"))


def test_no_folder_means_no_statements(tmp_path: Path) -> None:
    assert read_statements(str(tmp_path / "absent"), "p", "vol") == {}
