"""The executors that write the project record or a handoff statement: adoptions, and
what a moving volume's host states."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from reconciler.errors import ApplyError, PlanError
from reconciler.execute.core import Executors, Run, executes, log
from reconciler.kinds import Kind
from reconciler.observe import on_this_host, volume_identity
from reconciler.plan import payloads as p


@executes(p.AdoptVolume)
def adopt_volume(ex: Executors, run: Run, op: p.AdoptVolume) -> None:
    """Take over a volume as it is: Docker cannot relabel one, so it is recorded in the
    project's record with its identity (a volume made again under its name later has
    another one, and is not taken)."""
    live = ex.api.inspect_volume(op.name)
    identity = volume_identity(live, local=on_this_host(ex.engine))
    if not op.identity or identity != op.identity:
        raise ApplyError(
            f"the volume {op.name} is not the one planned for adoption (it is {identity}, "
            f"the plan saw {op.identity}); run dsr plan again"
        )
    record_adoption(ex, Kind.VOLUME, op.name, identity)


@executes(p.AdoptNetwork)
def adopt_network(ex: Executors, run: Run, op: p.AdoptNetwork) -> None:
    """Take over a network as it is, recorded by its id (Docker cannot relabel one)."""
    live = ex.api.inspect_network(op.target)
    record_adoption(ex, Kind.NETWORK, str(live["Name"]), str(live["Id"]))


def record_adoption(ex: Executors, kind: Kind, name: str, identity: str) -> None:
    state = ex.need_state("an adoption")
    key = kind.value
    state.update_record(
        ex.project, lambda r: r.with_adoptions(key, {**r.adoptions(key), name: identity})
    )
    log.info("adopted", kind=key, name=name, identity=identity)


@executes(p.RecordAdopting)
def record_adopting(ex: Executors, run: Run, op: p.RecordAdopting) -> None:
    state = ex.need_state("an adoption")
    state.update_record(ex.project, lambda r: r.with_adopting(op.name, op.container))


@executes(p.ForgetAdopting)
def forget_adopting(ex: Executors, run: Run, op: p.ForgetAdopting) -> None:
    if ex.state is None:
        return  # nothing was recorded
    ex.state.update_record(
        ex.project,
        lambda r: r.with_adopting(op.name, None) if r.adopting.get(op.name) == op.container else r,
    )


@executes(p.StateHandoff)
def state_handoff(ex: Executors, run: Run, op: p.StateHandoff) -> None:
    """Write this host's statement about a moving volume (``reconciler.handoff``)."""
    from reconciler import handoff

    snapshot = op.params.snapshot
    if op.with_backup:
        if run.backup is None:
            raise PlanError(f"the handoff of {op.volume} offers a backup it did not take")
        snapshot = os.path.basename(run.backup)
    statement = handoff.Statement(
        host=op.params.host,
        state=op.params.state,  # type: ignore[arg-type]
        placement=op.params.placement,
        snapshot=snapshot,
        source=op.params.source,
        time=datetime.now(UTC).isoformat(),
    )
    handoff.write_statement(op.params.destination, ex.project, op.volume, statement)
