"""Volumes that left the spec: kept, deleted, or backed up and then deleted.

The policy in force is the one recorded by the last apply while the volume was in the
spec (``reclaim`` in the state directory's record of the project); with no record, the
volume is retained. The apply that sees it leave binds that decision to the volume's
``dsr.instance``: a volume of the same name made again (``dsr restore``, by hand) is
another volume, and is retained. ``retain`` keeps it as an orphan in every plan; ``delete`` deletes it
once no container uses it; ``backup-then-delete`` deletes it only after a backup of it
verified. Both are data-loss changes the spec allowed, so they are not blocked.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.kinds import Kind
from reconciler.plan import handoff
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, ReasonCode, Risk
from reconciler.plan.reasons import still
from reconciler.record import RETAIN, VolumeRecord
from reconciler.snapshot import KIND, LiveVolume


def left_volumes(planning: Planning) -> None:
    """A change (or an orphan entry) for each of the project's volumes not in the spec."""
    for volume in sorted(planning.observed.volumes.values(), key=lambda v: v.name):
        if not planning.my_volume(volume) or volume.name in planning.desired.volumes:
            continue
        if volume.labels.get(KIND) == Kind.ANONYMOUS_VOLUME:
            if not planning.observed.volume_users(volume.name):
                planning.orphans.append(Kind.VOLUME.resource(volume.name))
            continue
        if handoff.leaving(planning, volume):
            continue  # placed on other hosts now: handed over first (see plan.handoff)
        record = planning.reclaim.get(volume.name) or VolumeRecord()
        policy = record.reclaim
        if record.instance and record.instance != volume.instance:
            # Decided when another volume of this name left (one restored since is not
            # that one): the decision went with it, and this one is kept.
            policy = RETAIN
        if policy == RETAIN:
            planning.orphans.append(Kind.VOLUME.resource(volume.name))
        else:
            _reclaim(planning, volume, policy, record.destination)


def _reclaim(planning: Planning, volume: LiveVolume, policy: str, destination: str) -> None:
    resource = Kind.VOLUME.resource(volume.name)
    leaving = leaving_containers(planning)
    users = planning.observed.volume_users(volume.name)
    staying = [u for u in users if u not in leaving]
    if staying:
        planning.add(
            Change(
                resource,
                Action.BLOCKED,
                f"it left the spec and its reclaim policy is {policy}, but "
                f"{still(staying)} it; it is deleted once no container uses it",
                ReasonCode.VOLUME_IN_USE,
                risk=Risk.DATA_LOSS,
                target_id=volume.name,
            )
        )
        return
    backup = policy == "backup-then-delete"
    how = (
        f"it is backed up to {destination or 'the state directory'}, and deleted only once "
        "that backup verified"
        if backup
        else "its data is deleted with it"
    )
    planning.add(
        Change(
            resource,
            Action.DELETE,
            f"it left the spec and its reclaim policy is {policy}: {how}",
            ReasonCode.LEFT_SPEC,
            risk=Risk.DATA_LOSS,
            depends_on=tuple(sorted(leaving[u] for u in users)),
            target_id=volume.name,
            backup_to=destination if backup else None,
        )
    )


def leaving_containers(planning: Planning) -> Mapping[str, str]:
    """Containers this plan deletes or replaces, by name: their change's resource."""
    by_id = {c.id: c.name for c in planning.observed.containers.values()}
    out = {}
    for change in planning.changes:
        if change.action is Action.DELETE and change.target_id in by_id:
            out[by_id[change.target_id]] = change.resource
    return out
