"""Planner invariants over engines in any state, drawn by hypothesis.

Whatever the engine holds (renamed, paused, dead or half-replaced containers, names taken
by others, labels copied from images), a plan never names a resource twice, never acts on
an object that is not this project's own, and never deletes a container holding data
except as the old half of a replace the spec asked for.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.plan import Action, Plan, Risk, plan
from reconciler.plan.context import inherited
from reconciler.snapshot import LiveContainer, LiveImage, LiveMount, LiveVolume, Observed
from reconciler.spec import Desired, load_spec

SPEC = """
    version: 1
    project: web
    volumes:
      data: {}
    volume_containers:
      vc:
        mounts: [/scratch, "data:/shared"]
    containers:
      app:
        image: busybox:1.36
        mounts: ["data:/data"]
        volumes_from: [vc]
      web:
        image: busybox:1.36
        writable_layer: protect
    """
NAMES = ["app", "web", "vc", "app_dsr_new", "app_dsr_old", "vc_dsr_old", "app-debug", "old"]
IMAGES = {
    "sha256:" + "1" * 64: {},
    "sha256:" + "2" * 64: {"dsr.managed": "true", "dsr.project": "web", "dsr.kind": "container"},
}


@pytest.fixture(scope="module")
def desired(tmp_path_factory: pytest.TempPathFactory) -> Desired:
    path: Path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return load_spec(str(path), env={})


labels = st.fixed_dictionaries(
    {},
    optional={
        "dsr.managed": st.sampled_from(["true", "false"]),
        "dsr.project": st.sampled_from(["web", "other"]),
        "dsr.kind": st.sampled_from(["container", "volume_container", "image"]),
        "dsr.name": st.sampled_from(NAMES),
        "dsr.config-hash": st.sampled_from(["v2:" + "0" * 64, "f" * 64]),
    },
)
mounts = st.lists(
    st.builds(
        LiveMount,
        type=st.just("volume"),
        target=st.sampled_from(["/data", "/scratch", "/shared"]),
        name=st.sampled_from(["data", "a" * 64, "b" * 64]),
    ),
    max_size=3,
    unique_by=lambda m: m.target,
)


@st.composite
def containers(draw: st.DrawFn) -> dict[str, LiveContainer]:
    out = {}
    for index, name in enumerate(draw(st.lists(st.sampled_from(NAMES), unique=True))):
        image_id = draw(st.sampled_from(sorted(IMAGES)))
        own = draw(labels)
        if draw(st.booleans()):
            own = {**IMAGES[image_id], **own}  # some labels copied from the image
        out[name] = LiveContainer(
            id=f"{index:064x}",
            name=name,
            image="busybox:1.36",
            image_id=image_id,
            state=draw(st.sampled_from(["created", "running", "exited", "paused", "dead"])),
            labels=own,
            mounts=tuple(draw(mounts)),
            size_rw=draw(st.sampled_from([None, 0, 4096])),
        )
    return out


@st.composite
def snapshots(draw: st.DrawFn) -> Observed:
    images: dict[str, LiveImage] = {}
    for image_id, image_labels in IMAGES.items():
        image = LiveImage(
            id=image_id, tags=("busybox:1.36",) if "1" in image_id else (), labels=image_labels
        )
        images[image_id] = image
    images["busybox:1.36"] = images["sha256:" + "1" * 64]
    volumes = {
        name: LiveVolume(name=name, labels=draw(labels))
        for name in draw(st.lists(st.sampled_from(["data", "a" * 64, "b" * 64]), unique=True))
    }
    return Observed(containers=draw(containers()), volumes=volumes, images=images)


def check(result: Plan, observed: Observed) -> None:
    resources = [c.resource for c in result.changes]
    assert len(resources) == len(set(resources)), resources
    by_id = {c.id: c for c in observed.containers.values()}
    for change in result.changes:
        live = by_id.get(change.target_id or "")
        if live is None or change.action is Action.BLOCKED:
            continue
        # Only this project's own containers are ever started, replaced or deleted.
        assert live.labels.get("dsr.managed") == "true", change
        assert live.labels.get("dsr.project") == "web", change
        assert not inherited(live, observed), change
        if change.action is Action.DELETE and live.size_rw:
            # only the old half of an approved replace, of a container that may drop it
            assert change.code == "leftover" and live.name.endswith("_dsr_old"), change
            assert live.labels.get("dsr.name") != "web", "web is writable_layer: protect"
        if change.action is Action.REPLACE and live.size_rw and live.name == "web":
            pytest.fail(f"a protected writable layer was replaced: {change}")
    for change in result.changes:
        if change.risk is Risk.DATA_LOSS:
            assert change.action is Action.BLOCKED, change


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observed=snapshots())
def test_any_engine_state_gives_a_plan_that_keeps_the_invariants(
    desired: Desired, observed: Observed
) -> None:
    check(plan(desired, observed), observed)
