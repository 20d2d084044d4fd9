"""A bind source swapped for another kind (a folder for a file, or back) is drift."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.plan import Action, plan
from reconciler.plan.simulate import simulate
from reconciler.spec import load_spec

SPEC = """\
version: 1
project: web
containers:
  app:
    image: busybox:1.36
    mounts:
      - ./site:/srv/site:ro
      - ./motd:/etc/motd:ro
"""


def test_a_source_that_changed_kind_is_drift_and_one_that_did_not_is_not(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "motd").write_text("hello\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    made = load_spec(str(spec), env={})
    assert made.bind_kinds == {str(tmp_path / "site"): "dir", str(tmp_path / "motd"): "file"}
    engine = simulate(made, {})
    assert plan(made, engine).changes == ()

    shutil.rmtree(tmp_path / "site")
    (tmp_path / "site").write_text("a file now\n")
    (tmp_path / "motd").unlink()
    (tmp_path / "motd").mkdir()
    (change,) = plan(load_spec(str(spec), env={}), engine).changes
    assert (change.action, change.code) == (Action.REPLACE, "mounts-drifted")
    assert (
        f"the bind source {tmp_path}/site at /srv/site was a directory when the container "
        "was made and is now a file" in change.reason
    )
    assert (
        f"{tmp_path}/motd at /etc/motd was a file when the container was made and is now "
        "a directory" in change.reason
    )


def test_containers_made_before_kinds_were_recorded_are_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "motd").write_text("hello\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    made = load_spec(str(spec), env={})
    engine = simulate(made, {})
    live = engine.containers["app"]
    labels = {k: v for k, v in live.labels.items() if k != "dsr.bind-kinds"}
    old = engine.__class__(
        containers={"app": live.__class__(**{**live.__dict__, "labels": labels})},
        volumes=engine.volumes,
        images=engine.images,
    )
    assert plan(made, old).changes == ()
