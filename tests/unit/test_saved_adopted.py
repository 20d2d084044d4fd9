"""Saved plans and what a project adopted: Docker cannot label an adopted volume or
network (nor the container an interrupted adoption renamed), so a saved plan may act on
them only as the project's record says; and the networks are part of the fingerprint, so
a plan saved before a network changed is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import PlanError, StalePlanError
from reconciler.plan import Action, Change, Plan
from reconciler.plan.model import ReasonCode
from reconciler.saved import Adoptions, SavedPlan, check_fresh, check_saved, fingerprint
from reconciler.snapshot import LiveContainer, LiveNetwork, LiveVolume, Observed
from reconciler.spec.policy import Policy

NET = LiveNetwork(id="n" * 64, name="shop_default")
VOLUME = LiveVolume(name="shop_db", created_at="2026-12-07T10:00:00Z")
RENAMED = LiveContainer(
    id="c" * 64, name="web_dsr_old", image="busybox", image_id="sha256:1", state="exited"
)
OBSERVED = Observed(
    networks={NET.name: NET},
    volumes={VOLUME.name: VOLUME},
    containers={RENAMED.name: RENAMED},
)
DELETES = Plan(
    project="shop",
    changes=(
        Change("network:shop_default", Action.DELETE, "", ReasonCode.LEFT_SPEC, target_id=NET.id),
        Change("volume:shop_db", Action.DELETE, "", ReasonCode.LEFT_SPEC, target_id=VOLUME.name),
        Change(
            "container:web_dsr_old", Action.DELETE, "", ReasonCode.LEFTOVER, target_id=RENAMED.id
        ),
    ),
)


def test_a_saved_plan_may_delete_what_the_record_says_the_project_adopted(
    tmp_path: Path,
) -> None:
    policy = Policy(state_dir=str(tmp_path / "state"))
    with pytest.raises(PlanError) as refused:
        check_saved("plan.json", DELETES, OBSERVED, policy)  # labels alone: not its own
    for resource in ("network:shop_default", "volume:shop_db", "container:web_dsr_old"):
        assert f"{resource}: " in str(refused.value)
    owned = Adoptions(
        volumes={VOLUME.name: VOLUME.identity},
        networks={NET.name: NET.id},
        renamed={"web": RENAMED.id},
    )
    check_saved("plan.json", DELETES, OBSERVED, policy, owned)
    # Another object under the adopted names (made again behind dsr's back) is not it.
    other = Adoptions(
        volumes={VOLUME.name: "2020-01-01T00:00:00Z"},
        networks={NET.name: "m" * 64},
        renamed={"web": "d" * 64},
    )
    with pytest.raises(PlanError) as again:
        check_saved("plan.json", DELETES, OBSERVED, policy, other)
    assert str(again.value).count("is not") == 3


def test_a_network_that_changed_since_the_plan_was_saved_makes_it_stale() -> None:
    tokens = fingerprint(OBSERVED, DELETES, {"shop_db"})
    assert "network:shop_default" in tokens  # acted on: in the fingerprint, labels or not
    saved = SavedPlan(plan=Plan(project="shop", changes=DELETES.changes, fingerprint=tokens), names=frozenset({"shop_db"}))  # fmt: skip
    check_fresh(OBSERVED, saved)
    remade = LiveNetwork(id="m" * 64, name="shop_default")
    with pytest.raises(StalePlanError, match="network:shop_default changed"):
        check_fresh(Observed(networks={NET.name: remade}, volumes=OBSERVED.volumes, containers=OBSERVED.containers), saved)  # fmt: skip
    internal = LiveNetwork(id=NET.id, name="shop_default", internal=True)
    with pytest.raises(StalePlanError, match="network:shop_default changed"):
        check_fresh(Observed(networks={NET.name: internal}, volumes=OBSERVED.volumes, containers=OBSERVED.containers), saved)  # fmt: skip


def test_a_container_attached_to_another_network_since_makes_it_stale() -> None:
    mine = LiveContainer(
        id="e" * 64,
        name="app",
        image="busybox",
        image_id="sha256:1",
        state="running",
        labels={"dsr.managed": "true", "dsr.project": "shop"},
        networks=("shop_default",),
    )
    plan = Plan(project="shop", changes=())
    tokens = fingerprint(Observed(containers={"app": mine}), plan, {"app"})
    saved = SavedPlan(plan=Plan(project="shop", fingerprint=tokens), names=frozenset({"app"}))
    moved = LiveContainer(**{**mine.__dict__, "networks": ("shop_default", "other")})
    with pytest.raises(StalePlanError, match="container:app changed"):
        check_fresh(Observed(containers={"app": moved}), saved)
