"""A volume that moves between hosts, planned on each side from the hosts' statements.

Each host plans its own half (``reconciler.handoff`` has the statements and where they
live). On the host a volume **left** (it is live here, in the spec, but placed elsewhere):

1. no offer yet: stop and remove its users (their own changes: they moved too), back it
   up to the handoff folder and offer that snapshot (``update``, code ``handoff``);
2. offered, not yet restored elsewhere: keep it (an orphan), change nothing;
3. another host restored the offer and verified it: reclaim it by its ``reclaim`` policy,
   as if it had left the spec (``retain``: kept as an orphan).

On a host the volume **arrives** at (in its share, missing here): a snapshot offered by
another host is restored into a new volume and verified (``create``, code ``handoff``); a
host that still holds it under an older placement makes it wait (``blocked``, and so are
the containers that use it), so it is never made empty while its data is elsewhere; with
no statement at all it is a new volume (``create``). A volume no backup rule lists with a
folder destination cannot be handed over: its move is blocked on the old host.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.handoff import Statement, placement_digest, snapshot_of
from reconciler.kinds import Kind
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, HandoffParams, ReasonCode, Risk, VolumeParams
from reconciler.snapshot import LiveVolume
from reconciler.spec.hosts import describe

R = ReasonCode


def _statements(planning: Planning, name: str) -> Mapping[str, Statement]:
    return planning.handoffs.get(name) or {}


def _digest(planning: Planning, name: str) -> str:
    return placement_digest(planning.desired.placements.get(Kind.VOLUME.resource(name)))


def arriving(planning: Planning, name: str, params: VolumeParams) -> Change | None:
    """The change that brings a volume missing here from the host it left, or ``None``
    when it is simply new (made empty)."""
    desired, host = planning.desired, planning.desired.host
    destination = desired.handoff_to.get(name)
    if host is None or not destination:
        return None
    resource = Kind.VOLUME.resource(name)
    others = [s for h, s in sorted(_statements(planning, name).items()) if h != host]
    offers = [s for s in others if s.state == "offered" and s.snapshot]
    if offers:
        offer = max(offers, key=lambda s: (s.time, s.host))
        folder = snapshot_of(destination, desired.project, offer.snapshot)
        return Change(
            resource,
            Action.CREATE,
            f"it moved here from host {offer.host}: made from the snapshot {offer.snapshot} "
            f"that host offered in {destination}, checked against its tree digest; host "
            f"{offer.host} reclaims its copy only after that",
            R.HANDOFF,
            volume=params,
            restore_from=folder,
            handoff=HandoffParams(
                destination,
                host,
                "restored",
                placement=_digest(planning, name),
                snapshot=offer.snapshot,
                source=offer.host,
            ),
        )
    current = _digest(planning, name)
    holders = [s.host for s in others if s.state in ("held", "restored") and s.placement != current]
    if holders:
        return Change(
            resource,
            Action.BLOCKED,
            f"it moves here from host {', '.join(holders)}, which has not handed it over yet "
            "(backed up and offered); it is not made empty meanwhile, and the containers that "
            "use it wait",
            R.HANDOFF,
        )
    return None


def leaving(planning: Planning, live: LiveVolume) -> bool:
    """Plan a volume of the spec that is placed on other hosts now; False when it is no
    such volume (the caller handles it as one that left the spec)."""
    desired, host, name = planning.desired, planning.desired.host, live.name
    resource = Kind.VOLUME.resource(name)
    placement = desired.elsewhere.get(resource)
    if placement is None or host is None:
        return False
    destination = desired.handoff_to.get(name)
    if not destination:
        planning.add(
            Change(
                resource,
                Action.BLOCKED,
                f"it moved to {describe(placement)}, but no backup rule lists it with a folder "
                "destination both hosts reach, so it cannot be handed over; it is kept here",
                R.HANDOFF,
                target_id=name,
            )
        )
        return True
    statements = _statements(planning, name)
    own = statements.get(host)
    taken = own is not None and (
        own.state == "released"
        or (
            own.state == "offered"
            and any(
                s.state == "restored" and s.source == host and s.snapshot == own.snapshot
                for h, s in statements.items()
                if h != host
            )
        )
    )
    if taken:
        return False  # handed over: its reclaim policy applies, as to one that left
    if own is not None and own.state == "offered":
        planning.orphans.append(resource)  # offered: kept until restored elsewhere
        return True
    _offer(planning, live, destination, placement)
    return True


def _offer(
    planning: Planning, live: LiveVolume, destination: str, placement: tuple[str, ...]
) -> None:
    from reconciler.plan.reclaim import leaving_containers

    name, host = live.name, planning.desired.host
    assert host is not None
    resource = Kind.VOLUME.resource(name)
    leaving = leaving_containers(planning)
    users = planning.observed.volume_users(name)
    staying = [u for u in users if u not in leaving]
    if staying:
        planning.add(
            Change(
                resource,
                Action.BLOCKED,
                f"it moved to {describe(placement)}, but {', '.join(staying)} still use it "
                "here; it is handed over once nothing uses it",
                R.VOLUME_IN_USE,
                target_id=name,
            )
        )
        return
    planning.add(
        Change(
            resource,
            Action.UPDATE,
            f"it moved to {describe(placement)}: once its containers here are removed, it is "
            f"backed up to {destination} and offered to the new host; it is kept here until "
            "that host restored and verified it",
            R.HANDOFF,
            risk=Risk.NONE,
            depends_on=tuple(sorted(leaving[u] for u in users)),
            target_id=name,
            backup_to=destination,
            handoff=HandoffParams(destination, host, "offered", placement=""),
        )
    )
