"""One pass: observe, plan, and (for apply) execute. Also saved plans and their staleness."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from reconciler.engine import Engine
from reconciler.errors import PlanError, SpecError, SpecIssue, StalePlanError
from reconciler.files import InputFileError, read_bounded, write_json
from reconciler.images import ContextError, PackedImage, pack
from reconciler.observe import measure_writable_layers, observe
from reconciler.plan import Action, Plan, plan
from reconciler.spec.desired import Desired
from reconciler.spec.devices import local_host_paths
from reconciler.spec.policy import Policy, Role
from reconciler.state import KIND, Observed

SAVED_KIND = "dsr-saved-plan"


def pack_images(desired: Desired, state_dir: str | None) -> dict[str, PackedImage]:
    """Hash every data-packed image's context; record each manifest for later reasons."""
    packed: dict[str, PackedImage] = {}
    issues = []
    cache_dir = os.path.join(state_dir, "hash-cache") if state_dir else None
    for key, spec in sorted(desired.images.items()):
        try:
            packed[key] = pack(desired.project, key, spec, cache_dir)
        except ContextError as err:
            origin = desired.origins.get(f"image:{key}")
            file, line = (origin.file, origin.line) if origin else ("", 1)
            issues.append(SpecIssue(file, line, f"images.{key}.context", str(err)))
    if issues:
        raise SpecError(issues)
    if state_dir:
        for image in packed.values():
            path = _manifest_path(state_dir, image.tag)
            if not os.path.exists(path):
                write_json(path, dict(image.manifest))
    return packed


def _manifest_path(state_dir: str, tag: str) -> str:
    return os.path.join(state_dir, "manifests", tag.replace("/", "_").replace(":", "@") + ".json")


def _known_manifests(state_dir: str | None, observed: Observed) -> dict[str, Mapping[str, str]]:
    """Manifests of the builds the engine holds, as recorded when they were planned."""
    out: dict[str, Mapping[str, str]] = {}
    if not state_dir:
        return out
    for tag, image in observed.images.items():
        if image.labels.get(KIND) != "image" or tag.startswith("sha256:"):
            continue
        try:
            with open(_manifest_path(state_dir, tag), encoding="utf-8") as handle:
                out[tag] = json.load(handle)
        except (OSError, ValueError):
            continue
    return out


def compute_plan(
    engine: Engine,
    desired: Desired,
    image_tags: Mapping[str, str],
    *,
    manifests: Mapping[str, Mapping[str, str]] | None = None,
    state_dir: str | None = None,
) -> Plan:
    """Observe once and plan; measure writable layers only of containers a plan would drop."""
    observed = observe(engine)
    known = {**_known_manifests(state_dir, observed), **(manifests or {})}
    first = plan(desired, observed, image_tags, manifests=known)
    ids = [
        c.target_id
        for c in first.changes
        if c.target_id
        and c.kind in ("container", "volume_container")
        and c.action in (Action.REPLACE, Action.DELETE)
    ]
    if not ids:
        return first
    sizes = measure_writable_layers(engine, ids)
    measured = Observed(
        containers={
            name: dataclasses.replace(c, size_rw=sizes.get(c.id, c.size_rw))
            for name, c in observed.containers.items()
        },
        volumes=observed.volumes,
        images=observed.images,
    )
    return plan(desired, measured, image_tags, manifests=known)


def names_of(desired: Desired) -> set[str]:
    return {*desired.volumes, *desired.containers, *desired.volume_containers}


def save_plan(path: str, saved: Plan, names: set[str], public: dict[str, Any]) -> None:
    """Write a plan to apply later: the contract's JSON plus what applying it needs."""
    document = {**public, "kind": SAVED_KIND, "names": sorted(names), "plan": saved.to_dict()}
    write_json(path, document, indent=2)


# A saved plan carries every container's parameters and labels: larger than a spec, but
# still bounded, as every file dsr reads and did not write this run.
MAX_SAVED_PLAN_BYTES = 64 << 20


def read_saved_plan(path: str) -> tuple[Plan, set[str]] | None:
    """The saved plan in ``path``, or ``None`` when ``path`` is not one (a spec, a folder)."""
    if not os.path.isfile(path):
        return None
    try:
        text = read_bounded(path, MAX_SAVED_PLAN_BYTES).decode("utf-8")
    except InputFileError as err:
        raise PlanError(f"{path}: cannot read the saved plan: {err}") from err
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("{"):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("kind") != SAVED_KIND:
        return None
    try:
        return Plan.from_dict(document["plan"]), set(document["names"])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # AttributeError: a change (or its parameters) that is not a mapping at all
        raise PlanError(f"{path}: the saved plan is damaged: {err}") from err


def saved_plan_path_problems(saved: Plan, policy: Policy) -> list[str]:
    """What a saved plan would make Docker or dsr touch on the host that the policy refuses:
    bind sources and folders to create, local volumes' devices, build contexts. A saved plan
    is input like a spec (it may have been edited since): apply calls this before acting."""
    found: list[tuple[str, str, Role]] = []
    for change in saved.changes:
        params, volume, image = change.container, change.volume, change.image
        if params is not None:
            found += [
                (change.resource, m.source, "source") for m in params.mounts if m.type == "bind"
            ]
            found += [(change.resource, folder, "source") for folder in params.make_dirs]
        if volume is not None:
            found += [
                (change.resource, path, "source")
                for _, path in local_host_paths(volume.driver, volume.driver_opts)
            ]
        if image is not None and image.context:
            found += [(change.resource, image.context, "source")]
    problems = []
    for resource, path, role in dict.fromkeys(found):
        refused = (
            policy.check(path, role=role) if os.path.isabs(path) else f"{path} is not absolute"
        )
        if refused:
            problems.append(f"{resource}: {refused}")
    return problems


def check_fresh(engine: Engine, saved: Plan, names: set[str]) -> None:
    """Refuse a saved plan when anything it depends on moved since it was made."""
    now = observe(engine).fingerprint(saved.project, names)
    before = saved.fingerprint
    moved = []
    for key in sorted(before.keys() | now.keys()):
        if key not in now:
            moved.append(f"{key} is gone")
        elif key not in before:
            moved.append(f"{key} appeared")
        elif before[key] != now[key]:
            moved.append(f"{key} changed")
    if moved:
        raise StalePlanError(
            "the saved plan is stale: the engine changed since it was made ("
            + "; ".join(moved)
            + "); run dsr plan again"
        )
