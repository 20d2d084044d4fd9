"""The planner: a pure function of (desired, observed) to a ``Plan``. No I/O.

Order: clean-ups and deletions of containers first (they free names and ports), then
images, volumes, volume containers and containers, each after what it depends on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import cast

from reconciler.handoff import Statement
from reconciler.kinds import Kind
from reconciler.labels import RESERVED_PREFIX, SPEC, managed
from reconciler.plan import (
    adopt,
    drift,
    handoff,
    leftovers,
    migrate,
    networks,
    operations,
    packed,
    reclaim,
)
from reconciler.plan.context import Planning, adopted
from reconciler.plan.model import (
    Action,
    Change,
    ContainerParams,
    ImageParams,
    Order,
    Plan,
    ReasonCode,
    Risk,
)
from reconciler.plan.params import (
    ANONYMOUS,
    EMPTY_IMAGE,
    container_params,
    matches,
    stop_timeout,
    volume_params,
)
from reconciler.plan.reasons import human_size, replace_downtime, stopping, writable_layer
from reconciler.record import Migration, VolumeRecord
from reconciler.snapshot import (
    CONFIG_HASH,
    KIND,
    MANAGED,
    NAME,
    PROJECT,
    LiveContainer,
    Observed,
)
from reconciler.spec.desired import Desired
from reconciler.spec.models import Container, Volume, VolumeContainer

EMPTY_RESOURCE = Kind.IMAGE.resource(EMPTY_IMAGE)
R = ReasonCode


def plan(
    desired: Desired,
    observed: Observed,
    image_tags: Mapping[str, str] | None = None,
    *,
    manifests: Mapping[str, Mapping[str, str]] | None = None,
    reclaim: Mapping[str, VolumeRecord | Mapping[str, str]] | None = None,
    migrations: Mapping[str, object] | None = None,
    adoptions: Mapping[str, str] | None = None,
    network_adoptions: Mapping[str, str] | None = None,
    adopting: Mapping[str, str] | None = None,
    handoffs: Mapping[str, Mapping[str, Statement]] | None = None,
) -> Plan:
    """What to do so that the engine holds what ``desired`` says.

    ``image_tags`` maps each key of ``desired.images`` to the tag its content builds;
    ``manifests`` maps image tags to their context's entries, to say what changed;
    ``reclaim`` maps volumes to what the last apply recorded of them (``reclaim``,
    ``destination``), for those that left the spec since; ``migrations`` maps volumes to
    the backup of a migration that was interrupted; ``adoptions`` maps the volumes this
    project adopted to the creation time of the one adopted, ``network_adoptions`` its
    adopted networks to their ids, ``adopting`` the containers an interrupted adoption
    renamed to their ids; ``handoffs`` maps volumes that move between hosts to
    each host's statement about them (``plan.handoff``).
    """
    planner = _Planner(
        desired,
        observed,
        dict(image_tags or {}),
        dict(manifests or {}),
        {k: r for k, v in (reclaim or {}).items() if (r := VolumeRecord.parse(v)) is not None},
        {k: m for k, v in (migrations or {}).items() if (m := Migration.of(v)) is not None},
        adopted=dict(adoptions or {}),
        adopted_networks=dict(network_adoptions or {}),
        adopting=dict(adopting or {}),
        handoffs=dict(handoffs or {}),
    )
    planner.run()
    # Reasons and errors are printed (and posted to pull requests): none may quote a value
    # that came from ${VAR}, whichever part of the planner wrote it (an image, a pull).
    shown = desired.redaction.text
    return Plan(
        project=desired.project,
        changes=tuple(
            operations.with_operations(dataclasses.replace(c, reason=shown(c.reason)), shown)
            for c in planner.changes
        ),
        orphans=tuple(sorted(planner.orphans)),
        kept=tuple(dataclasses.replace(c, reason=shown(c.reason)) for c in planner.kept),
        errors=tuple(shown(e) for e in planner.errors),
    )


class _Planner(Planning):
    def run(self) -> None:
        leftovers.cleanups(self)
        self.internal_images()
        packed.builds(self)
        networks.desired(self)
        for name, volume_spec in sorted(self.desired.volumes.items()):
            self.volume(name, volume_spec)
        for kind, name, spec in self.ordered_containers():
            self.container(kind, name, spec)
        packed.cleanup(self)
        reclaim.left_volumes(self)
        networks.left(self)
        operations.handovers(self)

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
                    code=R.MISSING,
                    image=ImageParams(tag=EMPTY_IMAGE, labels={MANAGED: "true", KIND: Kind.IMAGE}),
                )
            )

    def volume(self, name: str, spec: Volume) -> None:
        resource = Kind.VOLUME.resource(name)
        live = self.observed.volumes.get(name)
        if spec.external:
            if live is None:
                self.errors.append(f"{resource}: the external volume {name} does not exist")
                self.add(
                    Change(
                        resource,
                        Action.BLOCKED,
                        "it is external, so dsr never creates it, and it does not exist",
                        R.EXTERNAL_MISSING,
                    )
                )
            return
        params = volume_params(self.project, name, spec)
        rest = migrate.unfinished(self, name, live, params)
        if live is None and rest is None:
            rest = handoff.arriving(self, name, params)
        if live is None:
            missing = Change(resource, Action.CREATE, "it does not exist", R.MISSING, volume=params)
            self.add(rest or missing)
            return
        problem = (
            None if self.my_volume(live) else self.ownership(live.labels, f"a volume named {name}")
        )
        if problem and spec.adopt and problem[1] is R.UNMANAGED_CLASH:
            self.add(adopt.volume(self, name, spec, live, params))
            return
        if problem:
            self.add(Change(resource, Action.BLOCKED, *problem))
            return
        if rest is not None:
            self.add(rest)
            return
        if adopted(self.adopted, live):
            what = adopt.differences(live, spec)
            if what:
                self.add(migrate.changed(self, name, spec, params, f"it was adopted, but {what}"))
            return
        if not matches(live.labels.get(CONFIG_HASH), spec, now=params.labels[CONFIG_HASH]):
            differences = []
            if live.driver != spec.driver:
                differences.append(f"driver was {live.driver}, spec says {spec.driver}")
            if dict(live.options) != dict(spec.driver_opts):
                differences.append("driver_opts differ")
            if {k: v for k, v in live.labels.items() if not k.startswith(RESERVED_PREFIX)} != dict(
                spec.labels
            ):
                differences.append("labels differ")
            what = "; ".join(differences) or "its configuration changed"
            self.add(migrate.changed(self, name, spec, params, what))

    def ownership(self, labels: Mapping[str, str], what: str) -> tuple[str, ReasonCode] | None:
        """Why dsr may not touch an object with ``labels``, and its code; ``None``: it may."""
        if not managed(labels):
            return (
                f"{what} exists and dsr does not manage it (no dsr.managed=true label); dsr "
                "never takes over what it did not create",
                R.UNMANAGED_CLASH,
            )
        if labels.get(PROJECT) != self.project:
            return (
                f"{what} belongs to the dsr project {labels.get(PROJECT)!r}",
                R.OTHER_PROJECT,
            )
        return None

    # -- containers ----------------------------------------------------------------------
    def ordered_containers(self) -> Iterator[tuple[Kind, str, Container | VolumeContainer]]:
        """Volume containers and containers, each after those it takes volumes from."""
        specs: dict[str, tuple[Kind, Container | VolumeContainer]] = {}
        for name, vc in self.desired.volume_containers.items():
            specs[name] = (Kind.VOLUME_CONTAINER, vc)
        for name, c in self.desired.containers.items():
            specs[name] = (Kind.CONTAINER, c)
        done: set[str] = set()

        def before(name: str) -> Iterator[str]:
            spec = specs[name][1]
            if isinstance(spec, Container):
                yield from (source.name for source in spec.volumes_from)
                yield from sorted(spec.depends_on)

        # Volume containers first: they take volumes from no one, and a plan reads best
        # with them ahead of the containers that use them. Depth first without recursion:
        # a chain of thousands of containers is a valid spec.
        for root in [*sorted(self.desired.volume_containers), *sorted(self.desired.containers)]:
            if root in done:
                continue
            done.add(root)
            stack = [(root, before(root))]
            while stack:
                name, pending = stack[-1]
                other = next(pending, None)
                if other is None:
                    stack.pop()
                    yield specs[name][0], name, specs[name][1]
                elif other not in done and other in specs:
                    done.add(other)
                    stack.append((other, before(other)))

    def container(self, kind: Kind, name: str, spec: Container | VolumeContainer) -> None:
        resource = kind.resource(name)
        image, image_dep, problem = self.image_for(spec)
        if problem:
            self.add(Change(resource, Action.BLOCKED, *problem))
            return
        deps = [
            Kind.VOLUME.resource(m.source) for m in spec.mounts if m.type == "volume" and m.source
        ]
        if isinstance(spec, Container):
            deps += [self.resource_of(v.name) for v in spec.volumes_from]
            deps += [Kind.NETWORK.resource(n) for n in sorted(spec.networks)]
            deps += [Kind.CONTAINER.resource(n) for n in sorted(spec.depends_on)]
        if image_dep:
            deps.append(image_dep)
        live = self.observed.containers.get(name)
        if live is not None:  # the replace needs the leftovers' names free
            deps += [c.resource for c in leftovers.leftover_deletes(self, name)]
        # Anonymous volumes carry over from this name's own container (not from another one
        # renamed onto the name), else from what an interrupted replace left.
        own = live is not None and self.my_container(live) and live.labels.get(NAME) == name
        adopting = live is not None and spec.adopt and adopt.takeable(self, live)
        carry_from = live if own or adopting else leftovers.leftover(self, name)
        params = container_params(
            self.project,
            kind,
            name,
            spec,
            image,
            pull=image_dep is None and self.observed.image_id(image) is None,
            carry=self.anonymous_volumes(spec, carry_from),
            volume_path=self.packed_path(spec),
            bind_kinds=self.desired.bind_kinds,
            bind_real=self.desired.bind_real,
            shown=cast("Container | VolumeContainer", self.desired.shown(f"{kind}s", name, spec)),
        )
        if adopting and live is not None:
            params = adopt.kept_mounts(self, live, params)
        elif live is None and carry_from is not None and not self.my_container(carry_from):
            # An adoption killed between its renames: the one it renamed holds the volumes.
            params = adopt.kept_mounts(self, carry_from, params)
        planned = tuple(d for d in dict.fromkeys(deps) if d in self.planned)
        moved = migrate.removed_by(self, live.id) if live is not None else None
        if moved is not None:
            change: Change | None = Change(
                resource,
                Action.CREATE,
                f"{moved.resource} is made again, and the containers that use it are removed "
                "with it: this one is made again on it",
                R.VOLUME_REPLACED,
                depends_on=tuple(dict.fromkeys([*planned, moved.resource])),
                container=params,
            )
        else:
            change = self.container_change(resource, spec, live, params, image, planned)
        if change is None:
            return  # up to date: a blocked dependency has nothing to stop here
        stuck = [d for d in deps if self.blocked(d)]
        if stuck and change.action is not Action.BLOCKED:
            change = Change(
                resource,
                Action.BLOCKED,
                f"it depends on {', '.join(stuck)}, which is blocked",
                R.DEPENDENCY_BLOCKED,
            )
        self.add(change)
        if live is None:
            leftovers.keep_leftovers_until(self, change, name)

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
                R.MISSING,
                depends_on=planned,
                container=params,
            )
        problem = self.ownership(live.labels, f"a container named {params.name}")
        if problem is None and not self.my_container(live):
            problem = (
                f"a container named {params.name} exists and dsr did not create it (its dsr "
                "labels come from its image, a data-packed build); dsr never takes it over",
                R.UNMANAGED_CLASH,
            )
        if problem and spec.adopt and problem[1] is R.UNMANAGED_CLASH:
            return adopt.container(resource, spec, live, params, planned, pulled)
        if problem:
            return Change(resource, Action.BLOCKED, *problem)
        reasons = drift.replace_reasons(
            self, spec, live, image, params.labels[CONFIG_HASH], params.labels[SPEC], params
        )
        protect = isinstance(spec, Container) and spec.writable_layer == "protect"
        if reasons and protect and live.size_rw:
            return Change(
                resource,
                Action.BLOCKED,
                "; ".join(text for _, text in reasons)
                + f"; its writable layer holds {human_size(live.size_rw)} and writable_layer is "
                f"protect, so it is kept: copy that data out (docker cp {live.name}:PATH .), "
                f"then docker rm {live.name}",
                R.WRITABLE_LAYER_DATA,
                risk=Risk.DATA_LOSS,
                target_id=live.id,
            )
        if reasons:
            texts = [text for _, text in reasons]
            # The writable layer goes with the container, whatever its state; one that was
            # never started can only hold data put there by hand (docker cp).
            if live.state != "created" or live.size_rw:
                texts.append(writable_layer(live.size_rw))
            return Change(
                resource,
                Action.REPLACE,
                "; ".join(texts) + stopping(live) + pulled,
                reasons[0][0],
                risk=Risk.RESTART,
                depends_on=planned,
                target_id=live.id,
                container=params,
                stop_timeout=stop_timeout(live),
                order=Order.CREATE_THEN_DELETE,
                downtime=replace_downtime(live, params),
            )
        update = None if reasons else drift.restart_change(resource, live, params, planned)
        if update is not None:
            return update
        if params.start and live.state not in ("running", "restarting", "removing"):
            return Change(
                resource,
                Action.START,
                f"it is {live.state}, spec says running"
                + (" (it is unpaused)" if live.state == "paused" else ""),
                R.PAUSED if live.state == "paused" else R.STOPPED,
                depends_on=planned,
                target_id=live.id,
            )
        return None

    def packed_path(self, spec: Container | VolumeContainer) -> str | None:
        """Where the data-packed image ``spec`` runs declares its VOLUME, if it is one."""
        image = self.desired.images.get(spec.image) if spec.image else None
        return image.path if image else None

    def image_for(
        self, spec: Container | VolumeContainer
    ) -> tuple[str, str | None, tuple[str, ReasonCode] | None]:
        """(reference, the planned change it depends on, why it cannot be had)."""
        if spec.image is None:
            return EMPTY_IMAGE, (EMPTY_RESOURCE if EMPTY_RESOURCE in self.planned else None), None
        if packed.former_key(self, spec.image):
            return (
                "",
                None,
                (
                    f"{spec.image} was a data-packed image of this project; its images key left "
                    "the spec while this still uses it (a registry image of that name is not "
                    "meant)",
                    R.IMAGE_KEY_REMOVED,
                ),
            )
        if spec.image in self.desired.images:
            tag = self.image_tags.get(spec.image)
            if tag is None:
                why = f"the data-packed image {spec.image} has not been hashed"
                return "", None, (why, R.NOT_HASHED)
            dep = Kind.IMAGE.resource(spec.image)
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
