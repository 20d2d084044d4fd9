"""User-defined networks: created, adopted, remade and removed like the project's volumes.

A network holds no data, so removing one loses nothing but its attachments: a network of
the project that left the spec is deleted once no container that stays is attached to it
(``network-in-use`` blocks it until then). Docker cannot change a network in place, so one
whose driver, ``internal`` or labels changed is made again when nothing is attached to it,
and blocked while something is. An adopted network is recorded by its id, so one made
again under its name behind dsr's back is not the adopted one.
"""

from __future__ import annotations

from reconciler.kinds import Kind
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, NetworkParams, ReasonCode, Risk
from reconciler.plan.params import matches, network_params
from reconciler.snapshot import CONFIG_HASH, LiveNetwork
from reconciler.spec.models import Network

R = ReasonCode


def adopted(planning: Planning, live: LiveNetwork) -> bool:
    return not live.managed and planning.adopted_networks.get(live.name) == live.id


def mine(planning: Planning, live: LiveNetwork) -> bool:
    return planning.mine(live.labels) or adopted(planning, live)


def differences(live: LiveNetwork, spec: Network) -> str:
    out = []
    if live.driver != spec.driver:
        out.append(f"driver was {live.driver}, spec says {spec.driver}")
    if live.internal != spec.internal:
        out.append(f"internal was {str(live.internal).lower()}, spec says "
                   f"{str(spec.internal).lower()}")  # fmt: skip
    if any(live.labels.get(k) != v for k, v in spec.labels.items()):
        out.append("labels differ")
    return "; ".join(out)


def desired(planning: Planning) -> None:
    """A change for each network of the spec that is missing, not dsr's, or changed."""
    for name, spec in sorted(planning.desired.networks.items()):
        change = _network(planning, name, spec)
        if change is not None:
            planning.add(change)


def _network(planning: Planning, name: str, spec: Network) -> Change | None:
    resource = Kind.NETWORK.resource(name)
    params = network_params(planning.project, name, spec)
    live = planning.observed.networks.get(name)
    if live is None:
        return Change(resource, Action.CREATE, "it does not exist", R.MISSING, network=params)
    if not mine(planning, live):
        if live.managed:
            why = f"a network named {name} belongs to the dsr project {live.project!r}"
            return Change(resource, Action.BLOCKED, why, R.OTHER_PROJECT)
        if not spec.adopt:
            return Change(
                resource,
                Action.BLOCKED,
                f"a network named {name} exists and dsr does not manage it (no "
                "dsr.managed=true label); dsr never takes over what it did not create",
                R.UNMANAGED_CLASH,
            )
        what = differences(live, spec)
        if what:
            return _remake(planning, resource, live, params, f"it is not dsr's, and {what}")
        return Change(
            resource,
            Action.ADOPT,
            f"a network named {name} exists and dsr does not manage it; adopt is true, so "
            f"dsr takes it over as it is (recorded by its id, {live.id[:12]})",
            R.ADOPT,
            target_id=live.id,
            identity=live.id,
        )
    if adopted(planning, live):
        what = differences(live, spec)
    elif matches(live.labels.get(CONFIG_HASH), spec, now=params.labels[CONFIG_HASH]):
        what = ""
    else:
        what = differences(live, spec) or "its labels changed"
    return _remake(planning, resource, live, params, what) if what else None


def _remake(planning: Planning, resource: str, live: LiveNetwork, params: NetworkParams, what: str) -> Change:  # fmt: skip
    users = planning.observed.network_users(live.name)
    if users or not (planning.mine(live.labels) or adopted(planning, live)):
        held = f"{', '.join(users)} are attached to it" if users else "it is not dsr's"
        return Change(
            resource,
            Action.BLOCKED,
            f"{what}; Docker cannot change a network in place, and {held}",
            R.NETWORK_IN_USE,
        )
    return Change(
        resource,
        Action.REPLACE,
        f"{what}; Docker cannot change a network in place: it is removed and made again "
        "(nothing is attached to it)",
        R.CONFIG_CHANGED,
        target_id=live.id,
        network=params,
    )


def left(planning: Planning) -> None:
    """The project's networks that left the spec: deleted once nobody that stays uses them."""
    leaving = {
        live.name: change.resource
        for change in planning.changes
        if change.action is Action.DELETE
        for live in planning.observed.containers.values()
        if live.id == change.target_id
    }
    for name, live in sorted(planning.observed.networks.items()):
        if name in planning.desired.networks or not mine(planning, live):
            continue
        resource = Kind.NETWORK.resource(name)
        users = planning.observed.network_users(name)
        staying = [u for u in users if u not in leaving]
        if staying:
            planning.add(
                Change(
                    resource,
                    Action.BLOCKED,
                    f"it left the spec, but {', '.join(staying)} are still attached to it; "
                    "it is deleted once none is",
                    R.NETWORK_IN_USE,
                )
            )
            continue
        planning.add(
            Change(
                resource,
                Action.DELETE,
                "it left the spec (a network holds no data)",
                R.LEFT_SPEC,
                risk=Risk.NONE,
                depends_on=tuple(sorted(leaving[u] for u in users)),
                target_id=live.id,
            )
        )
