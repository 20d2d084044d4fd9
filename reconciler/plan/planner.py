"""The planner: a pure function of (desired, observed) to a ``Plan``. No I/O.

Order: clean-ups and deletions of containers first (they free names and ports), then
images, volumes, volume containers and containers, each after what it depends on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from reconciler.plan import drift, packed
from reconciler.plan.model import Action, Change, ContainerParams, ImageParams, Plan, Risk
from reconciler.plan.params import (
    ANONYMOUS,
    EMPTY_IMAGE,
    container_params,
    volume_params,
)
from reconciler.plan.reasons import writable_layer
from reconciler.spec.desired import Desired
from reconciler.spec.models import Container, Volume, VolumeContainer
from reconciler.state import CONFIG_HASH, KIND, MANAGED, NAME, LiveContainer, Observed

EMPTY_RESOURCE = f"image:{EMPTY_IMAGE}"


def plan(
    desired: Desired,
    observed: Observed,
    image_tags: Mapping[str, str] | None = None,
    *,
    manifests: Mapping[str, Mapping[str, str]] | None = None,
) -> Plan:
    """What to do so that the engine holds what ``desired`` says.

    ``image_tags`` maps each key of ``desired.images`` to the tag its content builds;
    ``manifests`` maps image tags to their context's entries, to say what changed.
    """
    planner = _Planner(desired, observed, dict(image_tags or {}), dict(manifests or {}))
    planner.run()
    names = {*desired.volumes, *desired.containers, *desired.volume_containers}
    # Reasons and errors are printed (and posted to pull requests): none may quote a value
    # that came from ${VAR}, whichever part of the planner wrote it (an image, a pull).
    shown = desired.redaction.text
    return Plan(
        project=desired.project,
        changes=tuple(dataclasses.replace(c, reason=shown(c.reason)) for c in planner.changes),
        orphans=tuple(sorted(planner.orphans)),
        errors=tuple(shown(e) for e in planner.errors),
        fingerprint=observed.fingerprint(desired.project, names),
    )


@dataclass
class _Planner:
    desired: Desired
    observed: Observed
    image_tags: dict[str, str]
    manifests: dict[str, Mapping[str, str]]
    changes: list[Change] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    planned: dict[str, Change] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.desired.project

    def add(self, change: Change) -> None:
        self.changes.append(change)
        self.planned[change.resource] = change

    def blocked(self, resource: str) -> bool:
        change = self.planned.get(resource)
        return change is not None and change.action is Action.BLOCKED

    def run(self) -> None:
        self.container_cleanups()
        self.internal_images()
        packed.builds(self)
        for name, volume_spec in sorted(self.desired.volumes.items()):
            self.volume(name, volume_spec)
        for kind, name, spec in self.ordered_containers():
            self.container(kind, name, spec)
        packed.cleanup(self)
        for volume in self.observed.volumes.values():
            if self.mine(volume.labels) and volume.name not in self.desired.volumes:
                anonymous = volume.labels.get(KIND) == "anonymous_volume"
                if not (anonymous and self.observed.volume_users(volume.name)):
                    self.orphans.append(f"volume:{volume.name}")

    def mine(self, labels: Mapping[str, str]) -> bool:
        return labels.get(MANAGED) == "true" and labels.get("dsr.project") == self.project

    def my_container(self, live: LiveContainer) -> bool:
        """dsr created this container. Docker copies an image's labels into the containers
        made from it, so one made by hand from a data-packed build carries dsr.managed and
        dsr.project too, with dsr.kind=image: that one is not dsr's to delete or replace."""
        kind = live.labels.get(KIND, "container")
        return self.mine(live.labels) and kind in ("container", "volume_container")

    # -- containers that must go -------------------------------------------------------
    def container_cleanups(self) -> None:
        wanted = {**self.desired.containers, **self.desired.volume_containers}
        for live in sorted(self.observed.containers.values(), key=lambda c: c.name):
            if not self.my_container(live):
                continue
            logical = live.labels.get(NAME, live.name)
            kind = live.labels.get(KIND, "container")
            if logical in wanted and live.name != logical:
                self.add(
                    Change(
                        resource=f"{kind}:{live.name}",
                        action=Action.DELETE,
                        reason=f"left over from an interrupted replace of {logical}; its "
                        "volumes are kept",
                        target_id=live.id,
                    )
                )
            elif logical not in wanted:
                self.delete_orphan(kind, live)

    def delete_orphan(self, kind: str, live: LiveContainer) -> None:
        resource = f"{kind}:{live.name}"
        if live.size_rw:
            self.add(
                Change(
                    resource=resource,
                    action=Action.BLOCKED,
                    reason=f"it left the spec, but {writable_layer(live.size_rw)}; remove it "
                    f"yourself (docker rm {live.name}) once that data is safe",
                    risk=Risk.DATA_LOSS,
                    target_id=live.id,
                )
            )
            return
        self.add(
            Change(
                resource=resource,
                action=Action.DELETE,
                reason="it left the spec; its volumes are kept"
                + ("" if live.size_rw is None else f" and {writable_layer(live.size_rw)}"),
                target_id=live.id,
            )
        )

    # -- images and volumes ------------------------------------------------------------
    def internal_images(self) -> None:
        needs_empty = any(vc.image is None for vc in self.desired.volume_containers.values())
        if needs_empty and self.observed.image_id(EMPTY_IMAGE) is None:
            self.add(
                Change(
                    resource=EMPTY_RESOURCE,
                    action=Action.BUILD,
                    reason="volume containers without an image are created from an empty "
                    "image, made locally with docker import (no registry needed)",
                    image=ImageParams(tag=EMPTY_IMAGE, labels={MANAGED: "true", KIND: "image"}),
                )
            )

    def volume(self, name: str, spec: Volume) -> None:
        resource = f"volume:{name}"
        live = self.observed.volumes.get(name)
        if spec.external:
            if live is None:
                self.errors.append(f"{resource}: the external volume {name} does not exist")
                self.add(
                    Change(
                        resource,
                        Action.BLOCKED,
                        "it is external, so dsr never creates it, and it does not exist",
                    )
                )
            return
        params = volume_params(self.project, name, spec)
        if live is None:
            self.add(Change(resource, Action.CREATE, "it does not exist", volume=params))
            return
        problem = self.ownership(live.labels, f"a volume named {name}")
        if problem:
            self.add(Change(resource, Action.BLOCKED, problem))
            return
        if live.labels.get(CONFIG_HASH) != params.labels[CONFIG_HASH]:
            differences = []
            if live.driver != spec.driver:
                differences.append(f"driver was {live.driver}, spec says {spec.driver}")
            if dict(live.options) != dict(spec.driver_opts):
                differences.append("driver_opts differ")
            if {k: v for k, v in live.labels.items() if not k.startswith("dsr.")} != dict(
                spec.labels
            ):
                differences.append("labels differ")
            what = "; ".join(differences) or "its configuration changed"
            self.add(
                Change(
                    resource,
                    Action.BLOCKED,
                    f"{what}; Docker cannot change a volume in place and on_change is "
                    f"{spec.on_change}, so its data stays as it is",
                    risk=Risk.DATA_LOSS,
                )
            )

    def ownership(self, labels: Mapping[str, str], what: str) -> str | None:
        if labels.get(MANAGED) != "true":
            return f"{what} exists and dsr does not manage it (no dsr.managed=true label); dsr never takes over what it did not create"
        if labels.get("dsr.project") != self.project:
            return f"{what} belongs to the dsr project {labels.get('dsr.project')!r}"
        return None

    # -- containers ----------------------------------------------------------------------
    def ordered_containers(self) -> Iterator[tuple[str, str, Container | VolumeContainer]]:
        """Volume containers and containers, each after those it takes volumes from."""
        specs: dict[str, tuple[str, Container | VolumeContainer]] = {}
        for name, vc in self.desired.volume_containers.items():
            specs[name] = ("volume_container", vc)
        for name, c in self.desired.containers.items():
            specs[name] = ("container", c)
        done: set[str] = set()

        def visit(name: str) -> Iterator[tuple[str, str, Container | VolumeContainer]]:
            if name in done or name not in specs:
                return
            done.add(name)
            kind, spec = specs[name]
            if isinstance(spec, Container):
                for source in spec.volumes_from:
                    yield from visit(source.name)
            yield kind, name, spec

        # Volume containers first: they take volumes from no one, and a plan reads best
        # with them ahead of the containers that use them.
        for name in [*sorted(self.desired.volume_containers), *sorted(self.desired.containers)]:
            yield from visit(name)

    def resource_of(self, name: str) -> str:
        kind = "volume_container" if name in self.desired.volume_containers else "container"
        return f"{kind}:{name}"

    def container(self, kind: str, name: str, spec: Container | VolumeContainer) -> None:
        resource = f"{kind}:{name}"
        image, image_dep, problem = self.image_for(spec)
        if problem:
            self.add(Change(resource, Action.BLOCKED, problem))
            return
        deps = [f"volume:{m.source}" for m in spec.mounts if m.type == "volume" and m.source]
        if isinstance(spec, Container):
            deps += [self.resource_of(v.name) for v in spec.volumes_from]
        if image_dep:
            deps.append(image_dep)
        live = self.observed.containers.get(name)
        if live is not None:  # the replace needs the leftovers' names free
            deps += [c.resource for c in self.leftover_deletes(name)]
        carry_from = live if live is not None and self.my_container(live) else self.leftover(name)
        params = container_params(
            self.project,
            kind,
            name,
            spec,
            image,
            pull=image_dep is None and self.observed.image_id(image) is None,
            carry=self.anonymous_volumes(spec, carry_from),
            volume_path=self.packed_path(spec),
            shown=cast("Container | VolumeContainer", self.desired.shown(f"{kind}s", name, spec)),
        )
        planned = tuple(d for d in dict.fromkeys(deps) if d in self.planned)
        change = self.container_change(resource, spec, live, params, image, planned)
        if change is None:
            return  # up to date: a blocked dependency has nothing to stop here
        stuck = [d for d in deps if self.blocked(d)]
        if stuck and change.action is not Action.BLOCKED:
            change = Change(
                resource, Action.BLOCKED, f"it depends on {', '.join(stuck)}, which is blocked"
            )
        self.add(change)
        if live is None:
            self.keep_leftovers_until(change, name)

    def leftover_deletes(self, name: str) -> list[Change]:
        return [
            c
            for c in self.changes
            if c.action is Action.DELETE and c.name.startswith(f"{name}_dsr_")
        ]

    def keep_leftovers_until(self, change: Change, name: str) -> None:
        """The leftovers of an interrupted replace alone name the anonymous volumes that
        ``change`` carries over: delete them only after it succeeded (never while it is
        blocked), so that an apply killed in between loses no volume."""
        for old in self.leftover_deletes(name):
            self.changes.remove(old)
            if change.action is Action.CREATE:
                self.add(dataclasses.replace(old, depends_on=(change.resource,)))
            else:
                reason = f"kept while {change.resource} is blocked: it holds its volumes"
                self.add(dataclasses.replace(old, action=Action.BLOCKED, reason=reason))

    def container_change(
        self,
        resource: str,
        spec: Container | VolumeContainer,
        live: LiveContainer | None,
        params: ContainerParams,
        image: str,
        planned: tuple[str, ...],
    ) -> Change | None:
        """What the container needs, were its dependencies all fine; ``None``: nothing."""
        pulled = (
            f"; image {params.image} is not on the engine and will be pulled" if params.pull else ""
        )
        if live is None:
            return Change(
                resource,
                Action.CREATE,
                "it does not exist" + pulled,
                depends_on=planned,
                container=params,
            )
        problem = self.ownership(live.labels, f"a container named {params.name}")
        if problem is None and not self.my_container(live):
            problem = (
                f"a container named {params.name} exists and dsr did not create it (its dsr "
                "labels come from its image, a data-packed build); dsr never takes it over"
            )
        if problem:
            return Change(resource, Action.BLOCKED, problem)
        reasons = drift.replace_reasons(self, spec, live, params.labels, image)
        if reasons:
            # The writable layer goes with the container, whatever its state; one that was
            # never started can only hold data put there by hand (docker cp).
            if live.state != "created" or live.size_rw:
                reasons.append(writable_layer(live.size_rw))
            return Change(
                resource,
                Action.REPLACE,
                "; ".join(reasons) + pulled,
                risk=Risk.RESTART,
                depends_on=planned,
                target_id=live.id,
                container=params,
            )
        if params.start and live.state != "running":
            return Change(
                resource,
                Action.START,
                f"it is {live.state}, spec says running",
                depends_on=planned,
                target_id=live.id,
            )
        return None

    def packed_path(self, spec: Container | VolumeContainer) -> str | None:
        """Where the data-packed image ``spec`` runs declares its VOLUME, if it is one."""
        image = self.desired.images.get(spec.image) if spec.image else None
        return image.path if image else None

    def leftover(self, name: str) -> LiveContainer | None:
        for live in self.observed.containers.values():
            if self.my_container(live) and live.labels.get(NAME) == name and live.name != name:
                return live
        return None

    def image_for(self, spec: Container | VolumeContainer) -> tuple[str, str | None, str | None]:
        """(reference, the planned change it depends on, why it cannot be had)."""
        if spec.image is None:
            return EMPTY_IMAGE, (EMPTY_RESOURCE if EMPTY_RESOURCE in self.planned else None), None
        if packed.former_key(self, spec.image):
            return (
                "",
                None,
                (
                    f"{spec.image} was a data-packed image of this project; its images key left "
                    "the spec while this still uses it (a registry image of that name is not meant)"
                ),
            )
        if spec.image in self.desired.images:
            tag = self.image_tags.get(spec.image)
            if tag is None:
                return "", None, f"the data-packed image {spec.image} has not been hashed"
            dep = f"image:{spec.image}"
            return tag, (dep if dep in self.planned else None), None
        return spec.image, None, None

    def anonymous_volumes(
        self, spec: Container | VolumeContainer, live: LiveContainer | None
    ) -> dict[str, str]:
        """Anonymous volumes of the container replaced, by target, to carry over."""
        if live is None:
            return {}
        carry = {}
        for mount in spec.mounts:
            if mount.anonymous:
                old = live.mount_at(mount.target)
                if old is not None and old.type == "volume" and ANONYMOUS.match(old.name):
                    carry[mount.target] = old.name
        return carry
