"""The operations of each change (one engine or backup call each, in order), and the order
of a create that needs what another change frees first.

The plan shows these; the applier makes exactly these calls. A container's replace creates
the new container beside the old one (``NAME_dsr_new``), stops the old, swaps the names,
starts the new and only then removes the old: create-then-delete, with a downtime from the
old one's stop until the new one starts. A container that publishes a host port another
container of the plan holds (one deleted, or replaced by one that publishes other ports)
waits for that change: delete-then-create, as the port must be free when it starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconciler.errors import PlanError
from reconciler.kinds import CONTAINER_KINDS, Kind
from reconciler.plan import payloads as p
from reconciler.plan.context import Planning
from reconciler.plan.model import (
    Action,
    Change,
    ContainerParams,
    HandoffParams,
    Op,
    Operation,
    Order,
    ReasonCode,
    VolumeParams,
)
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX

CHANGES_TO_CONTAINERS = (Action.CREATE, Action.REPLACE, Action.ADOPT)


def with_operations(change: Change, shown: Callable[[str], str] = str) -> Change:
    """``change`` with its operations filled in, each name as ``shown`` prints it (an image
    reference from ``${VAR}`` shows as written: plans never print such values)."""
    calls = tuple(_shown(o, shown) for o in operations_of(change))
    return dataclasses.replace(change, operations=calls, downtime=shown(change.downtime))


def with_payloads(change: Change) -> Change:
    """A change read back from a saved plan (whose file holds the operations as shown):
    each operation with the payload the planner gives it. The calls must be those the plan
    showed, one for one, or the plan is refused."""
    made = operations_of(change)
    if [o.op for o in made] != [o.op for o in change.operations]:
        raise PlanError(
            f"{change.resource}: the saved plan's operations are not those of its change; "
            "make the plan again"
        )
    calls = tuple(
        dataclasses.replace(real, target=shown.target, to=shown.to)
        for shown, real in zip(change.operations, made, strict=True)
    )
    return dataclasses.replace(change, operations=calls)


def _shown(operation: Operation, shown: Callable[[str], str]) -> Operation:
    return dataclasses.replace(
        operation,
        target=shown(operation.target),
        to=shown(operation.to) if operation.to else "",
        rollback=tuple(_shown(o, shown) for o in operation.rollback),
    )


def operations_of(change: Change) -> tuple[Operation, ...]:
    """Every call ``change`` makes, in the order the applier makes them."""
    if change.action is Action.BLOCKED:
        return ()
    if change.kind is Kind.VOLUME:
        return _volume(change)
    if change.kind is Kind.IMAGE:
        return _image(change)
    if change.kind is Kind.NETWORK:
        return _network(change)
    if change.kind in CONTAINER_KINDS:
        return _container(change)
    return ()


def _volume(change: Change) -> tuple[Operation, ...]:
    name, params = change.target_id or change.name, change.volume
    if change.action is Action.DELETE:
        return _delete_volume(name, change.backup_to)
    if change.action is Action.ADOPT:
        identity = p.AdoptVolume(name, change.identity)
        return (Operation(Op.RECORD, f"adoption of {name}", payload=identity),)
    if change.action is Action.UPDATE and change.handoff and change.backup_to is not None:
        return (  # a volume moving away: backed up, and that snapshot offered
            Operation(
                Op.BACK_UP_VOLUME, name, change.backup_to, p.BackUpVolume(name, change.backup_to)
            ),
            _handoff(change.handoff, name, with_backup=True),
        )
    if change.action is Action.UPDATE and change.restore_from is not None:
        return tuple(_restore(name, change.restore_from))
    if params is None:
        return ()
    if change.action is Action.CREATE:
        if change.restore_from is None:
            return (Operation(Op.CREATE_VOLUME, change.name, payload=p.CreateVolume(params)),)
        # The end of an interrupted migration, or a volume handed over from another host.
        made = Operation(
            Op.CREATE_VOLUME, change.name, payload=p.CreateVolume(params, if_missing=True)
        )
        hint = (
            " (hosts that hand volumes over share one backup-key: DSR_BACKUP_KEY_FILE)"
            if change.handoff is not None
            else ""
        )
        ops = [made, *_restore(change.name, change.restore_from, hint, change.handoff is None)]
        if change.handoff is not None:  # restored and verified: the old host may let go
            ops.append(_handoff(change.handoff, change.name))
        return tuple(ops)
    if change.action is Action.REPLACE:
        return _replace_volume(change, name, params)
    return ()


def _delete_volume(name: str, backup_to: str | None) -> tuple[Operation, ...]:
    ops = []
    if backup_to is not None:
        backup = p.BackUpVolume(name, backup_to, if_present=True)
        ops.append(Operation(Op.BACK_UP_VOLUME, name, backup_to, backup))
    ops.append(Operation(Op.REMOVE_VOLUME, name, payload=p.RemoveVolume(name)))
    return tuple(ops)


def _replace_volume(change: Change, name: str, params: VolumeParams) -> tuple[Operation, ...]:
    """Recreate or migrate: the users stop (as made to stop, never forced); a migration
    backs the volume up and records that backup before anything is removed, so that a
    migration cut short anywhere is finished by the next pass from the record."""
    ops = [Operation(Op.STOP_CONTAINER, c, payload=p.StopContainer(c)) for c in change.removes]
    if change.backup_to is not None:
        # Nothing was removed yet when the backup fails: the users start again.
        again = tuple(
            Operation(Op.START_CONTAINER, c, payload=p.StartContainer(c, if_stopped_here=True))
            for c in change.removes
        )
        backup = p.BackUpVolume(name, change.backup_to, migration=True)
        ops += [
            Operation(Op.BACK_UP_VOLUME, name, change.backup_to, backup, rollback=again),
            Operation(Op.RECORD, f"migration of {name}", payload=p.RecordMigration(name)),
        ]
    ops += [Operation(Op.REMOVE_CONTAINER, c, payload=p.RemoveContainer(c)) for c in change.removes]
    ops += [
        Operation(Op.REMOVE_VOLUME, name, payload=p.RemoveVolume(name)),
        Operation(Op.CREATE_VOLUME, name, payload=p.CreateVolume(params)),
    ]
    if change.restore_from is not None:
        ops += _restore(name, change.restore_from)
    elif change.backup_to is not None:
        ops += _restore(name, "")
    return tuple(ops)


def _restore(volume: str, folder: str, hint: str = "", end: bool = True) -> list[Operation]:
    restore = p.RestoreVolume(volume, folder, hint)
    ops = [Operation(Op.RESTORE_VOLUME, volume, folder or "the backup just taken", restore)]
    if end:
        ops.append(
            Operation(
                Op.RECORD, f"end of the migration of {volume}", payload=p.EndMigration(volume)
            )
        )
    return ops


def _handoff(params: HandoffParams, volume: str, *, with_backup: bool = False) -> Operation:
    state = p.StateHandoff(volume, params, with_backup)
    return Operation(Op.RECORD, f"handoff of {volume}: {params.state}", payload=state)


def _image(change: Change) -> tuple[Operation, ...]:
    image = change.image
    if change.action is Action.BUILD and image is not None:
        if image.context:
            return (Operation(Op.BUILD_IMAGE, image.tag, payload=p.BuildImage(image)),)
        return (Operation(Op.IMPORT_IMAGE, image.tag, payload=p.ImportImage(image)),)
    if change.action is Action.DELETE:
        target = change.target_id or change.name
        return (Operation(Op.REMOVE_IMAGE, change.name, payload=p.RemoveImage(target)),)
    return ()


def _network(change: Change) -> tuple[Operation, ...]:
    target, params = change.target_id or change.name, change.network
    remove = Operation(Op.REMOVE_NETWORK, change.name, payload=p.RemoveNetwork(target))
    if change.action is Action.DELETE:
        return (remove,)
    if change.action is Action.ADOPT:
        return (Operation(Op.RECORD, f"adoption of {change.name}", payload=p.AdoptNetwork(target)),)
    if params is None:
        return ()
    create = Operation(Op.CREATE_NETWORK, params.name, payload=p.CreateNetwork(params))
    if change.action is Action.REPLACE:
        return (remove, create)
    return (create,) if change.action is Action.CREATE else ()


def _container(change: Change) -> tuple[Operation, ...]:
    name, params, target = change.name, change.container, change.target_id or change.name
    if change.action is Action.START:
        if change.code is ReasonCode.PAUSED:
            return (Operation(Op.UNPAUSE_CONTAINER, name, payload=p.UnpauseContainer(target)),)
        return (Operation(Op.START_CONTAINER, name, payload=p.StartContainer(target)),)
    if change.action is Action.DELETE:
        return _delete_container(change, name, target)
    if params is None:
        return ()
    start = Operation(Op.START_CONTAINER, params.name, payload=p.StartContainer(params.name))
    if change.action is Action.UPDATE:
        update = p.UpdateContainer(target, params.restart)
        ops = [Operation(Op.UPDATE_CONTAINER, name, f"restart {params.restart}", update)]
        return (*ops, start) if params.start else tuple(ops)
    ops = (
        [Operation(Op.PULL_IMAGE, params.image, payload=p.PullImage(params.image))]
        if params.pull
        else []
    )
    if change.action is Action.CREATE:
        ops.append(
            Operation(
                Op.CREATE_CONTAINER, params.name, payload=p.CreateContainer(params, params.name)
            )
        )
        return (*ops, start) if params.start else tuple(ops)
    return (*ops, *_replace_container(change, params, target))


def _delete_container(change: Change, name: str, target: str) -> tuple[Operation, ...]:
    stop = p.StopContainer(target, change.stop_timeout)
    ops = [
        Operation(Op.STOP_CONTAINER, name, payload=stop),
        Operation(Op.REMOVE_CONTAINER, name, payload=p.RemoveContainer(target)),
    ]
    if change.adoption:  # the rest of an interrupted adoption: its record goes with it
        forget = p.ForgetAdopting(change.adoption, target)
        ops.append(
            Operation(Op.RECORD, f"end of the adoption of {change.adoption}", payload=forget)
        )
    return tuple(ops)


def _replace_container(change: Change, params: ContainerParams, old: str) -> list[Operation]:
    """Create the new one beside the old; stop the old, swap the names, start the new, and
    only then remove the old (create-then-delete). A new one that does not start is
    removed and the old one gets its name back (and runs again if it ran). An adopted
    container is not dsr's: the record says dsr renamed it, until it is gone."""
    name = change.name
    new, aside = params.name + NEW_SUFFIX, params.name + OLD_SUFFIX
    forget: tuple[Operation, ...] = ()
    ops = [
        Operation(Op.CREATE_CONTAINER, new, payload=p.CreateContainer(params, new)),
        Operation(Op.STOP_CONTAINER, name, payload=p.StopContainer(old, change.stop_timeout)),
    ]
    if change.action is Action.ADOPT:
        adopting = p.RecordAdopting(params.name, old)
        ops.append(Operation(Op.RECORD, f"adoption of {params.name}", payload=adopting))
        done = p.ForgetAdopting(params.name, old)
        forget = (Operation(Op.RECORD, f"end of the adoption of {params.name}", payload=done),)
    ops += [
        Operation(Op.RENAME_CONTAINER, name, aside, p.RenameContainer(old, aside)),
        Operation(Op.RENAME_CONTAINER, new, params.name, p.RenameContainer(new, params.name)),
    ]
    if params.start:
        back = (
            Operation(
                Op.REMOVE_CONTAINER, params.name, payload=p.RemoveContainer(params.name, force=True)
            ),
            Operation(Op.RENAME_CONTAINER, aside, params.name, p.RenameContainer(old, params.name)),
            Operation(
                Op.START_CONTAINER, params.name, payload=p.StartContainer(old, if_stopped_here=True)
            ),
            *forget,
        )
        start = p.StartContainer(params.name)
        ops.append(Operation(Op.START_CONTAINER, params.name, payload=start, rollback=back))
    ops.append(Operation(Op.REMOVE_CONTAINER, aside, payload=p.RemoveContainer(old)))
    return [*ops, *forget]


