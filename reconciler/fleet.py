"""Plans for many hosts at once, from one repository: ``dsr diff OLD NEW --hosts FILE``.

Each host of the inventory gets the plan from its share of OLD to its share of NEW, made
offline as ``dsr diff`` makes one (``reconcile.offline_plan``); images are hashed once for
the whole fleet. A host whose share of NEW is invalid (a reference to a resource placed
elsewhere) gets its problems instead of a plan, and the others are still planned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from reconciler.errors import SpecError, SpecIssue
from reconciler.handoff import Statement
from reconciler.plan.model import SUMMARY_ORDER, Plan
from reconciler.reconcile import offline_plan, pack_images
from reconciler.spec.desired import Desired
from reconciler.spec.hosts import Host
from reconciler.spec.share import SECTIONS, placed, share


@dataclass(frozen=True)
class HostPlan:
    """One host's part of a fleet plan: its plan, or why its share is invalid."""

    host: Host
    plan: Plan | None
    issues: tuple[SpecIssue, ...] = ()

    @property
    def touched(self) -> bool:
        return bool(self.issues) or (self.plan is not None and bool(self.plan.changes))


@dataclass(frozen=True)
class FleetPlan:
    """A plan per host, in inventory order (sorted by name)."""

    project: str
    hosts: tuple[HostPlan, ...]

    @property
    def errors(self) -> bool:
        return any(h.issues or (h.plan and h.plan.errors) for h in self.hosts)

    @property
    def changes(self) -> bool:
        return any(h.plan and h.plan.changes for h in self.hosts)

    def summary(self) -> dict[str, int]:
        """Changes over every host, by action."""
        total = dict.fromkeys(SUMMARY_ORDER, 0)
        for part in self.hosts:
            for action, count in (part.plan.summary() if part.plan else {}).items():
                total[action] = total.get(action, 0) + count
        return total


def fleet_plan(old: Desired, new: Desired, hosts: Iterable[Host]) -> FleetPlan:
    """Each host's plan from its share of ``old`` to its share of ``new``."""
    packed = pack_images(old, None), pack_images(new, None)
    hosts = list(hosts)
    left = _left(old, new, hosts)
    parts = []
    for host in hosts:
        try:
            new_share = share(new, host)
        except SpecError as err:
            parts.append(HostPlan(host, None, tuple(err.issues)))
            continue
        try:
            old_share = share(old, host)
        except SpecError:
            # OLD's share was already broken here: plan from what would have been applied
            # before the references broke, i.e. nothing of OLD is assumed on this host.
            old_share = share(_nothing_placed(old), host)
        offers = {
            name: {h: Statement(host=h, state="offered", snapshot=PENDING) for h in leaving}
            for name, leaving in left.items()
            if name in new_share.volumes and host.name not in leaving
        }
        parts.append(HostPlan(host, offline_plan(old_share, new_share, packed, offers)))
    return FleetPlan(new.project, tuple(parts))


PENDING = "taken-at-handoff"  # the snapshot an old host's agent takes when it applies NEW


def _left(old: Desired, new: Desired, hosts: list[Host]) -> dict[str, list[str]]:
    """Each placed volume that leaves hosts: the hosts whose share of OLD holds it and
    whose share of NEW does not (they offer it to the hosts it moves to)."""
    out: dict[str, list[str]] = {}
    for name in old.volumes:
        resource = f"volume:{name}"
        if resource not in old.placements and resource not in new.placements:
            continue
        for host in hosts:
            gone = name not in new.volumes or not placed(new, resource, host)
            if placed(old, resource, host) and gone and name in new.volumes:
                out.setdefault(name, []).append(host.name)
    return out


def _nothing_placed(desired: Desired) -> Desired:
    """``desired`` with every resource placed on no host (an empty share everywhere)."""
    ids = {
        f"{kind}:{key}"
        for section, kind in SECTIONS.items()
        for key in getattr(desired, section, {}) or {}
    }
    return replace(desired, placements=dict.fromkeys(ids, ("",)), references=())
