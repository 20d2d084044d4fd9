"""The planner's working state, shared with its helpers (drift, packed) through this small
public interface rather than the planner class itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.handoff import Statement
from reconciler.kinds import CONTAINER_KINDS, Kind
from reconciler.labels import OWNERSHIP, owned_by
from reconciler.plan.model import Action, Change
from reconciler.record import Migration, VolumeRecord
from reconciler.snapshot import (
    KIND,
    LiveContainer,
    LiveVolume,
    Observed,
)
from reconciler.spec.desired import Desired


@dataclass
class Planning:
    """What one planning run knows and has decided so far."""

    desired: Desired
    observed: Observed
    image_tags: dict[str, str]  # images key -> the tag its context builds
    manifests: dict[str, Mapping[str, str]]  # image tag -> its context's entries
    reclaim: dict[str, VolumeRecord]  # volume -> its last applied reclaim, destination
    migrations: dict[str, Migration]  # volume -> its interrupted migration
    changes: list[Change] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    # What the plan leaves in place on purpose and says why (not a change: nothing is done).
    kept: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    planned: dict[str, Change] = field(default_factory=dict)  # by resource
    # Volumes this project adopted: name -> the identity of the one adopted.
    adopted: Mapping[str, str] = field(default_factory=dict)
    # Networks this project adopted: name -> the id of the one adopted.
    adopted_networks: Mapping[str, str] = field(default_factory=dict)
    # Containers an interrupted adoption renamed NAME_dsr_old: NAME -> the renamed one's id.
    adopting: Mapping[str, str] = field(default_factory=dict)
    # Volumes moving between hosts: volume -> host -> what that host states (handoff).
    handoffs: Mapping[str, Mapping[str, Statement]] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.desired.project

    def add(self, change: Change) -> None:
        self.changes.append(change)
        self.planned[change.resource] = change

    def remove(self, change: Change) -> None:
        self.changes.remove(change)
        if self.planned.get(change.resource) is change:
            del self.planned[change.resource]

    def blocked(self, resource: str) -> bool:
        change = self.planned.get(resource)
        return change is not None and change.action is Action.BLOCKED

    def mine(self, labels: Mapping[str, str]) -> bool:
        return owned_by(labels, self.project)

    def my_volume(self, live: LiveVolume) -> bool:
        """The volume is this project's: made by dsr for it (its labels), or adopted by it
        (Docker cannot relabel a volume: the record names it with its identity, so a
        volume made again under that name behind dsr's back is not the adopted one)."""
        return self.mine(live.labels) or adopted(self.adopted, live)

    def my_container(self, live: LiveContainer) -> bool:
        """dsr created this container: its dsr labels say so and are its own.

        Docker copies an image's labels into the containers made from it, so a container
        made by hand from a data-packed build, or from an image labelled like one of dsr's
        containers (``docker commit`` makes such images), carries dsr.managed and dsr.project
        too. Those labels are only inherited: such a container is not dsr's to touch.
        """
        return owns(self.project, live, self.observed)

    def resource_of(self, name: str) -> str:
        """The resource of a container or volume container of the spec, by name."""
        if name in self.desired.volume_containers:
            return Kind.VOLUME_CONTAINER.resource(name)
        return Kind.CONTAINER.resource(name)


def adopted(record: Mapping[str, str], live: LiveVolume) -> bool:
    """``live`` is the very volume ``record`` (name -> identity) says was adopted."""
    return not live.managed and bool(live.identity) and record.get(live.name) == live.identity


def owns(project: str, live: LiveContainer, observed: Observed) -> bool:
    """``live`` is one of ``project``'s containers, by labels of its own (see
    ``Planning.my_container``): the one ownership rule the planner and saved plans share."""
    labels = live.labels
    return (
        owned_by(labels, project)
        and labels.get(KIND, Kind.CONTAINER) in CONTAINER_KINDS
        and not inherited(live, observed)
    )


def inherited(live: LiveContainer, observed: Observed) -> bool:
    """The ownership labels of ``live`` are simply its image's: Docker copied them, dsr did
    not put them there (dsr sets its own name and config hash on every container it makes,
    which no image of its carries)."""
    image = observed.images.get(live.image_id)
    if image is None:
        return False
    return all(live.labels.get(k) == image.labels.get(k) for k in OWNERSHIP)
