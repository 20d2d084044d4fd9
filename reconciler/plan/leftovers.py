"""Containers that must go before the spec's are made, and the leftovers of a replace.

An interrupted replace leaves ``NAME_dsr_new`` (never started) or ``NAME_dsr_old`` (the
container in service, holding its anonymous volumes). They are deleted once the container
they stand for is made, never while it is blocked; one whose writable layer holds data is
blocked unless it is the old half and its spec lets the layer go. A managed container
that left the spec (or was renamed off it) is deleted, its volumes kept.
"""

from __future__ import annotations

import dataclasses

from reconciler.kinds import Kind
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, ReasonCode, Risk
from reconciler.plan.params import stop_timeout
from reconciler.plan.reasons import stopping, writable_layer
from reconciler.snapshot import KIND, NAME, LiveContainer
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX

R = ReasonCode


def cleanups(planner: Planning) -> None:
    wanted = {**planner.desired.containers, **planner.desired.volume_containers}
    for live in sorted(planner.observed.containers.values(), key=lambda c: c.name):
        if renamed_by_adoption(planner, live):
            adoption_leftover(planner, live, live.name.removesuffix(OLD_SUFFIX) in wanted)
            continue
        if not planner.my_container(live) or live.name in wanted:
            continue  # a spec'd name is its resource's to keep or replace
        kind = Kind(live.labels.get(KIND, Kind.CONTAINER))
        if is_leftover(planner, live) and live.size_rw and not discards_layer(planner, live):
            planner.add(
                Change(
                    resource=kind.resource(live.name),
                    action=Action.BLOCKED,
                    reason=f"left over from an interrupted replace of "
                    f"{live.labels.get(NAME)}, but {writable_layer(live.size_rw)}; "
                    f"remove it yourself (docker rm {live.name}) once that data is safe",
                    code=R.WRITABLE_LAYER_DATA,
                    risk=Risk.DATA_LOSS,
                    target_id=live.id,
                )
            )
        elif is_leftover(planner, live):
            planner.add(
                Change(
                    resource=kind.resource(live.name),
                    action=Action.DELETE,
                    reason=f"left over from an interrupted replace of "
                    f"{live.labels.get(NAME)}; its volumes are kept",
                    code=R.LEFTOVER,
                    target_id=live.id,
                    stop_timeout=stop_timeout(live),
                )
            )
        else:
            delete_orphan(planner, kind, live)


def renamed_by_adoption(planner: Planning, live: LiveContainer) -> bool:
    """``live`` is a container that is not dsr's, which an adoption of NAME renamed
    ``NAME_dsr_old`` and was killed before it removed it: the project's record says so
    (by its id; a container merely named so is not)."""
    name = live.name.removesuffix(OLD_SUFFIX)
    return name != live.name and planner.adopting.get(name) == live.id


def adoption_leftover(planner: Planning, live: LiveContainer, wanted: bool) -> None:
    """Finish an interrupted adoption: the container it renamed goes (its volumes kept,
    carried over by dsr's own) once dsr's own of that name is made or started."""
    name = live.name.removesuffix(OLD_SUFFIX)
    spec = planner.desired.containers.get(name)
    why = f"dsr renamed it when it began to adopt {name}, and was stopped before it removed it"
    if not wanted:
        reason = f"{why}; {name} left the spec since, so it is kept: rename it back yourself (docker rename {live.name} {name})"  # fmt: skip
        planner.add(Change(Kind.CONTAINER.resource(live.name), Action.BLOCKED, reason, R.LEFTOVER, target_id=live.id))  # fmt: skip
        return
    if live.size_rw and spec is not None and spec.writable_layer == "protect":
        reason = f"{why}; but {writable_layer(live.size_rw)} and writable_layer is protect: copy that data out, then docker rm {live.name}"  # fmt: skip
        planner.add(Change(Kind.CONTAINER.resource(live.name), Action.BLOCKED, reason, R.WRITABLE_LAYER_DATA, risk=Risk.DATA_LOSS, target_id=live.id))  # fmt: skip
        return
    planner.add(
        Change(
            resource=Kind.CONTAINER.resource(live.name),
            action=Action.DELETE,
            reason=f"{why}; the adoption is finished: it is removed, its volumes are kept"
            + ("" if live.size_rw is None else f" and {writable_layer(live.size_rw)}"),
            code=R.LEFTOVER,
            target_id=live.id,
            stop_timeout=spec.stop_timeout if spec is not None else 10,
            adoption=name,
        )
    )


