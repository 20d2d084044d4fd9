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

from reconciler.kinds import CONTAINER_KINDS, Kind
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, Op, Operation, Order, ReasonCode
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX

CHANGES_TO_CONTAINERS = (Action.CREATE, Action.REPLACE, Action.ADOPT)


def with_operations(change: Change, shown: Callable[[str], str] = str) -> Change:
    """``change`` with its operations filled in, each name as ``shown`` prints it (an image
    reference from ``${VAR}`` shows as written: plans never print such values)."""
    calls = tuple(
        Operation(o.op, shown(o.target), shown(o.to) if o.to else "") for o in operations_of(change)
    )
    return dataclasses.replace(change, operations=calls, downtime=shown(change.downtime))


def operations_of(change: Change) -> tuple[Operation, ...]:
    """Every call ``change`` makes, in the order the applier makes them."""
    if change.action is Action.BLOCKED:
        return ()
    if change.kind is Kind.VOLUME:
        return _volume(change)
    if change.kind is Kind.IMAGE:
        return _image(change)
    if change.kind in CONTAINER_KINDS:
        return _container(change)
    return ()


def _volume(change: Change) -> tuple[Operation, ...]:
    name = change.target_id or change.name
    ops: list[Operation] = []
    if change.action is Action.CREATE:
        ops.append(Operation(Op.CREATE_VOLUME, change.name))
        if change.restore_from is not None:  # the end of an interrupted migration
            ops += _restore(change.name, change.restore_from)
    elif change.action is Action.UPDATE and change.restore_from is not None:
        ops += _restore(name, change.restore_from)
    elif change.action is Action.REPLACE:
        ops += [Operation(Op.STOP_CONTAINER, c) for c in change.removes]
        if change.backup_to is not None:
            ops += [
                Operation(Op.BACK_UP_VOLUME, name, change.backup_to),
                Operation(Op.RECORD, f"migration of {name}"),
            ]
        ops += [Operation(Op.REMOVE_CONTAINER, c) for c in change.removes]
        ops += [Operation(Op.REMOVE_VOLUME, name), Operation(Op.CREATE_VOLUME, name)]
        folder = change.restore_from
        if change.backup_to is not None or folder is not None:
            ops += _restore(name, folder or "the backup just taken")
    elif change.action is Action.DELETE:
        if change.backup_to is not None:
            ops.append(Operation(Op.BACK_UP_VOLUME, name, change.backup_to))
        ops.append(Operation(Op.REMOVE_VOLUME, name))
    elif change.action is Action.ADOPT:
        ops.append(Operation(Op.RECORD, f"adoption of {name}"))
    return tuple(ops)


def _restore(volume: str, folder: str) -> list[Operation]:
    return [
        Operation(Op.RESTORE_VOLUME, volume, folder),
        Operation(Op.RECORD, f"end of the migration of {volume}"),
    ]


def _image(change: Change) -> tuple[Operation, ...]:
    if change.action is Action.BUILD and change.image is not None:
        op = Op.BUILD_IMAGE if change.image.context else Op.IMPORT_IMAGE
        return (Operation(op, change.image.tag),)
    if change.action is Action.DELETE:
        return (Operation(Op.REMOVE_IMAGE, change.name),)
    return ()


def _container(change: Change) -> tuple[Operation, ...]:
    name, params = change.name, change.container
    if change.action is Action.START:
        paused = change.code is ReasonCode.PAUSED
        return (Operation(Op.UNPAUSE_CONTAINER if paused else Op.START_CONTAINER, name),)
    if change.action is Action.DELETE:
        return (Operation(Op.STOP_CONTAINER, name), Operation(Op.REMOVE_CONTAINER, name))
    if change.action is Action.UPDATE:
        update = Operation(Op.UPDATE_CONTAINER, name, f"restart {params.restart}" if params else "")
        start = params is not None and params.start
        return (update, Operation(Op.START_CONTAINER, name)) if start else (update,)
    if params is None:
        return ()
    ops = [Operation(Op.PULL_IMAGE, params.image)] if params.pull else []
    if change.action is Action.CREATE:
        ops.append(Operation(Op.CREATE_CONTAINER, params.name))
        if params.start:
            ops.append(Operation(Op.START_CONTAINER, params.name))
        return tuple(ops)
    new, old = params.name + NEW_SUFFIX, params.name + OLD_SUFFIX
    ops += [
        Operation(Op.CREATE_CONTAINER, new),
        Operation(Op.STOP_CONTAINER, name),
        Operation(Op.RENAME_CONTAINER, name, old),
        Operation(Op.RENAME_CONTAINER, new, params.name),
    ]
    if params.start:
        ops.append(Operation(Op.START_CONTAINER, params.name))
    ops.append(Operation(Op.REMOVE_CONTAINER, old))
    return tuple(ops)


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
