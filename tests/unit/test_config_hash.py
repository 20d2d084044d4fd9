"""Config hashes: explicit, versioned inputs that survive upgrades.

The golden file pins, for the example specs, the ``dsr.config-hash`` of every object this
version creates (v2) and the one dsr 0.1.0 created for the same spec (recorded by running
0.1.0 itself): a change to the v2 input shows up here, and 0.1.0's objects must be
recognised as up to date, never replaced by an upgrade.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from reconciler.plan import plan
from reconciler.plan.params import (
    HASHED,
    HASHED_V1,
    config_hash,
    digest,
    expand,
    hash_input,
    matches,
)
from reconciler.reconcile import pack_images
from reconciler.snapshot import Observed
from reconciler.spec import Container, Desired, Mount, Volume, VolumeContainer, load_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((Path(__file__).parent / "golden" / "config-hashes.json").read_text())
# Bind sources are absolute paths, and part of the hash: the examples are copied to one
# fixed place, as they were when the golden hashes were recorded.
FIXED = Path("/tmp/dsr-golden-examples")
ENV = {"HOME": "/root"}
# Model fields that never force a recreate, on purpose. Every other field must be in HASHED:
# a new field is a decision, not an accident.
NOT_HASHED = {
    # adopt: taking an object over is a planning rule; once dsr's, it is config as any other.
    # hosts places a resource; it is not its config (moving it must not recreate it).
    Volume: {"external", "reclaim", "on_change", "adopt", "hosts"},
    Container: {"state", "writable_layer", "adopt", "depends_on", "hosts"},
    VolumeContainer: {"adopt", "hosts"},
    Mount: set(),
}


@pytest.fixture(scope="module")
def examples() -> Iterator[dict[str, Desired]]:
    with open("/tmp/dsr-golden-examples.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs share the fixed folder
        shutil.rmtree(FIXED, ignore_errors=True)
        shutil.copytree(ROOT / "specs" / "examples", FIXED)
        yield {name: load_spec(str(FIXED / name), env=ENV) for name in ("quickstart", "seed")}


def created(desired: Desired) -> dict[str, tuple[BaseModel, str | None, str]]:
    """resource -> (its spec model, the image it resolves to, the hash it is created with)."""
    tags = {key: image.tag for key, image in pack_images(desired, None).items()}
    out: dict[str, tuple[BaseModel, str | None, str]] = {}
    for change in plan(desired, Observed(), tags).changes:
        kind, name = change.resource.split(":", 1)
        if change.volume is not None:
            out[change.resource] = (
                desired.volumes[name],
                None,
                change.volume.labels["dsr.config-hash"],
            )
        elif change.container is not None:
            section = desired.containers if kind == "container" else desired.volume_containers
            labels = change.container.labels
            out[change.resource] = (
                section[name],
                change.container.image,
                labels["dsr.config-hash"],
            )
    return out


def test_the_example_specs_hash_as_pinned(examples: dict[str, Desired]) -> None:
    got = {
        f"{name}/{resource}": value[2]
        for name, desired in examples.items()
        for resource, value in created(desired).items()
    }
    pinned = {k: v for k, v in GOLDEN["v2"].items() if not k.split("/", 1)[1].startswith("image:")}
    assert got == pinned


def test_objects_made_by_dsr_0_1_0_are_recognised(examples: dict[str, Desired]) -> None:
    old = GOLDEN["v1 (dsr 0.1.0)"]
    checked = 0
    for name, desired in examples.items():
        for resource, (model, image, new_hash) in created(desired).items():
            legacy = old[f"{name}/{resource}"]
            assert not legacy.startswith("v2:")
            assert matches(legacy, model, image), resource
            assert matches(new_hash, model, image), resource
            assert not matches(legacy[:-1] + "0", model, image)
            checked += 1
    assert checked == len(old) > 10


def test_a_field_at_its_default_never_enters_the_hash() -> None:
    assert hash_input(Container(image="busybox"), "busybox") == {"image": "busybox"}
    explicit = Container(image="busybox", init=False, stop_timeout=10, env={}, mounts=[])
    assert config_hash(explicit, "busybox") == config_hash(Container(image="busybox"), "busybox")
    mount = Mount.model_validate("data:/data")
    assert hash_input(mount) == {"type": "volume", "source": "data", "target": "/data"}
    assert hash_input(Volume()) == {}


@pytest.mark.parametrize(
    "changed",
    [
        {"command": ["sleep", "1"]},
        {"env": {"A": "1"}},
        {"stop_signal": "SIGUSR1"},
        {"stop_timeout": 30},
        {"init": True},
        {"restart": "always"},
        {"mounts": ["data:/data:ro"]},
        {"volumes_from": ["vc:ro"]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_hashed_field_changes_the_hash(changed: dict[str, object]) -> None:
    base = Container(image="busybox")
    assert config_hash(Container(image="busybox", **changed), "busybox") != config_hash(
        base, "busybox"
    )


def test_the_0_1_0_hash_never_matches_a_field_0_1_0_did_not_know() -> None:
    # 0.1.0 hashed every field it knew, defaults included, and nothing else: a spec that
    # sets init must not pass for the container 0.1.0 made without it.
    plain = Container(image="busybox")
    legacy = digest({**_full_v1(plain), "image": "busybox"})
    assert matches(legacy, plain, "busybox")
    assert not matches(legacy, Container(image="busybox", init=True), "busybox")
    assert not matches(legacy, Container(image="busybox", stop_timeout=3), "busybox")


def _full_v1(model: BaseModel) -> dict[str, object]:
    """0.1.0's input: ``model_dump(mode="json", exclude={"state"})`` of its model."""
    data = model.model_dump(mode="json", include=set(HASHED_V1[type(model)]))
    return data


