"""The observer, from Engine API JSON recorded on a real engine (fixtures/engine-api/).

``record.py`` beside the fixtures made them: a running container with a named volume, a
read-only bind, a tmpfs and an anonymous volume; a volume container and the new half of a
replace interrupted mid-way; a container made by hand; an image with a label of its own
(which Docker copies into every container made from it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.engine import Engine
from reconciler.errors import EngineError, EngineTimeout
from reconciler.observe import measure_writable_layers, observe
from reconciler.snapshot import LiveMount

FIXTURES = Path(__file__).parent / "fixtures" / "engine-api"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeAPI:
    """The three list endpoints, answering with what the engine answered."""

    def __init__(self, fail: Exception | None = None, failing: str = "") -> None:
        self.fail = fail
        self.failing = failing  # only this endpoint fails; "": all of them
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, endpoint: str, value: Any, **kwargs: Any) -> Any:
        self.calls.append((endpoint, kwargs))
        if self.fail is not None and self.failing in ("", endpoint):
            raise self.fail
        return value

    def containers(self, **kwargs: Any) -> Any:
        rows = recorded("containers.json")
        if kwargs.get("size"):
            wanted = set(kwargs["filters"]["id"])
            rows = [{**r, "SizeRw": 9} for r in rows if r["Id"] in wanted]
        return self._answer("containers", rows, **kwargs)

    def volumes(self, **kwargs: Any) -> Any:
        return self._answer("volumes", recorded("volumes.json"), **kwargs)

    def images(self, **kwargs: Any) -> Any:
        return self._answer("images", recorded("images.json"), **kwargs)


def engine(api: FakeAPI) -> Engine:
    fake = Engine.__new__(Engine)
    fake.url, fake.timeout, fake.calls = "unix:///recorded.sock", 30.0, 0
    fake.api = api  # type: ignore[assignment]
    return fake


def test_a_snapshot_takes_three_list_calls() -> None:
    api = FakeAPI()
    observe(engine(api))
    assert sorted(endpoint for endpoint, _ in api.calls) == ["containers", "images", "volumes"]
    assert dict(api.calls)["containers"] == {"all": True}


def test_containers_keep_names_states_labels_and_mounts() -> None:
    observed = observe(engine(FakeAPI()))
    assert sorted(observed.containers) == [
        "dsrrec-by-hand",
        "dsrrec-vc",
        "dsrrec-vc_dsr_new",
        "dsrrec-web",
    ]
    web = observed.containers["dsrrec-web"]
    assert web.state == "running"
    assert web.image == "dsrrec/busybox:1"
    assert web.image_id.startswith("sha256:")
    assert web.managed and web.project == "rec"
    data = web.mount_at("/data")
    assert data == LiveMount(
        type="volume",
        target="/data",
        source="/var/lib/docker/volumes/dsrrec-data/_data",
        name="dsrrec-data",
        read_only=False,
    )
    site = web.mount_at("/site")
    assert site is not None and site.type == "bind" and site.read_only and not site.name
    anonymous = web.mount_at("/var/cache")
    assert anonymous is not None and len(anonymous.name) == 64 and not anonymous.source
    # The engine does not list tmpfs mounts: the planner must never expect them.
    assert web.mount_at("/tmp/cache") is None
    assert web.size_rw is None  # not measured by a snapshot


def test_a_replace_interrupted_mid_way_shows_both_halves_under_one_name() -> None:
    observed = observe(engine(FakeAPI()))
    old, new = observed.containers["dsrrec-vc"], observed.containers["dsrrec-vc_dsr_new"]
    assert old.labels["dsr.name"] == new.labels["dsr.name"] == "dsrrec-vc"
    assert old.state == new.state == "created"
    # Each has its own anonymous volume at the same target; the shared one is the same.
    assert old.mount_at("/scratch") != new.mount_at("/scratch")
    assert old.mount_at("/shared") == new.mount_at("/shared")


def test_image_labels_reach_containers_made_from_the_image() -> None:
    observed = observe(engine(FakeAPI()))
    by_hand = observed.containers["dsrrec-by-hand"]
    image = observed.images[by_hand.image]
    assert dict(image.labels) == {"team": "storage"}
    assert by_hand.labels == image.labels and not by_hand.managed
    assert observed.images[image.id] is image
    assert observed.image_id("dsrrec/busybox:1") == image.id


def test_volumes_anonymous_and_named() -> None:
    observed = observe(engine(FakeAPI()))
    named = observed.volumes["dsrrec-data"]
    assert named.managed and named.project == "rec" and named.driver == "local"
    assert dict(named.options) == {}  # the engine sends null
    anonymous = [v for v in observed.volumes.values() if len(v.name) == 64]
    assert len(anonymous) == 3 and all(not v.labels for v in anonymous)
    assert observed.volume_users("dsrrec-data") == ["dsrrec-vc", "dsrrec-vc_dsr_new", "dsrrec-web"]


def test_writable_layers_are_measured_in_one_call_for_the_ids_asked() -> None:
    api = FakeAPI()
    web = observe(engine(api)).containers["dsrrec-web"]
    sizes = measure_writable_layers(engine(api), [web.id, web.id])
    assert sizes == {web.id: 9}
    assert api.calls[-1] == ("containers", {"all": True, "size": True, "filters": {"id": [web.id]}})


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), EngineTimeout, "did not answer within"),
        (requests.exceptions.ConnectionError("refused"), EngineError, "cannot read the engine"),
    ],
)
def test_engine_failures_are_dsr_errors(error: Exception, kind: type, words: str) -> None:
    with pytest.raises(kind, match=words):
        observe(engine(FakeAPI(fail=error)))


@pytest.mark.parametrize("failing", ["containers", "volumes", "images"])
def test_one_failed_list_call_fails_the_snapshot(failing: str) -> None:
    """The calls run together; whichever fails, the snapshot fails with the engine's error
    (never a partial snapshot that would plan creating what exists)."""
    api = FakeAPI(fail=requests.exceptions.ConnectionError("refused"), failing=failing)
    with pytest.raises(EngineError, match="cannot read the engine"):
        observe(engine(api))
    assert sorted(endpoint for endpoint, _ in api.calls) == ["containers", "images", "volumes"]


class InspectingAPI(FakeAPI):
    """Also ``docker inspect``: every container restarts always and publishes 8080."""

    def inspect_container(self, container_id: str) -> Any:
        return self._answer(
            "inspect",
            {
                "Config": {"Cmd": ["sleep", "60"], "Env": ["A=b"], "StopTimeout": 3},
                "HostConfig": {
                    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                    "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                    "Init": True,
                },
            },
            id=container_id,
        )


def test_the_projects_containers_are_inspected_once_while_nothing_happens() -> None:
    api = InspectingAPI()
    fake = engine(api)
    fake.inspected, fake.inspected_epoch, fake.keep_inspected = {}, 0, True
    observed = observe(fake, "rec")
    mine = [c for c in observed.containers.values() if c.project == "rec"]
    inspected = [kw["id"] for endpoint, kw in api.calls if endpoint == "inspect"]
    assert sorted(inspected) == sorted(c.id for c in mine) and len(mine) == 3
    config = mine[0].config
    assert config is not None
    assert (config.restart, config.command, config.stop_timeout, config.init) == (
        "on-failure:2",
        ("sleep", "60"),
        3,
        True,
    )
    assert config.bindings == frozenset({"80/tcp=:8080"})
    assert all(c.config is None for c in observed.containers.values() if c.project != "rec")

    api.calls.clear()
    again = observe(fake, "rec")  # the daemon's next pass: no event came
    assert [e for e, _ in api.calls if e == "inspect"] == []
    assert again.containers == observed.containers
    fake.inspected_epoch += 1  # a container event: forget what was read
    fake.inspected = {}
    observe(fake, "rec")
    assert len([e for e, _ in api.calls if e == "inspect"]) == 3
