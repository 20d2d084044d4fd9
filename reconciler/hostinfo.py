"""Which host an engine is, for ``hosts:`` selectors: its name and labels.

The name is ``--host`` when given, else the engine's own (``docker info``'s ``Name``, which
on a Swarm node is the node's hostname). The labels are the engine's (``dockerd --label``,
``docker info``'s ``Labels``) and, on a Swarm manager, the node's labels
(``docker node update --label-add``), which win on the same key. A worker cannot read its
node object; it has its engine labels only (say so in the inventory or use engine labels).
"""

from __future__ import annotations

from typing import Any

import docker.errors

from reconciler.engine import Engine, describe, timed_out
from reconciler.errors import EngineError
from reconciler.spec.hosts import Host, parse_labels


def engine_host(engine: Engine, name: str | None = None) -> Host:
    """The host ``engine`` is, named ``name`` when given (the engine is still asked for its
    labels). Asked once per connection: a daemon's passes reuse the answer."""
    cached: Host | None = getattr(engine, "_dsr_host", None)
    if cached is not None and (name is None or cached.name == name):
        return cached
    try:
        info: dict[str, Any] = engine.api.info()
    except (docker.errors.DockerException, OSError) as err:
        if timed_out(err):
            raise describe(err, engine.url, engine.timeout) from err
        raise EngineError(f"cannot ask the engine at {engine.url} who it is: {err}") from err
    labels = parse_labels(info.get("Labels"))
    labels.update(_node_labels(engine, info))
    host = Host(name=name or str(info.get("Name") or ""), labels=labels)
    if not host.name:
        raise EngineError(f"the engine at {engine.url} reports no name; pass --host NAME")
    engine._dsr_host = host  # type: ignore[attr-defined]
    return host


def _node_labels(engine: Engine, info: dict[str, Any]) -> dict[str, str]:
    swarm = info.get("Swarm") or {}
    node = swarm.get("NodeID")
    if not node or not swarm.get("ControlAvailable"):
        return {}
    try:
        spec = engine.api.inspect_node(node).get("Spec") or {}
    except (docker.errors.DockerException, OSError):
        return {}  # a manager that lost quorum: its engine labels still select it
    return parse_labels(spec.get("Labels"))
