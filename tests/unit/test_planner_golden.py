"""Golden planner tests: a literal spec and a literal engine snapshot in, the plan out.

Each case is one spec (YAML, loaded with ``load_spec``) and one ``Observed`` snapshot, and
the text plan it must give, exactly; some cases also pin the contract's JSON exactly, and
every case checks that the JSON has the contract's shape and holds the same changes,
in the same order, as the plan the text was rendered from.

The snapshot is built the way an engine would hold it: ``simulate`` gives the snapshot of
an engine converged to a spec (``before``: the spec itself unless the case says otherwise,
``EMPTY`` for an engine with nothing on it), then the case's ``edit`` changes it with
``dataclasses.replace`` (a container that exited, an image that moved, objects someone
else made). Nothing here talks to Docker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.plan import Plan, plan
from reconciler.plan.model import SUMMARY_ORDER, Action, Risk
from reconciler.plan.simulate import simulate
from reconciler.render import render_json, render_markdown, render_text
from reconciler.snapshot import LiveContainer, LiveImage, LiveMount, LiveVolume, Observed
from reconciler.spec import Desired, load_spec

Edit = Callable[[Observed], Observed]

EMPTY = "<an engine with nothing on it>"
ANON = "a" * 64  # an anonymous volume, named as Docker names them
OLD_IMAGE = "sha256:" + "1" * 64
NEW_IMAGE = "sha256:" + "2" * 64

BASE = """
    version: 1
    project: web
    volumes:
      data: {}
      logs: {}
    volume_containers:
      vc_logs:
        mounts:
          - logs:/logs
          - /cache
    containers:
      app:
        image: busybox:1.36
        command: [sleep, "3600"]
        mounts:
          - data:/data
        volumes_from: [vc_logs]
    """

# volumes_from order differs from name order; one volume container is used by no one.
ORDERING = """
    version: 1
    project: web
    volumes:
      b-vol: {}
      a-vol: {}
    volume_containers:
      zz_vc:
        mounts: [a-vol:/a]
      mm_vc:
        mounts: [b-vol:/b]
    containers:
      alpha:
        image: busybox:1.36
        volumes_from: [beta]
      beta:
        image: busybox:1.36
        volumes_from: [zz_vc]
      aaa:
        image: busybox:1.36
    """


def variant(old: str, new: str, spec: str = BASE) -> str:
    assert old in spec, old
    return spec.replace(old, new)


# --- snapshot edits -------------------------------------------------------------------------


def unchanged(observed: Observed) -> Observed:
    return observed


def edits(*steps: Edit) -> Edit:
    def run(observed: Observed) -> Observed:
        for step in steps:
            observed = step(observed)
        return observed

    return run


def _containers(observed: Observed, containers: Mapping[str, LiveContainer]) -> Observed:
    return dataclasses.replace(observed, containers=dict(containers))


def container(name: str, **changes: Any) -> Edit:
    """The live container ``name`` with some of its fields changed."""

    def run(observed: Observed) -> Observed:
        live = dataclasses.replace(observed.containers[name], **changes)
        return _containers(observed, {**observed.containers, name: live})

    return run


def labels_of(name: str, *, drop: tuple[str, ...] = (), **add: str) -> Edit:
    def run(observed: Observed) -> Observed:
        live = observed.containers[name]
        labels = {k: v for k, v in live.labels.items() if k not in drop}
        return container(name, labels={**labels, **add})(observed)

    return run


def mount(owner: str, target: str, **changes: Any) -> Edit:
    """One mount of the live container ``owner`` changed; no changes: the mount removed."""

    def run(observed: Observed) -> Observed:
        mounts = []
        for m in observed.containers[owner].mounts:
            if m.target != target:
                mounts.append(m)
            elif changes:
                mounts.append(dataclasses.replace(m, **changes))
        return container(owner, mounts=tuple(mounts))(observed)

    return run


def unmount(owner: str, target: str) -> Edit:
    return mount(owner, target)


def copy(name: str, new_name: str, *, logical: str | None = None, **changes: Any) -> Edit:
    """A second live container made like ``name``; ``logical`` is its dsr.name label."""

    def run(observed: Observed) -> Observed:
        live = observed.containers[name]
        labels = {**live.labels, "dsr.name": logical or new_name}
        twin = dataclasses.replace(live, id=_id(new_name), name=new_name, labels=labels, **changes)
        return _containers(observed, {**observed.containers, new_name: twin})

    return run


def drop(name: str) -> Edit:
    def run(observed: Observed) -> Observed:
        return _containers(observed, {k: v for k, v in observed.containers.items() if k != name})

    return run


def add(*objects: LiveContainer | LiveVolume) -> Edit:
    def run(observed: Observed) -> Observed:
        containers = dict(observed.containers)
        volumes = dict(observed.volumes)
        for obj in objects:
            if isinstance(obj, LiveContainer):
                containers[obj.name] = obj
            else:
                volumes[obj.name] = obj
        return dataclasses.replace(observed, containers=containers, volumes=volumes)

    return run


def image(reference: str, image_id: str) -> Edit:
    def run(observed: Observed) -> Observed:
        live = LiveImage(id=image_id, tags=(reference,))
        return dataclasses.replace(
            observed, images={**observed.images, reference: live, image_id: live}
        )

    return run


# --- literal live objects -------------------------------------------------------------------

SHOP = {"dsr.managed": "true", "dsr.project": "shop"}
OURS = {"dsr.managed": "true", "dsr.project": "web", "dsr.kind": "container"}  # a spec gone by


def _id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def foreign_container(name: str, labels: Mapping[str, str] | None = None) -> LiveContainer:
    """A container dsr did not make for this project (no labels: made by hand)."""
    return LiveContainer(
        id=_id(name),
        name=name,
        image="nginx:1.25",
        image_id="sha256:" + "9" * 64,
        state="running",
        labels=dict(labels or {}),
        mounts=(LiveMount(type="volume", target="/srv", name=f"{name}-srv"),),
    )


def volume(name: str, labels: Mapping[str, str] | None = None) -> LiveVolume:
    return LiveVolume(name=name, labels=dict(labels or {}))


def managed_volume(name: str, project: str = "web") -> LiveVolume:
    return volume(
        name,
        {
            "dsr.managed": "true",
            "dsr.project": project,
            "dsr.kind": "volume",
            "dsr.name": name,
            "dsr.config-hash": "0" * 64,
        },
    )


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A spec and an engine snapshot in; the rendered plan (and maybe the JSON) out."""

    spec: str
    text: str  # the text plan (the markdown, in MARKDOWN_CASES), exactly
    before: str | None = None  # the spec the engine was converged to (None: ``spec``)
    edit: Edit = unchanged
    json: dict[str, Any] | None = None  # the contract's JSON, when the case pins it
    errors: tuple[str, ...] = ()  # Plan.errors
    # resource -> {mount target: source} of the planned ContainerParams
    mounts: dict[str, dict[str, str]] = field(default_factory=dict)


