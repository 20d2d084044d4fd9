"""Which builds of a data-packed image the planner removes: never the one in service."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reconciler.plan import Action, plan
from reconciler.plan.simulate import simulate
from reconciler.snapshot import LiveImage, Observed
from reconciler.spec import load_spec

SPEC = """\
version: 1
project: web
images:
  htdocs: {context: ./ctx, path: /srv}
volume_containers:
  vc: {image: htdocs}
"""


def build(tag: str, created: int) -> LiveImage:
    labels = {
        "dsr.managed": "true",
        "dsr.project": "web",
        "dsr.kind": "image",
        "dsr.name": "htdocs",
    }
    return LiveImage(id=f"sha256:{tag[-1] * 64}", tags=(tag,), labels=labels, created=created)


def deleted_images(tmp_path: Path, running: str) -> list[str]:
    """Builds A, B and A again were made in that order; C is new; ``running`` is in service."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "spec.yaml").write_text(SPEC)
    desired = load_spec(str(tmp_path / "spec.yaml"), env={})
    a, b = build("dsr/web-htdocs:a", 100), build("dsr/web-htdocs:b", 200)
    a = dataclasses.replace(a, created=300)  # A rebuilt after B: the newest build
    after = simulate(desired, {"htdocs": running})
    # Only the builds above: leave out the stand-in build the simulation makes for ``running``.
    images = {k: v for k, v in after.images.items() if v.labels.get("dsr.kind") != "image"}
    images.update({a.tags[0]: a, a.id: a, b.tags[0]: b, b.id: b})
    vc = after.containers["vc"]
    live = {"vc": dataclasses.replace(vc, image=running, image_id=images[running].id)}
    observed = Observed(containers=live, volumes=after.volumes, images=images)
    result = plan(desired, observed, {"htdocs": "dsr/web-htdocs:c"})
    return [c.resource for c in result.changes if c.action is Action.DELETE and c.kind == "image"]


def test_the_build_in_service_is_the_previous_one_and_stays(tmp_path: Path) -> None:
    # The volume container runs B, though A was built later: B is what a rollback needs.
    assert deleted_images(tmp_path, running="dsr/web-htdocs:b") == ["image:dsr/web-htdocs:a"]


def test_the_newest_build_in_service_stays(tmp_path: Path) -> None:
    assert deleted_images(tmp_path, running="dsr/web-htdocs:a") == ["image:dsr/web-htdocs:b"]