@pytest.mark.parametrize("model", [Volume, Container, VolumeContainer, Mount])
def test_every_model_field_is_hashed_or_left_out_on_purpose(model: type[BaseModel]) -> None:
    assert set(model.model_fields) == set(HASHED[model]) | NOT_HASHED[model]


def test_expand_makes_0_1_0_and_sparse_inputs_comparable() -> None:
    spec = Container(image="busybox", mounts=["data:/data"])  # type: ignore[list-item]
    sparse = hash_input(spec, "busybox")
    full = {**_full_v1(spec), "image": "busybox"}
    assert expand(Container, sparse) == expand(Container, full)


def test_hashes_kept_by_identity_follow_each_model() -> None:
    """A loaded spec's hashes are kept by model identity (a daemon plans the same models
    pass after pass); each new model, made and dropped in turn, gets its own hash, and the
    same model asked again gets the same."""
    for n in range(200):
        volume = Volume(labels={"n": str(n)})
        expected = f"v2:{digest(hash_input(volume))}"
        assert config_hash(volume) == expected
        assert config_hash(volume) == expected
        del volume
    container = Container(image="busybox", command=["true"])
    assert config_hash(container, "busybox:1") != config_hash(container, "busybox:2")
    assert config_hash(container, "busybox:1") == f"v2:{digest(hash_input(container, 'busybox:1'))}"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Volume, {"driver_opts": {"type": "tmpfs", "device": "tmpfs"}}),
        (Container, {"image": "busybox", "mounts": ["data:/data"]}),
        (VolumeContainer, {"mounts": ["/srv/x"]}),
    ],
)
def test_hosts_never_change_a_config_hash(model: type[BaseModel], data: dict[str, object]) -> None:
    """Placing a resource on hosts (or moving it) is no reason to recreate it where it stays."""
    plain = model.model_validate(data)
    placed = model.model_validate({**data, "hosts": ["web-*", "role=db"]})
    assert config_hash(placed, "busybox") == config_hash(plain, "busybox")
    assert hash_input(placed, "busybox") == hash_input(plain, "busybox")
