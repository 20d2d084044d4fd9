"""Volumes whose driver, options or labels changed: ``on_change`` says what happens.

Docker cannot change a volume in place. ``block`` (the default) keeps it as it is, a
blocked change saying what would be lost. ``recreate`` deletes it with its data and makes
it again empty: a data-loss change the spec allowed. ``migrate`` takes a verified backup,
removes the containers that use the volume and the volume, makes it again with the new
settings, restores the backup into it and checks it; those containers are then made
again (``create`` changes that depend on this one).

A migration stops the volume's users, then records its backup in the state directory
before it removes anything, so a migration interrupted at any step is finished by the next
pass from the recorded backup: the volume is made again (``create``), refilled
(``update``), or, when the spec changed meanwhile, made again with its settings
(``replace``); never backed up again while the record stands.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.kinds import Kind
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, ReasonCode, Risk, VolumeParams
from reconciler.snapshot import CONFIG_HASH, LiveVolume
from reconciler.spec.models import Volume


def unfinished(planning: Planning, name: str, live: LiveVolume | None, params: VolumeParams) -> Change | None:  # fmt: skip
    """The rest of a migration of ``name`` that was interrupted, if one was.

    A backup may be restored only while nothing can have written since it was taken.
    The original volume (its ``dsr.instance`` recorded with the backup) was never removed,
    so it holds every byte, also what a user started again since wrote: the migration
    starts again with a new backup. A volume the migration made held nothing until the
    restore: a container that ran on it since may have written what a restore would
    wipe, so such a user blocks it, as does any container that is not dsr's."""
    migration = planning.migrations.get(name)
    if migration is None:
        return None
    folder = migration.folder
    resource = Kind.VOLUME.resource(name)
    why = f"a migration was interrupted; its data is restored from the verified backup {folder}"
    if live is None:
        return Change(
            resource, Action.CREATE, f"{why} into the volume made again", ReasonCode.MIGRATION,
            volume=params, target_id=name, restore_from=folder,
        )  # fmt: skip
    users = _Users.of(planning, name)
    if users.others:
        return Change(
            resource, Action.BLOCKED,
            f"{why}, but {users.held_by}; the backup keeps the data until they are gone",
            ReasonCode.MIGRATION, risk=Risk.DATA_LOSS,
        )  # fmt: skip
    matches = live.labels.get(CONFIG_HASH) == params.labels[CONFIG_HASH]
    if migration.original and live.instance == migration.original:
        if matches:  # the spec went back to the original's settings: nothing to finish
            return None
        destination = planning.reclaim[name].destination if name in planning.reclaim else ""
        return Change(
            resource, Action.REPLACE,
            "a migration was interrupted before it removed the volume, which still holds "
            "every byte, also any written since its backup: it starts again with a new "
            f"backup to {destination or 'the state directory'}{users.around}",
            ReasonCode.MIGRATION, risk=Risk.RESTART, target_id=name, volume=params,
            backup_to=destination, removes=users.ids,
        )  # fmt: skip
    if users.ran:
        return Change(
            resource, Action.BLOCKED,
            f"{why}, but {', '.join(users.ran)} ran on the volume the migration made, and "
            "restoring the backup would overwrite what they wrote; remove them (or restore "
            "by hand) to finish it",
            ReasonCode.MIGRATION, risk=Risk.DATA_LOSS,
        )  # fmt: skip
    if matches:
        return Change(
            resource, Action.UPDATE, why, ReasonCode.MIGRATION, risk=Risk.RESTART,
            volume=params, target_id=name, restore_from=folder,
        )  # fmt: skip
    # Settings other than the spec's (it changed since): a volume the migration made and
    # had not refilled; the recorded backup holds the data, and a new backup of this one
    # could be of an emptied volume. It is made again and refilled from the record.
    return Change(
        resource, Action.REPLACE, f"{why} into the volume made again with the spec's "
        f"settings{users.around}", ReasonCode.MIGRATION, risk=Risk.RESTART, target_id=name,
        volume=params, restore_from=folder, removes=users.ids,
    )  # fmt: skip


