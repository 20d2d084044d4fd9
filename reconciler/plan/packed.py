"""Planning for data-packed images: builds, and the clean-up after consumers have moved.

A context change gives a new tag; the volume containers made from the image are replaced
with a fresh volume (so consumers see the new files, unlike compose's issue 11953), and so
are their consumers. Afterwards the old volume container's anonymous volume and the builds
older than the previous one go; an image any container still uses never does.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.kinds import Kind
from reconciler.labels import owned_by
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, ImageParams, ReasonCode
from reconciler.plan.params import ANONYMOUS, dsr_labels
from reconciler.plan.reasons import describe_changes, still
from reconciler.snapshot import (
    KIND,
    NAME,
    PROJECT,
    LiveContainer,
    LiveImage,
    Observed,
)
from reconciler.spec.desired import Desired
from reconciler.spec.models import Container, VolumeContainer


def key_images(planner: Planning, key: str) -> list[LiveImage]:
    """This project's builds of the images key ``key``, newest first."""
    seen: dict[str, LiveImage] = {}
    for image in planner.observed.images.values():
        labels = image.labels
        if (
            owned_by(labels, planner.project)
            and labels.get(KIND) == Kind.IMAGE
            and labels.get(NAME) == key
        ):
            seen[image.id] = image
    return sorted(seen.values(), key=lambda i: (i.created, i.id), reverse=True)


def former_key(planner: Planning, reference: str) -> bool:
    """``reference`` names an images key this project built before and no longer has."""
    return reference not in planner.desired.images and bool(key_images(planner, reference))


def builds(planner: Planning) -> None:
    for key, spec in sorted(planner.desired.images.items()):
        tag = planner.image_tags.get(key)
        if tag is None or planner.observed.image_id(tag) is not None:
            continue
        earlier = key_images(planner, key)
        if earlier and earlier[0].tags:
            old = planner.manifests.get(earlier[0].tags[0])
            reason = f"its context changed since {earlier[0].tags[0]}: " + describe_changes(
                old, planner.manifests.get(tag, {})
            )
            code = ReasonCode.CONTEXT_CHANGED
        else:
            reason, code = "it has not been built yet", ReasonCode.MISSING
        digest = tag.rsplit(":", 1)[-1]
        planner.add(
            Change(
                resource=Kind.IMAGE.resource(key),
                action=Action.BUILD,
                reason=reason,
                code=code,
                image=ImageParams(
                    tag=tag,
                    labels=dsr_labels(planner.project, Kind.IMAGE, key, digest),
                    context=spec.context,
                    path=spec.path,
                    base=spec.base,
                ),
            )
        )


def image_change_reasons(
    planner: Planning, spec: Container | VolumeContainer, live: LiveContainer, tag: str
) -> list[str]:
    """Why a container of a data-packed image is replaced, and what Docker will not refresh."""
    key = spec.image
    if key is None or key not in planner.desired.images or live.image == tag:
        return []
    old, new = planner.manifests.get(live.image), planner.manifests.get(tag, {})
    reasons = [f"the data-packed image {key} changed: {describe_changes(old, new)}"]
    path = planner.desired.images[key].path
    if isinstance(spec, Container):
        for mount in spec.mounts:
            inside = mount.target == path or mount.target.startswith(path.rstrip("/") + "/")
            named = mount.type == "volume" and mount.source in planner.observed.volumes
            if named and inside and not mount.nocopy:
                reasons.append(
                    f"volume {mount.source} at {mount.target} already holds data, so Docker "
                    "will not copy the new image's files into it (it fills only an empty "
                    "new volume)"
                )
    return reasons


def cleanup(planner: Planning) -> None:
    """Old anonymous volumes of replaced data-packed volume containers; old builds."""
    _old_packed_volumes(planner)
    _old_builds(planner)


def _consumers(planner: Planning, name: str) -> list[str]:
    return sorted(
        c_name
        for c_name, c in planner.desired.containers.items()
        if any(v.name == name for v in c.volumes_from)
    )


def compared(desired: Desired, observed: Observed, image_tags: Mapping[str, str]) -> dict[str, str]:
    """The anonymous volumes a refresh of a data-packed volume container leaves behind
    that a consumer mounts read-write, each with the tag of the build that filled it: what
    to compare (``Observed.packed_volumes``) before planning their deletion."""
    out = {}
    for name, vc in sorted(desired.volume_containers.items()):
        live = observed.containers.get(name)
        image = desired.images.get(vc.image) if vc.image else None
        tag = image_tags.get(vc.image) if vc.image else None
        if live is None or image is None or tag is None or live.image == tag:
            continue
        mount = live.mount_at(image.path)
        if mount is None or not ANONYMOUS.match(mount.name):
            continue
        users = observed.volume_users(mount.name)
        writers = [
            u
            for u in users
            if u != name
            and any(m.name == mount.name and not m.read_only for m in observed.containers[u].mounts)
        ]
        if writers:
            out[mount.name] = live.image
    return out


