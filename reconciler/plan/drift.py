"""Why a live container no longer matches its spec: the reasons for a ``replace``.

Compared are the ``dsr.config-hash`` label (the spec stored in ``dsr.spec`` says which
fields changed), the image the reference now points to, the live mounts, and the mounts a
container took from its ``volumes_from`` sources when it was created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.plan import packed
from reconciler.plan.model import Action
from reconciler.plan.params import SPEC, normalized
from reconciler.plan.reasons import spec_differences
from reconciler.spec.models import Container, VolumeContainer
from reconciler.state import CONFIG_HASH, LiveContainer

if TYPE_CHECKING:
    from reconciler.plan.planner import _Planner


def replace_reasons(
    planner: _Planner,
    spec: Container | VolumeContainer,
    live: LiveContainer,
    labels: Mapping[str, str],
    image: str,
) -> list[str]:
    reasons = packed.image_change_reasons(planner, spec, live, image)
    explained: set[str] = set()  # mount targets the spec difference already names
    if live.labels.get(CONFIG_HASH) != labels[CONFIG_HASH]:
        old = _json(live.labels.get(SPEC))
        # The display form the new labels store: values from ${VAR} as written.
        new = _json(labels.get(SPEC)) or normalized(spec, image)
        if old is not None:
            _hide_expanded(old, new)
        if reasons and old is not None:
            old["image"] = new["image"]  # the data-packed image's own reason says it better
        if old != new:
            reasons.append(spec_differences(old, new))
            explained = _changed_targets(old, new)
        elif not reasons:
            reasons.append("a value it takes from the environment (${VAR}) changed")
    current = planner.observed.image_id(image)
    if current is not None and live.image_id and live.image_id != current:
        reasons.append(
            f"image {image} now points to {current[7:19]}, the container runs {live.image_id[7:19]}"
        )
    reasons += mount_drift(spec, live, explained)
    if isinstance(spec, Container):
        reasons += volumes_from_drift(planner, spec, live)
    return reasons


def mount_drift(
    spec: Container | VolumeContainer, live: LiveContainer, explained: set[str]
) -> list[str]:
    out = []
    for mount in spec.mounts:
        if mount.type == "tmpfs" or mount.target in explained:
            continue
        have = live.mount_at(mount.target)
        if have is None:
            out.append(f"{mount.target} is not mounted on the live container")
        elif mount.type == "volume" and mount.source and have.name != mount.source:
            out.append(
                f"{mount.target} mounts volume {have.name or have.source}, spec says {mount.source}"
            )
        elif mount.type == "bind" and have.source != mount.source:
            out.append(f"{mount.target} binds {have.source}, spec says {mount.source}")
        elif have.read_only != mount.read_only:
            was = "read-only" if have.read_only else "read-write"
            now = "read-only" if mount.read_only else "read-write"
            out.append(f"mounts differ: {mount.target} was {was}, spec says {now}")
    return out


def volumes_from_drift(planner: _Planner, spec: Container, live: LiveContainer) -> list[str]:
    out = []
    for source in spec.volumes_from:
        change = planner.planned.get(planner.resource_of(source.name))
        if change is not None and change.action in (Action.CREATE, Action.REPLACE):
            out.append(
                f"{source.name} is {'created' if change.action is Action.CREATE else 'replaced'}, "
                "and volumes_from mounts are fixed when a container is created"
            )
            continue
        origin = planner.observed.containers.get(source.name)
        if origin is None:
            continue
        for mount in origin.mounts:
            have = live.mount_at(mount.target)
            if have is None or (have.name, have.source) != (mount.name, mount.source):
                out.append(f"its volumes from {source.name} are stale ({mount.target} differs)")
                break
    return out


def _changed_targets(old: dict[str, Any] | None, new: dict[str, Any]) -> set[str]:
    """Targets of mounts whose spec changed: the live mount differs there as a matter of
    course, and saying so a second time would repeat the spec difference."""
    if old is None:
        return set()
    before = {m.get("target"): m for m in old.get("mounts") or () if isinstance(m, dict)}
    return {m["target"] for m in new.get("mounts") or () if before.get(m["target"]) != m}


_TEMPLATE = re.compile(r"\$\{[^}]*\}")


def _hide_expanded(old: dict[str, Any], new: dict[str, Any]) -> None:
    """A container made before ``dsr.spec`` held values as written stores them expanded:
    where the spec now writes a ``${VAR}`` the stored value lacks, the stored value may be
    an old secret, and is not shown."""
    for key, value in new.items():
        wanted = set(_TEMPLATE.findall(json.dumps(value)))
        if wanted and not wanted <= set(_TEMPLATE.findall(json.dumps(old.get(key)))):
            old[key] = "(stored expanded, not shown)"


def _json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