def changed(planning: Planning, name: str, spec: Volume, params: VolumeParams, what: str) -> Change:
    """The change for a volume whose settings differ from the spec's (``what`` says how)."""
    resource = Kind.VOLUME.resource(name)
    users = _Users.of(planning, name)
    if spec.on_change == "block" or users.others:
        why = (
            "on_change is block, so its data stays as it is"
            if spec.on_change == "block"
            else f"on_change is {spec.on_change}, but {users.held_by}"
        )
        return Change(
            resource,
            Action.BLOCKED,
            f"{what}; Docker cannot change a volume in place and {why}",
            ReasonCode.VOLUME_DATA,
            risk=Risk.DATA_LOSS,
        )
    transient = _transient(planning, name, spec)
    if spec.on_change == "migrate" and transient:
        return Change(
            resource, Action.BLOCKED,
            f"{what}; on_change is migrate, but {transient}: its data exists only while a "
            "container has it mounted, so a migration could not carry it (use recreate)",
            ReasonCode.VOLUME_DATA, risk=Risk.DATA_LOSS,
        )  # fmt: skip
    around, removes = users.around, users.ids
    if spec.on_change == "recreate":
        return Change(
            resource, Action.REPLACE,
            f"{what}; on_change is recreate: it is deleted with its data and made again "
            f"empty{around}",
            ReasonCode.CONFIG_CHANGED, risk=Risk.DATA_LOSS, target_id=name, volume=params,
            removes=removes,
        )  # fmt: skip
    destination = planning.reclaim[name].destination if name in planning.reclaim else ""
    where = destination or "the state directory"
    return Change(
        resource, Action.REPLACE,
        f"{what}; on_change is migrate: it is backed up to {where} and verified, made "
        f"again with the new settings, and the backup is restored into it and "
        f"verified{around}. Not carried: extended attributes (xattrs, ACLs, capabilities), "
        "links leading outside the volume, sockets and devices; if the volume holds any, "
        "the migration stops before anything is removed (through the Engine API, "
        "extended attributes cannot be seen and are lost)",
        ReasonCode.CONFIG_CHANGED, risk=Risk.RESTART, target_id=name, volume=params,
        backup_to=destination, removes=removes,
    )  # fmt: skip


def _transient(planning: Planning, name: str, spec: Volume) -> str:
    """Which side of a migration is a tmpfs volume, or ``""``: Docker mounts a fresh tmpfs
    when the first container uses it and drops it with the last, so stopping the users
    loses what the old one held, and what a helper writes into the new one is gone once
    the helper lets go of it."""
    live = planning.observed.volumes.get(name)
    if live is not None and live.driver == "local" and live.options.get("type") == "tmpfs":
        return "the volume is a tmpfs"
    if spec.driver == "local" and spec.driver_opts.get("type") == "tmpfs":
        return "the spec makes it a tmpfs"
    return ""


@dataclass(frozen=True)
class _Users:
    """The containers that mount a volume: the ones a replace removes and makes again, and
    the names of those not dsr's (which block it)."""

    ids: tuple[str, ...]
    around: str  # what the plan's reason says happens to them
    others: list[str]
    ran: list[str]  # those started at least once (not merely created)

    @classmethod
    def of(cls, planning: Planning, name: str) -> _Users:
        users = [planning.observed.containers[u] for u in planning.observed.volume_users(name)]
        names = ", ".join(sorted(u.name for u in users))
        return cls(
            ids=tuple(sorted(u.id for u in users)),
            around=f"; {names} are stopped, removed and made again on it" if users else "",
            others=sorted(u.name for u in users if not planning.my_container(u)),
            ran=sorted(u.name for u in users if u.state != "created"),
        )

    @property
    def held_by(self) -> str:
        """Why the others block a replace."""
        return f"{', '.join(self.others)} use it, and dsr removes only its own containers"


def removed_by(planning: Planning, container_id: str) -> Change | None:
    """The volume change that removes this container (to make it again after)."""
    for change in planning.changes:
        if change.kind is Kind.VOLUME and container_id in change.removes:
            return change
    return None