def discards_layer(planner: Planning, live: LiveContainer) -> bool:
    """``live`` is the old half of a replace whose spec lets it drop the writable layer
    (the new half was never started by dsr: data in it was put there by hand)."""
    spec = planner.desired.containers.get(live.labels.get(NAME, ""))
    protect = spec is not None and spec.writable_layer == "protect"
    return live.name.endswith(OLD_SUFFIX) and not protect


def is_leftover(planner: Planning, live: LiveContainer) -> bool:
    """``live`` is what an interrupted replace leaves: the new or the old half, named
    and labelled for a container of the spec of the same kind. A managed container
    renamed by hand is not: it goes through the rules of one that left the spec."""
    logical = live.labels.get(NAME, "")
    if live.name not in (logical + NEW_SUFFIX, logical + OLD_SUFFIX):
        return False
    if logical in planner.desired.volume_containers:
        return live.labels.get(KIND) == Kind.VOLUME_CONTAINER
    return logical in planner.desired.containers and live.labels.get(KIND) == Kind.CONTAINER


def delete_orphan(planner: Planning, kind: Kind, live: LiveContainer) -> None:
    resource = kind.resource(live.name)
    logical = live.labels.get(NAME, live.name)
    left = (
        "it left the spec"
        if logical == live.name
        else f"it is not in the spec (dsr created it as {logical}; it was renamed since)"
    )
    if live.size_rw:
        planner.add(
            Change(
                resource=resource,
                action=Action.BLOCKED,
                reason=f"{left}, but {writable_layer(live.size_rw)}; remove it "
                f"yourself (docker rm {live.name}) once that data is safe",
                code=R.WRITABLE_LAYER_DATA,
                risk=Risk.DATA_LOSS,
                target_id=live.id,
            )
        )
        return
    planner.add(
        Change(
            resource=resource,
            action=Action.DELETE,
            reason=f"{left}; its volumes are kept"
            + ("" if live.size_rw is None else f" and {writable_layer(live.size_rw)}")
            + stopping(live),
            code=R.LEFT_SPEC,
            target_id=live.id,
            stop_timeout=stop_timeout(live),
        )
    )


def leftover(planner: Planning, name: str) -> LiveContainer | None:
    for suffix in (OLD_SUFFIX, NEW_SUFFIX):  # the old half holds the volumes in service
        live = planner.observed.containers.get(name + suffix)
        if live is not None and planner.my_container(live) and is_leftover(planner, live):
            return live
        if live is not None and renamed_by_adoption(planner, live):
            return live
    return None


def leftover_deletes(planner: Planning, name: str) -> list[Change]:
    return [
        c
        for c in planner.changes
        if c.code is R.LEFTOVER and c.name in (name + NEW_SUFFIX, name + OLD_SUFFIX)
    ]


def keep_leftovers_until(planner: Planning, change: Change, name: str) -> None:
    """The leftovers of an interrupted replace alone name the anonymous volumes that
    ``change`` carries over: delete them only after it succeeded (never while it is
    blocked), so that an apply killed in between loses no volume."""
    for old in leftover_deletes(planner, name):
        planner.remove(old)
        if change.action is Action.CREATE:
            planner.add(dataclasses.replace(old, depends_on=(change.resource,)))
        else:
            reason = f"kept while {change.resource} is blocked: it holds its volumes"
            code = R.DEPENDENCY_BLOCKED
            planner.add(dataclasses.replace(old, action=Action.BLOCKED, reason=reason, code=code))