def case(case_id: str, spec: str, text: str, **options: Any) -> Any:
    return pytest.param(
        Case(spec=spec, text=textwrap.dedent(text).strip("\n"), **options), id=case_id
    )


def change(
    resource: str,
    action: str,
    reason: str,
    risk: str = "none",
    depends_on: tuple[str, ...] = (),
    *,
    code: str,
) -> dict[str, Any]:
    return {
        "resource": resource,
        "action": action,
        "reason": reason,
        "reason_code": code,
        "risk": risk,
        "depends_on": list(depends_on),
    }


def summary(**counts: int) -> dict[str, int]:
    return {key: counts.get(key, 0) for key in SUMMARY_ORDER}


NEW_EMPTY_IMAGE = (
    "volume containers without an image are created from an empty image, made locally "
    "with docker import (no registry needed)"
)

CASES = [
    # --- creating -------------------------------------------------------------------------
    case(
        "create-everything-on-an-empty-engine",
        BASE,
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume:data will be created
              reason: it does not exist
          + volume:logs will be created
              reason: it does not exist
          + volume_container:vc_logs will be created
              reason: it does not exist
              after:  volume:logs, image:dsr/empty:1
          + container:app will be created
              reason: it does not exist; image busybox:1.36 is not on the engine and will be pulled
              after:  volume:data, volume_container:vc_logs

        Plan: 4 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 0 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                change("image:dsr/empty:1", "build", NEW_EMPTY_IMAGE, code="missing"),
                change("volume:data", "create", "it does not exist", code="missing"),
                change("volume:logs", "create", "it does not exist", code="missing"),
                change(
                    "volume_container:vc_logs",
                    "create",
                    "it does not exist",
                    depends_on=("volume:logs", "image:dsr/empty:1"),
                    code="missing",
                ),
                change(
                    "container:app",
                    "create",
                    "it does not exist; image busybox:1.36 is not on the engine and will be pulled",
                    depends_on=("volume:data", "volume_container:vc_logs"),
                    code="missing",
                ),
            ],
            "orphans": [],
            "summary": summary(create=4, build=1),
        },
        before=EMPTY,
    ),
    case(
        "no-changes",
        BASE,
        """
        No changes. The engine matches the spec (project web).
        """,
        json={
            "format_version": 1,
            "changes": [],
            "orphans": [],
            "summary": {
                "create": 0,
                "replace": 0,
                "update": 0,
                "start": 0,
                "delete": 0,
                "build": 0,
                "adopt": 0,
                "blocked": 0,
            },
        },
    ),
    case(
        "external-volume-that-exists-is-left-alone",
        variant("data: {}", "data: {external: true}"),
        """
        No changes. The engine matches the spec (project web).
        """,
    ),
    # --- starting ---------------------------------------------------------------------------
    case(
        "start-an-exited-container",
        BASE,
        """
        dsr will perform the following actions (project web):

          > container:app will be started
              reason: it is exited, spec says running

        Plan: 0 to create, 0 to replace, 0 to update, 1 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=container("app", state="exited"),
    ),
    case(
        "created-state-container-is-not-started",
        variant("command:", "state: created\n        command:"),
        """
        No changes. The engine matches the spec (project web).
        """,
    ),
    # --- replacing --------------------------------------------------------------------------
    case(
        "replace-mount-mode-rw-to-ro",
        variant("data:/data", "data:/data:ro"),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                {
                    "resource": "container:app",
                    "action": "replace",
                    "reason": "mounts differ: /data was read-write, spec says read-only; "
                    "its writable layer is empty; stopping it may take up to 10 s",
                    "reason_code": "config-changed",
                    "risk": "restart",
                    "depends_on": [],
                }
            ],
            "orphans": [],
            "summary": {
                "create": 0,
                "replace": 1,
                "update": 0,
                "start": 0,
                "delete": 0,
                "build": 0,
                "adopt": 0,
                "blocked": 0,
            },
        },
        before=BASE,
        edit=container("app", size_rw=0),
    ),
    case(
        "replace-never-started-container-mount-mode",
        variant(
            "data:/data", "data:/data:ro", variant("command:", "state: created\n        command:")
        ),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only
              order:  create-then-delete; downtime: none
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=variant("command:", "state: created\n        command:"),
    ),
    case(
        "replace-says-the-writable-layer-goes",
        variant("data:/data", "data:/data:ro"),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer holds 1.5 KiB, which goes with it; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=BASE,
        edit=container("app", size_rw=1536),
    ),
    case(
        "protected-writable-layer-with-data-blocks-the-replace",
        variant(
            "data:/data",
            "data:/data:ro",
            variant("image: busybox:1.36", "image: busybox:1.36\n        writable_layer: protect"),
        ),
        """
        dsr will perform the following actions (project web):

          ! container:app is blocked (risk: data-loss)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer holds 1.5 KiB and writable_layer is protect, so it is kept: copy that data out (docker cp app:PATH .), then docker rm app

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 1 blocked.
        """,
        before=variant(
            "image: busybox:1.36", "image: busybox:1.36\n        writable_layer: protect"
        ),
        edit=container("app", size_rw=1536),
    ),
    case(
        "protected-writable-layer-that-is-empty-is-replaced",
        variant(
            "data:/data",
            "data:/data:ro",
            variant("image: busybox:1.36", "image: busybox:1.36\n        writable_layer: protect"),
        ),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=variant(
            "image: busybox:1.36", "image: busybox:1.36\n        writable_layer: protect"
        ),
        edit=container("app", size_rw=0),
    ),
    case(
        "replace-says-how-long-its-own-stop-timeout-may-take",
        variant(
            "image: busybox:1.36",
            "image: busybox:1.36\n        init: true\n        stop_timeout: 1m30s",
        ),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: init was False, spec says True; its writable layer is empty; stopping it may take up to 1 min 30 s
              order:  create-then-delete; downtime: from the old container's stop (up to 1 min 30 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=variant("image: busybox:1.36", "image: busybox:1.36\n        stop_timeout: 90"),
        edit=container("app", size_rw=0),
    ),
    case(
        "replace-of-an-exited-container-says-the-writable-layer-goes",
        variant("data:/data", "data:/data:ro"),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer holds 1.5 KiB, which goes with it
              order:  create-then-delete; downtime: none
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=BASE,
        edit=container("app", state="exited", size_rw=1536),
    ),
    case(
        "replace-command-and-env-changed",
        variant('command: [sleep, "3600"]', 'command: [sleep, "60"]\n        env: {TZ: UTC}'),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: command was ['sleep', '3600'], spec says ['sleep', '60']; env TZ changed; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=BASE,
        edit=container("app", size_rw=0),
    ),
    case(
        "replace-config-changed-without-a-recorded-spec",
        variant("data:/data", "data:/data:ro"),
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: its configuration changed; mounts differ: /data was read-write, spec says read-only; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        before=BASE,
        edit=edits(container("app", size_rw=0), labels_of("app", drop=("dsr.spec",))),
    ),
    case(
        "replace-image-id-drift",
        BASE,
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: image busybox:1.36 now points to 222222222222, the container runs 111111111111; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(
            image("busybox:1.36", NEW_IMAGE), container("app", image_id=OLD_IMAGE, size_rw=0)
        ),
    ),
    case(
        "replace-mount-drift-other-volume",
        BASE,
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: /data mounts volume other, spec says data; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(container("app", size_rw=0), mount("app", "/data", name="other")),
    ),
    case(
        "replace-mount-drift-missing-mount",
        BASE,
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: /data is not mounted on the live container; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(container("app", size_rw=0), unmount("app", "/data")),
    ),
    case(
        "replace-mount-drift-mode",
        BASE,
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-only, spec says read-write; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(container("app", size_rw=0), mount("app", "/data", read_only=True)),
    ),
    case(
        "replace-volume-container-cascades-to-its-users",
        variant("logs:/logs", "logs:/logs:ro"),
        """
        dsr will perform the following actions (project web):

        -/+ volume_container:vc_logs will be replaced (risk: restart)
              reason: mounts differ: /logs was read-write, spec says read-only
              order:  create-then-delete; downtime: none
              calls:  create-container vc_logs_dsr_new, stop-container vc_logs, rename-container vc_logs -> vc_logs_dsr_old, rename-container vc_logs_dsr_new -> vc_logs, remove-container vc_logs_dsr_old
        -/+ container:app will be replaced (risk: restart)
              reason: vc_logs is replaced, and volumes_from mounts are fixed when a container is created; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              after:  volume_container:vc_logs
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 2 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                change(
                    "volume_container:vc_logs",
                    "replace",
                    "mounts differ: /logs was read-write, spec says read-only",
                    "restart",
                    code="config-changed",
                ),
                change(
                    "container:app",
                    "replace",
                    "vc_logs is replaced, and volumes_from mounts are fixed when a container "
                    "is created; its writable layer is empty; stopping it may take up to 10 s",
                    "restart",
                    ("volume_container:vc_logs",),
                    code="volumes-from-replaced",
                ),
            ],
            "orphans": [],
            "summary": summary(replace=2),
        },
        before=BASE,
        edit=edits(container("app", size_rw=0), mount("vc_logs", "/cache", name=ANON)),
        mounts={
            "volume_container:vc_logs": {"/logs": "logs", "/cache": ANON},
            "container:app": {"/data": "data"},
        },
    ),
    case(
        "replace-stale-volumes-from-mounts",
        BASE,
        """
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: its volumes from vc_logs are stale (/logs differs); its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(container("app", size_rw=0), mount("app", "/logs", name="old-logs")),
    ),
    # --- deleting -------------------------------------------------------------------------
    case(
        "delete-orphan-container-with-empty-layer",
        BASE,
        """
        dsr will perform the following actions (project web):

          - container:old-app will be deleted
              reason: it left the spec; its volumes are kept and its writable layer is empty; stopping it may take up to 10 s

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 1 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(
            copy("app", "old-app", size_rw=0),
            add(foreign_container("by-hand"), foreign_container("shop-app", SHOP)),
        ),
    ),
    case(
        "delete-orphan-volume-container-layer-not-measured",
        BASE,
        """
        dsr will perform the following actions (project web):

          - volume_container:vc_old will be deleted
              reason: it left the spec; its volumes are kept

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 1 to delete, 0 to build, 0 blocked.
        """,
        edit=copy("vc_logs", "vc_old"),
    ),
    case(
        "orphan-container-with-data-is-blocked",
        BASE,
        """
        dsr will perform the following actions (project web):

          ! container:old-app is blocked (risk: data-loss)
              reason: it left the spec, but its writable layer holds 2.0 KiB, which goes with it; remove it yourself (docker rm old-app) once that data is safe

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 1 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                change(
                    "container:old-app",
                    "blocked",
                    "it left the spec, but its writable layer holds 2.0 KiB, which goes with "
                    "it; remove it yourself (docker rm old-app) once that data is safe",
                    "data-loss",
                    code="writable-layer-data",
                ),
            ],
            "orphans": [],
            "summary": summary(blocked=1),
        },
        edit=copy("app", "old-app", size_rw=2048),
    ),
    case(
        "leftovers-of-an-interrupted-replace",
        BASE,
        """
        dsr will perform the following actions (project web):

          + volume_container:vc_logs will be created
              reason: it does not exist
          - volume_container:vc_logs_dsr_new will be deleted
              reason: left over from an interrupted replace of vc_logs; its volumes are kept
              after:  volume_container:vc_logs
          - volume_container:vc_logs_dsr_old will be deleted
              reason: left over from an interrupted replace of vc_logs; its volumes are kept
              after:  volume_container:vc_logs
        -/+ container:app will be replaced (risk: restart)
              reason: vc_logs is created, and volumes_from mounts are fixed when a container is created; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              after:  volume_container:vc_logs
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 1 to create, 1 to replace, 0 to update, 0 to start, 2 to delete, 0 to build, 0 blocked.
        """,
        edit=edits(
            mount("vc_logs", "/cache", name=ANON),
            copy("vc_logs", "vc_logs_dsr_old", logical="vc_logs"),
            copy("vc_logs", "vc_logs_dsr_new", logical="vc_logs"),
            drop("vc_logs"),
            container("app", size_rw=0),
        ),
        mounts={"volume_container:vc_logs": {"/logs": "logs", "/cache": ANON}},
    ),
    case(
        "leftover-beside-the-container-it-was-to-replace",
        variant("data:/data", "data:/data:ro"),
        """
        dsr will perform the following actions (project web):

          - container:app_dsr_new will be deleted
              reason: left over from an interrupted replace of app; its volumes are kept
        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer is empty; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              after:  container:app_dsr_new
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 1 to delete, 0 to build, 0 blocked.
        """,
        before=BASE,
        edit=edits(
            container("app", size_rw=0), copy("app", "app_dsr_new", logical="app", state="created")
        ),
    ),
    # --- blocked ---------------------------------------------------------------------------
    case(
        "blocked-volume-name-taken-by-hand",
        BASE,
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          ! volume:data is blocked
              reason: a volume named data exists and dsr does not manage it (no dsr.managed=true label); dsr never takes over what it did not create
          + volume:logs will be created
              reason: it does not exist
          + volume_container:vc_logs will be created
              reason: it does not exist
              after:  volume:logs, image:dsr/empty:1
          ! container:app is blocked
              reason: it depends on volume:data, which is blocked

        Plan: 2 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 2 blocked.
        """,
        before=EMPTY,
        edit=add(volume("data")),
    ),
    case(
        "blocked-container-name-taken-by-hand",
        BASE,
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume:data will be created
              reason: it does not exist
          + volume:logs will be created
              reason: it does not exist
          + volume_container:vc_logs will be created
              reason: it does not exist
              after:  volume:logs, image:dsr/empty:1
          ! container:app is blocked
              reason: a container named app exists and dsr does not manage it (no dsr.managed=true label); dsr never takes over what it did not create

        Plan: 3 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 1 blocked.
        """,
        before=EMPTY,
        edit=add(foreign_container("app")),
    ),
    case(
        "adopt-volume-and-container-taken-by-hand",
        variant(
            "data: {}",
            "data: {adopt: true}",
            variant("command: [sleep", "adopt: true\n        command: [sleep"),
        ),
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
         <= volume:data will be adopted
              reason: a volume named data exists and dsr does not manage it; adopt is true, so dsr takes it over as it is (its data, driver and options are kept; it is recorded with its creation time, 2026-12-07T10:00:00Z)
              calls:  record adoption of data
          + volume:logs will be created
              reason: it does not exist
          + volume_container:vc_logs will be created
              reason: it does not exist
              after:  volume:logs, image:dsr/empty:1
         <= container:app will be adopted (risk: restart)
              reason: a container named app exists and dsr does not manage it; adopt is true, so it is replaced by dsr's own of the same name, keeping its volumes and anonymous volumes; its writable layer was not measured; stopping it may take up to 10 s; image busybox:1.36 is not on the engine and will be pulled
              after:  volume:data, volume_container:vc_logs
              calls:  pull-image busybox:1.36, create-container app_dsr_new, stop-container app, record adoption of app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old, record end of the adoption of app

        Plan: 2 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 2 to adopt, 0 blocked.
        """,
        before=EMPTY,
        edit=add(
            LiveVolume(name="data", created_at="2026-12-07T10:00:00Z"),
            foreign_container("app"),
        ),
    ),
    case(
        "blocked-volume-of-another-project",
        BASE,
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume:data will be created
              reason: it does not exist
          ! volume:logs is blocked
              reason: a volume named logs belongs to the dsr project 'shop'
          ! volume_container:vc_logs is blocked
              reason: it depends on volume:logs, which is blocked
          ! container:app is blocked
              reason: it depends on volume_container:vc_logs, which is blocked

        Plan: 1 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 3 blocked.
        """,
        before=EMPTY,
        edit=add(managed_volume("logs", project="shop")),
    ),
    case(
        "blocked-container-of-another-project",
        BASE,
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume:data will be created
              reason: it does not exist
          + volume:logs will be created
              reason: it does not exist
          ! volume_container:vc_logs is blocked
              reason: a container named vc_logs belongs to the dsr project 'shop'
          ! container:app is blocked
              reason: it depends on volume_container:vc_logs, which is blocked

        Plan: 2 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 2 blocked.
        """,
        before=EMPTY,
        edit=add(foreign_container("vc_logs", SHOP)),
    ),
    case(
        "blocked-external-volume-missing",
        variant("data: {}", "data: {external: true}"),
        """
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          ! volume:data is blocked
              reason: it is external, so dsr never creates it, and it does not exist
          + volume:logs will be created
              reason: it does not exist
          + volume_container:vc_logs will be created
              reason: it does not exist
              after:  volume:logs, image:dsr/empty:1
          ! container:app is blocked
              reason: it depends on volume:data, which is blocked

        Error: volume:data: the external volume data does not exist
        Plan: 2 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 2 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                change("image:dsr/empty:1", "build", NEW_EMPTY_IMAGE, code="missing"),
                change(
                    "volume:data",
                    "blocked",
                    "it is external, so dsr never creates it, and it does not exist",
                    code="external-missing",
                ),
                change("volume:logs", "create", "it does not exist", code="missing"),
                change(
                    "volume_container:vc_logs",
                    "create",
                    "it does not exist",
                    depends_on=("volume:logs", "image:dsr/empty:1"),
                    code="missing",
                ),
                change(
                    "container:app",
                    "blocked",
                    "it depends on volume:data, which is blocked",
                    code="dependency-blocked",
                ),
            ],
            "orphans": [],
            "summary": summary(create=2, build=1, blocked=2),
        },
        errors=("volume:data: the external volume data does not exist",),
        before=EMPTY,
    ),
    case(
        "blocked-volume-config-change-loses-data",
        variant("data: {}", "data: {driver_opts: {type: tmpfs, device: tmpfs}}"),
        """
        dsr will perform the following actions (project web):

          ! volume:data is blocked (risk: data-loss)
              reason: driver_opts differ; Docker cannot change a volume in place and on_change is block, so its data stays as it is

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 1 blocked.
        """,
        json={
            "format_version": 1,
            "changes": [
                change(
                    "volume:data",
                    "blocked",
                    "driver_opts differ; Docker cannot change a volume in place and on_change "
                    "is block, so its data stays as it is",
                    "data-loss",
                    code="volume-data",
                ),
            ],
            "orphans": [],
            "summary": summary(blocked=1),
        },
        before=BASE,
    ),
    case(
        "blocked-volume-driver-and-labels-change",
        variant("data: {}", "data: {driver: other, labels: {tier: gold}}"),
        """
        dsr will perform the following actions (project web):

          ! volume:data is blocked (risk: data-loss)
              reason: driver was local, spec says other; labels differ; Docker cannot change a volume in place and on_change is block, so its data stays as it is
          ! container:app is blocked
              reason: it depends on volume:data, which is blocked

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 2 blocked.
        """,
        before=BASE,
        edit=edits(container("app", size_rw=0), mount("app", "/data", read_only=True)),
    ),
    # --- orphans --------------------------------------------------------------------------
    case(
        "orphan-volumes-are-listed-never-deleted",
        BASE,
        """
        No changes. The engine matches the spec (project web).
        Orphans (managed, no longer in the spec, kept):
              volume:old-cache
              volume:old-data
        """,
        json={
            "format_version": 1,
            "changes": [],
            "orphans": ["volume:old-cache", "volume:old-data"],
            "summary": summary(),
        },
        edit=add(
            managed_volume("old-data"),
            managed_volume("old-cache"),
            managed_volume("shop-data", project="shop"),
            volume("by-hand"),
        ),
    ),
    # --- ordering -------------------------------------------------------------------------
    case(
        "order-deletes-images-volumes-volume-containers-containers",
        ORDERING,
        """
        dsr will perform the following actions (project web):

          - container:gone will be deleted
              reason: it left the spec; its volumes are kept and its writable layer is empty; stopping it may take up to 10 s
          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume:a-vol will be created
              reason: it does not exist
          + volume:b-vol will be created
              reason: it does not exist
          + volume_container:mm_vc will be created
              reason: it does not exist
              after:  volume:b-vol, image:dsr/empty:1
          + volume_container:zz_vc will be created
              reason: it does not exist
              after:  volume:a-vol, image:dsr/empty:1
          + container:aaa will be created
              reason: it does not exist; image busybox:1.36 is not on the engine and will be pulled
          + container:beta will be created
              reason: it does not exist; image busybox:1.36 is not on the engine and will be pulled
              after:  volume_container:zz_vc
          + container:alpha will be created
              reason: it does not exist; image busybox:1.36 is not on the engine and will be pulled
              after:  container:beta

        Plan: 7 to create, 0 to replace, 0 to update, 0 to start, 1 to delete, 1 to build, 0 blocked.
        """,
        before=EMPTY,
        edit=add(dataclasses.replace(foreign_container("gone", OURS), size_rw=0)),
    ),
]


def snapshot(tmp_path: Path, c: Case) -> tuple[Desired, Observed]:
    desired = load(tmp_path / "spec", c.spec)
    if c.before is None:
        before = simulate(desired, {})
    elif c.before == EMPTY:
        before = Observed()
    else:
        before = simulate(load(tmp_path / "before", c.before), {})
    return desired, c.edit(before)


def load(folder: Path, text: str) -> Desired:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_spec(str(path), env={})


@pytest.mark.parametrize("c", CASES)
def test_plan(c: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    desired, observed = snapshot(tmp_path, c)
    result = plan(desired, observed)

    assert render_text(result) == c.text
    assert result.errors == c.errors
    resources = [ch.resource for ch in result.changes]
    assert len(resources) == len(set(resources)), "a resource appears at most once in a plan"
    codes = CODES[request.node.callspec.id]
    assert [f"{ch.resource} {ch.code}" for ch in result.changes] == list(codes)
    document = json.loads(render_json(result))
    assert_contract_shape(document, result)
    if c.json is not None:  # the contract's keys; operations are pinned in test_operations
        contract = ("order", "downtime", "operations")
        for change in document["changes"]:
            for key in contract:
                change.pop(key, None)
        assert document == c.json
    for resource, expected in c.mounts.items():
        params = next(ch.container for ch in result.changes if ch.resource == resource)
        assert params is not None
        assert {m.target: m.source for m in params.mounts} == expected


def assert_contract_shape(document: dict[str, Any], result: Plan) -> None:
    """The contract's JSON form, keys in its order, saying what the plan says."""
    assert list(document) == ["format_version", "changes", "orphans", "summary"]
    assert document["format_version"] == 1
    keys = ["resource", "action", "reason", "reason_code", "risk", "depends_on"]
    ordered = [*keys, "order", "downtime"]
    for c in document["changes"]:
        # The contract's keys in its order; a replace's order and downtime when it has
        # them; each change's operations last.
        assert list(c)[:6] == keys and list(c)[-1] == "operations", c
        assert list(c)[6:-1] in (ordered[6:], ["order"], []), c
    assert document["changes"] == [
        {
            "resource": c.resource,
            "action": c.action.value,
            "reason": c.reason,
            "reason_code": c.code.value,
            "risk": c.risk.value,
            "depends_on": list(c.depends_on),
            **({"order": c.order.value} if c.order else {}),
            **({"downtime": c.downtime} if c.downtime else {}),
            "operations": [o.public() for o in c.operations],
        }
        for c in result.changes
    ]
    blocked = [c for c in document["changes"] if c["action"] == "blocked"]
    assert all(c["operations"] == [] for c in blocked), "a blocked change makes no call"
    acting = [c for c in document["changes"] if c["action"] != "blocked"]
    assert all(c["operations"] for c in acting), "every change that acts makes calls"
    assert document["orphans"] == list(result.orphans)
    assert list(document["summary"]) == list(SUMMARY_ORDER)
    actions = [c["action"] for c in document["changes"]]
    assert document["summary"] == {key: actions.count(key) for key in SUMMARY_ORDER}


def test_the_table_covers_every_action_and_risk(tmp_path: Path) -> None:
    actions: set[Action] = set()
    risks: set[Risk] = set()
    for number, param in enumerate(CASES):
        desired, observed = snapshot(tmp_path / str(number), param.values[0])
        for c in plan(desired, observed).changes:
            actions.add(c.action)
            risks.add(c.risk)
    # The planner has no in-place update: Docker cannot change a volume or a container's
    # mounts in place, and dsr manages nothing else.
    assert actions == set(Action) - {Action.UPDATE}
    assert risks == set(Risk)


def test_dependencies_come_first_in_every_plan(tmp_path: Path) -> None:
    for number, param in enumerate(CASES):
        desired, observed = snapshot(tmp_path / str(number), param.values[0])
        seen: set[str] = set()
        for c in plan(desired, observed).changes:
            assert set(c.depends_on) <= seen, (param.id, c.resource)
            seen.add(c.resource)


# --- markdown: a table row per change, a warning when something is blocked ----------------

MARKDOWN_CASES = [
    case(
        "markdown-blocked-orphans-and-errors",
        variant("data: {}", "data: {external: true}"),
        """
        ### dsr plan for project `web`

        **2 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 2 blocked.**

        | | Resource | Action | Risk | Reason | Operations |
        |---|---|---|---|---|---|
        | `*` | `image:dsr/empty:1` | build | none | `volume containers without an image are created from an empty image, made locally with docker import (no registry needed)` | `import-image dsr/empty:1` |
        | `!` | `volume:data` | blocked | none | `it is external, so dsr never creates it, and it does not exist` |  |
        | `+` | `volume:logs` | create | none | `it does not exist` | `create-volume logs` |
        | `+` | `volume_container:vc_logs` | create | none | `it does not exist` | `create-container vc_logs` |
        | `!` | `container:app` | blocked | none | `it depends on volume:data, which is blocked` |  |

        > [!WARNING]
        > 2 changes are blocked and will not be applied.

        <details><summary>Orphans kept</summary>

        - `volume:old-data`

        </details>

        **Error:** `volume:data: the external volume data does not exist`
        """,
        before=EMPTY,
        edit=add(managed_volume("old-data")),
    ),
    case(
        "markdown-risks-in-bold",
        variant("logs:/logs", "logs:/logs:ro"),
        """
        ### dsr plan for project `web`

        **0 to create, 2 to replace, 0 to update, 0 to start, 1 to delete, 0 to build, 1 blocked.**

        | | Resource | Action | Risk | Reason | Operations |
        |---|---|---|---|---|---|
        | `!` | `container:keep-me` | blocked | **data-loss** | `it left the spec, but its writable layer holds 1.0 MiB, which goes with it; remove it yourself (docker rm keep-me) once that data is safe` |  |
        | `-` | `container:old-app` | delete | none | `it left the spec; its volumes are kept and its writable layer is empty; stopping it may take up to 10 s` | `stop-container old-app`<br>`remove-container old-app` |
        | `-/+` | `volume_container:vc_logs` | replace | **restart** | `mounts differ: /logs was read-write, spec says read-only (create-then-delete; downtime: none)` | `create-container vc_logs_dsr_new`<br>`stop-container vc_logs`<br>`rename-container vc_logs -> vc_logs_dsr_old`<br>`rename-container vc_logs_dsr_new -> vc_logs`<br>`remove-container vc_logs_dsr_old` |
        | `-/+` | `container:app` | replace | **restart** | `vc_logs is replaced, and volumes_from mounts are fixed when a container is created; its writable layer is empty; stopping it may take up to 10 s (create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts)` | `create-container app_dsr_new`<br>`stop-container app`<br>`rename-container app -> app_dsr_old`<br>`rename-container app_dsr_new -> app`<br>`start-container app`<br>`remove-container app_dsr_old` |

        > [!WARNING]
        > 1 change is blocked and will not be applied.
        """,
        before=BASE,
        edit=edits(
            container("app", size_rw=0),
            copy("app", "old-app", size_rw=0),
            copy("app", "keep-me", size_rw=1 << 20),
        ),
    ),
    case(
        "markdown-no-changes",
        BASE,
        """
        ### dsr plan for project `web`

        No changes. The engine matches the spec.
        """,
    ),
]


@pytest.mark.parametrize("c", MARKDOWN_CASES)
def test_markdown(c: Case, tmp_path: Path) -> None:
    desired, observed = snapshot(tmp_path, c)
    assert render_markdown(plan(desired, observed)) == c.text


# The reason code of each change of each case, in plan order: the README's table, pinned.
CODES: dict[str, tuple[str, ...]] = {
    "create-everything-on-an-empty-engine": (
        "image:dsr/empty:1 missing",
        "volume:data missing",
        "volume:logs missing",
        "volume_container:vc_logs missing",
        "container:app missing",
    ),
    "no-changes": (),
    "external-volume-that-exists-is-left-alone": (),
    "start-an-exited-container": ("container:app stopped",),
    "created-state-container-is-not-started": (),
    "replace-mount-mode-rw-to-ro": ("container:app config-changed",),
    "replace-never-started-container-mount-mode": ("container:app config-changed",),
    "replace-says-the-writable-layer-goes": ("container:app config-changed",),
    "protected-writable-layer-with-data-blocks-the-replace": ("container:app writable-layer-data",),
    "protected-writable-layer-that-is-empty-is-replaced": ("container:app config-changed",),
    "replace-says-how-long-its-own-stop-timeout-may-take": ("container:app config-changed",),
    "replace-of-an-exited-container-says-the-writable-layer-goes": (
        "container:app config-changed",
    ),
    "replace-command-and-env-changed": ("container:app config-changed",),
    "replace-config-changed-without-a-recorded-spec": ("container:app config-changed",),
    "replace-image-id-drift": ("container:app image-changed",),
    "replace-mount-drift-other-volume": ("container:app mounts-drifted",),
    "replace-mount-drift-missing-mount": ("container:app mounts-drifted",),
    "replace-mount-drift-mode": ("container:app mounts-drifted",),
    "replace-volume-container-cascades-to-its-users": (
        "volume_container:vc_logs config-changed",
        "container:app volumes-from-replaced",
    ),
    "replace-stale-volumes-from-mounts": ("container:app mounts-drifted",),
    "delete-orphan-container-with-empty-layer": ("container:old-app left-spec",),
    "delete-orphan-volume-container-layer-not-measured": ("volume_container:vc_old left-spec",),
    "orphan-container-with-data-is-blocked": ("container:old-app writable-layer-data",),
    "leftovers-of-an-interrupted-replace": (
        "volume_container:vc_logs missing",
        "volume_container:vc_logs_dsr_new leftover",
        "volume_container:vc_logs_dsr_old leftover",
        "container:app volumes-from-replaced",
    ),
    "leftover-beside-the-container-it-was-to-replace": (
        "container:app_dsr_new leftover",
        "container:app config-changed",
    ),
    "blocked-volume-name-taken-by-hand": (
        "image:dsr/empty:1 missing",
        "volume:data unmanaged-clash",
        "volume:logs missing",
        "volume_container:vc_logs missing",
        "container:app dependency-blocked",
    ),
    "blocked-container-name-taken-by-hand": (
        "image:dsr/empty:1 missing",
        "volume:data missing",
        "volume:logs missing",
        "volume_container:vc_logs missing",
        "container:app unmanaged-clash",
    ),
    "adopt-volume-and-container-taken-by-hand": (
        "image:dsr/empty:1 missing",
        "volume:data adopt",
        "volume:logs missing",
        "volume_container:vc_logs missing",
        "container:app adopt",
    ),
    "blocked-volume-of-another-project": (
        "image:dsr/empty:1 missing",
        "volume:data missing",
        "volume:logs other-project",
        "volume_container:vc_logs dependency-blocked",
        "container:app dependency-blocked",
    ),
    "blocked-container-of-another-project": (
        "image:dsr/empty:1 missing",
        "volume:data missing",
        "volume:logs missing",
        "volume_container:vc_logs other-project",
        "container:app dependency-blocked",
    ),
    "blocked-external-volume-missing": (
        "image:dsr/empty:1 missing",
        "volume:data external-missing",
        "volume:logs missing",
        "volume_container:vc_logs missing",
        "container:app dependency-blocked",
    ),
    "blocked-volume-config-change-loses-data": ("volume:data volume-data",),
    "blocked-volume-driver-and-labels-change": (
        "volume:data volume-data",
        "container:app dependency-blocked",
    ),
    "orphan-volumes-are-listed-never-deleted": (),
    "order-deletes-images-volumes-volume-containers-containers": (
        "container:gone left-spec",
        "image:dsr/empty:1 missing",
        "volume:a-vol missing",
        "volume:b-vol missing",
        "volume_container:mm_vc missing",
        "volume_container:zz_vc missing",
        "container:aaa missing",
        "container:beta missing",
        "container:alpha missing",
    ),
}