def host_ports(ports: tuple[str, ...]) -> set[str]:
    """The host ports a container's ``ports`` publish, as ``PORT/PROTO``."""
    out: set[str] = set()
    for entry in ports:
        spec, _, proto = entry.partition("/")
        if spec.startswith("["):  # [IPv6]:HOST:CONTAINER
            spec = spec[spec.index("]") + 2 :]
        parts = spec.split(":")
        host = parts[-2] if len(parts) >= 2 else ""
        if not host:
            continue  # Docker picks a free port: nothing to wait for
        first, _, last = host.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            for port in range(int(first), int(last or first) + 1):
                out.add(f"{port}/{proto or 'tcp'}")
    return out


def handovers(planning: Planning) -> None:
    """Make each container that publishes a host port another container of this plan
    holds now wait for the change that frees it: delete-then-create."""
    holders: dict[str, Change] = {}  # host port -> the change that frees it
    for change in planning.changes:
        if change.kind not in CONTAINER_KINDS or change.target_id is None:
            continue
        if change.action not in (Action.DELETE, Action.REPLACE, Action.ADOPT):
            continue
        live = next(
            (c for c in planning.observed.containers.values() if c.id == change.target_id), None
        )
        for port in live.ports if live is not None else ():
            holders.setdefault(port, change)
    if not holders:
        return
    for index, change in enumerate(planning.changes):
        if change.action not in CHANGES_TO_CONTAINERS or change.container is None:
            continue
        freed = {
            port: holder
            for port in sorted(host_ports(change.container.ports))
            if (holder := holders.get(port)) is not None
            and holder.resource != change.resource
            and change.resource not in holder.depends_on  # never a cycle
        }
        if not freed:
            continue
        waits = sorted({h.resource for h in freed.values()})
        ports = ", ".join(p.removesuffix("/tcp") for p in freed)
        wait_for = ", ".join(waits)
        updated = dataclasses.replace(
            change,
            depends_on=tuple(dict.fromkeys([*change.depends_on, *waits])),
            order=Order.DELETE_THEN_CREATE,
            downtime=f"host port {ports} is free only once {wait_for} stops: nothing answers "
            "on it from that stop until this container starts",
        )
        planning.changes[index] = updated
        planning.planned[change.resource] = updated
