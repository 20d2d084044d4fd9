"""Networks in the spec and the planner: forms, references, hashes, and the plan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.plan import plan
from reconciler.plan.params import config_hash
from reconciler.plan.simulate import simulate
from reconciler.snapshot import LiveContainer, LiveNetwork, Observed
from reconciler.spec import Desired, load_spec
from reconciler.spec.models import Container

SPEC = """
networks:
  web_default: {}
containers:
  db:
    image: busybox:1.36
    networks:
      web_default: {aliases: [database]}
  app:
    image: busybox:1.36
    networks: [web_default]
"""


def load(tmp_path: Path, text: str) -> Desired:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nproject: web\n" + textwrap.dedent(text))
    return load_spec(str(path), env={})


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    return [str(issue).replace(str(tmp_path), "$TMP") for issue in caught.value.issues]


def test_list_and_map_forms_read_the_same(tmp_path: Path) -> None:
    desired = load(tmp_path, SPEC)
    assert desired.containers["app"].networks["web_default"].aliases == []
    assert desired.containers["db"].networks["web_default"].aliases == ["database"]
    nothing = load(tmp_path, SPEC.replace("networks: [web_default]", "networks: {web_default: }"))
    assert nothing.containers["app"] == desired.containers["app"]


def test_a_container_without_networks_keeps_its_hash() -> None:
    plain = Container(image="busybox")
    assert config_hash(plain, "busybox") == config_hash(
        Container(image="busybox", networks={}), "busybox"
    )
    assert config_hash(plain, "busybox") != config_hash(
        Container(image="busybox", networks=["nn"]),  # type: ignore[arg-type]
        "busybox",
    )


def test_bad_networks_are_named_with_file_line_and_path(tmp_path: Path) -> None:
    found = errors(tmp_path, SPEC.replace("networks: [web_default]", "networks: [web_defualt]"))
    assert found == [
        "$TMP/spec.yaml:13: containers.app.networks.web_defualt: network 'web_defualt' is not "
        "defined; did you mean 'web_default'?"
    ]
    found = errors(tmp_path, SPEC.replace("web_default: {}", "web_default: {driver: overlay}"))
    assert len(found) == 1 and "networks.web_default.driver" in found[0]
    found = errors(tmp_path, SPEC.replace("[database]", "['-x']"))
    assert len(found) == 1 and "is not a host name" in found[0]
    found = errors(tmp_path, SPEC.replace("networks: [web_default]", "networks: [a, a]"))
    assert len(found) == 1 and "listed twice" in found[0]


def test_the_plan_makes_networks_before_their_containers(tmp_path: Path) -> None:
    desired = load(tmp_path, SPEC)
    result = plan(desired, Observed())
    assert [(c.resource, c.action.value) for c in result.changes] == [
        ("network:web_default", "create"),
        ("container:app", "create"),
        ("container:db", "create"),
    ]
    db = result.changes[2].container
    assert db is not None and db.networks[0].network == "web_default"
    assert db.networks[0].aliases == ("database",)
    assert result.changes[1].depends_on == ("network:web_default",)
    # Converged: nothing to do; disconnected by hand: drift.
    converged = simulate(desired, {})
    assert plan(desired, converged).changes == ()
    app = converged.containers["app"]
    moved = Observed(
        containers={**converged.containers, "app": _with(app, networks=("bridge",))},
        networks=converged.networks,
        images=converged.images,
    )
    assert [(c.resource, c.code.value) for c in plan(desired, moved).changes] == [
        ("container:app", "networks-drifted")
    ]


def _with(live: LiveContainer, **changes: object) -> LiveContainer:
    import dataclasses

    return dataclasses.replace(live, **changes)  # type: ignore[arg-type]


def test_a_network_taken_by_hand_is_blocked_unless_adopted(tmp_path: Path) -> None:
    hand = LiveNetwork(id="n" * 64, name="web_default", labels={"com.docker.compose.network": "x"})
    observed = Observed(networks={"web_default": hand})
    desired = load(tmp_path, "networks:\n  web_default: {}\n")
    assert [(c.action.value, c.code.value) for c in plan(desired, observed).changes] == [
        ("blocked", "unmanaged-clash")
    ]
    adopting = load(tmp_path, "networks:\n  web_default: {adopt: true}\n")
    change = plan(adopting, observed).changes[0]
    assert (change.action.value, change.code.value, change.identity) == ("adopt", "adopt", hand.id)
    # Recorded by id: no change; another network under that name is not the adopted one.
    assert plan(adopting, observed, network_adoptions={"web_default": hand.id}).changes == ()
    other = Observed(networks={"web_default": LiveNetwork(id="m" * 64, name="web_default")})
    assert plan(desired, other, network_adoptions={"web_default": hand.id}).changes[
        0
    ].code.value == ("unmanaged-clash")


def test_a_network_that_left_the_spec_goes_after_its_users(tmp_path: Path) -> None:
    converged = simulate(load(tmp_path, SPEC), {})
    desired = load(tmp_path, "volumes:\n  other: {}\n")
    result = plan(desired, converged)
    network = next(c for c in result.changes if c.resource == "network:web_default")
    assert network.action.value == "delete" and network.risk.value == "none"
    assert set(network.depends_on) == {"container:app", "container:db"}
    # One that stays attached (somebody else's container) blocks it.
    stranger = LiveContainer(
        id="s" * 64, name="x", image="i", image_id="", state="running", networks=("web_default",)
    )
    busy = Observed(
        containers={**converged.containers, "x": stranger},
        networks=converged.networks,
        images=converged.images,
    )
    blocked = next(c for c in plan(desired, busy).changes if c.resource == "network:web_default")
    assert (blocked.action.value, blocked.code.value) == ("blocked", "network-in-use")


def test_status_lists_the_spec_networks(tmp_path: Path) -> None:
    from reconciler.status import resource_states

    desired = load(tmp_path, SPEC)
    states = {
        s.resource: s.state for s in resource_states(desired, plan(desired, Observed()).changes)
    }
    assert states["network:web_default"] == "missing"
    converged = simulate(desired, {})
    states = {
        s.resource: s.state for s in resource_states(desired, plan(desired, converged).changes)
    }
    assert states["network:web_default"] == "in-sync"