def _old_packed_volumes(planner: Planning) -> None:
    for name, vc in sorted(planner.desired.volume_containers.items()):
        change = planner.planned.get(Kind.VOLUME_CONTAINER.resource(name))
        live = planner.observed.containers.get(name)
        if change is None or change.action is not Action.REPLACE or live is None:
            continue
        new_image = change.container.image if change.container else None
        if vc.image is None or vc.image not in planner.desired.images or live.image == new_image:
            continue
        mount = live.mount_at(planner.desired.images[vc.image].path)
        if mount is None or not ANONYMOUS.match(mount.name):
            continue
        consumers = _consumers(planner, name)
        moving = [planner.planned.get(Kind.CONTAINER.resource(c)) for c in consumers]
        if any(m is None or m.action is not Action.REPLACE for m in moving):
            continue  # a consumer that does not move still needs the old data
        users = set(planner.observed.volume_users(mount.name))
        if not users <= {name, *consumers}:
            continue  # someone else uses it: never delete a volume in use
        resource = Kind.VOLUME.resource(mount.name)
        what = f"the anonymous volume of the replaced data-packed volume container {name}"
        writers = _writers(planner, mount.name, users - {name})
        same = planner.observed.packed_volumes.get(mount.name)
        if writers and not same:
            # What a consumer wrote there is in no build: deleting it would lose it. It is
            # kept, as a managed volume nothing uses once the refresh is done (an orphan).
            planner.kept.append(
                Change(
                    resource=resource,
                    action=Action.BLOCKED,
                    reason=f"{what}; {', '.join(writers)} mounted it read-write and "
                    + (
                        "changed what the build put there"
                        if same is False
                        else "what it holds could not be compared with the build"
                    )
                    + f", so it is kept: remove it yourself (docker volume rm {mount.name}) "
                    "once nothing in it is needed",
                    code=ReasonCode.CONSUMER_DATA,
                    target_id=mount.name,
                )
            )
            planner.orphans.append(resource)
            continue
        how = (
            f"{', '.join(writers)} mounted it read-write but it holds exactly the files the "
            "build put there"
            if writers
            else "its consumers mounted it read-only"
        )
        planner.add(
            Change(
                resource=resource,
                action=Action.DELETE,
                reason=f"{what}; its files are in the previous build of {vc.image}, and {how}",
                code=ReasonCode.REPLACED_VOLUME,
                depends_on=(change.resource, *(m.resource for m in moving if m)),
                target_id=mount.name,
            )
        )


def _writers(planner: Planning, volume: str, users: set[str]) -> list[str]:
    """Those of ``users`` (container names) that mount ``volume`` read-write."""
    out = []
    for user in sorted(users):
        live = planner.observed.containers.get(user)
        if live is not None and any(m.name == volume and not m.read_only for m in live.mounts):
            out.append(user)
    return out


def _old_builds(planner: Planning) -> None:
    keys = set(planner.desired.images)
    for image in planner.observed.images.values():
        key = image.labels.get(NAME, "")
        if image.labels.get(KIND) == Kind.IMAGE and image.labels.get(PROJECT) == planner.project:
            keys.add(key)
    for key in sorted(keys):
        builds_of_key = key_images(planner, key)
        current = planner.image_tags.get(key)
        if key in planner.desired.images:
            keep = {planner.observed.image_id(current) if current else None}
            others = [i for i in builds_of_key if i.id not in keep]
            # The previous build, kept for rollback, is the one in service now: the newest
            # that this project's containers run (after A, B, A, C it is A, not B); when
            # none runs one, the newest other build.
            in_service = {
                c.image_id for c in planner.observed.containers.values() if planner.my_container(c)
            }
            running = [i for i in others if i.id in in_service]
            previous = (running or others)[:1]
            candidates = [i for i in others if i not in previous]
        else:
            candidates = builds_of_key
        for image in candidates:
            _delete_build(planner, key, image)


def _delete_build(planner: Planning, key: str, image: LiveImage) -> None:
    tag = image.tags[0] if image.tags else image.id
    users = [c for c in planner.observed.containers.values() if c.image_id == image.id]
    leaving = _leaving(planner, users)
    staying = [c.name for c in users if c.id not in leaving]
    if staying:
        if key not in planner.desired.images:
            planner.add(
                Change(
                    resource=Kind.IMAGE.resource(tag),
                    action=Action.BLOCKED,
                    reason=f"the images key {key} left the spec, but {still(sorted(staying))} "
                    "this build; an image in use is never removed",
                    code=ReasonCode.IMAGE_IN_USE,
                )
            )
        return
    planner.add(
        Change(
            resource=Kind.IMAGE.resource(tag),
            action=Action.DELETE,
            code=ReasonCode.OLD_BUILD,
            reason=f"an older build of {key}"
            + (
                "; the current and the previous builds are kept"
                if key in planner.desired.images
                else "; the key left the spec"
            ),
            depends_on=tuple(sorted(leaving.values())),
            target_id=tag,
        )
    )


def _leaving(planner: Planning, users: list[LiveContainer]) -> Mapping[str, str]:
    """Of ``users``, those this plan replaces or deletes: container id -> its change."""
    out = {}
    for change in planner.changes:
        if change.action in (Action.REPLACE, Action.DELETE) and change.target_id:
            for user in users:
                if user.id == change.target_id:
                    out[user.id] = change.resource
    return out
