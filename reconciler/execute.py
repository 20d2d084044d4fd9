"""The executors: one function per payload class of ``plan.payloads``, each one engine or
backup call, made exactly as the plan says.

``run_change`` runs a change's operations in order; when one fails, the operations its
planner gave as ``rollback`` run (best effort), and the change fails with the first error.
"Already so" counts as success (a volume or container already gone, a start of one that
runs), so an interrupted apply is finished by the next one. Nothing here chooses what to
do: what a change's operations are, and in which order, is the planner's (``plan.operations``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors

from reconciler import dockerargs, logs
from reconciler.engine import Engine
from reconciler.errors import ApplyError, PlanError
from reconciler.images import DOCKERFILE, write_build_context
from reconciler.kinds import Kind
from reconciler.labels import INSTANCE
from reconciler.observe import on_this_host, volume_identity
from reconciler.plan import payloads as p
from reconciler.plan.model import Change, EndpointParams, HealthParams, Operation
from reconciler.record import Migration
from reconciler.snapshot import new_instance
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.apply")
HEALTH_WAIT = 300  # seconds a dependent waits for its depends_on to become healthy


@dataclass
class Run:
    """What one change's earlier operations left for its later ones."""

    change: Change
    stopped: set[str] = field(default_factory=set)  # containers it stopped while they ran
    backup: str | None = None  # the folder of the snapshot it took
    skipped: list[str] = field(default_factory=list)  # what that snapshot left out
    quiet: Any = None  # the users' state when a migration's backup started
    original: str = ""  # the dsr.instance of the volume a migration backed up


@dataclass(frozen=True)
class Executors:
    """The engine, the project and the state directory the executors act on."""

    engine: Engine
    project: str
    state: StateDir | None = None

    @property
    def api(self) -> docker.APIClient:
        return self.engine.api

    def run_change(self, change: Change) -> None:
        """Every operation of ``change``, in order."""
        run = Run(change)
        for operation in change.operations:
            if operation.payload is None:
                raise PlanError(f"{change.resource}: the operation {operation} has no payload")
            try:
                _EXECUTORS[type(operation.payload)](self, run, operation.payload)
            except BaseException:
                self.roll_back(run, operation)
                raise

    def roll_back(self, run: Run, failed: Operation) -> None:
        for operation in failed.rollback:
            if operation.payload is None:
                continue
            try:
                _EXECUTORS[type(operation.payload)](self, run, operation.payload)
            except docker.errors.APIError as err:
                log.error("rollback_failed", operation=str(operation), error=str(err))

    def need_state(self, what: str) -> StateDir:
        if self.state is None:
            raise ApplyError(f"{what} needs dsr's state directory")
        return self.state


P = TypeVar("P")
Executor = Callable[[Executors, Run, Any], None]
_EXECUTORS: dict[type, Executor] = {}


def executes(kind: type[P]) -> Callable[[Callable[[Executors, Run, P], None]], Callable[[Executors, Run, P], None]]:  # fmt: skip
    """Register the executor of the payload class ``kind`` (one per class)."""

    def register(function: Callable[[Executors, Run, P], None]) -> Callable[[Executors, Run, P], None]:  # fmt: skip
        if kind in _EXECUTORS:
            raise TypeError(f"two executors of {kind.__name__}")
        _EXECUTORS[kind] = function
        return function

    return register


# -- volumes ----------------------------------------------------------------------------------
@executes(p.CreateVolume)
def create_volume(ex: Executors, run: Run, op: p.CreateVolume) -> None:
    if op.if_missing and volume_exists(ex, op.params.name):
        return
    ex.api.create_volume(
        name=op.params.name,
        driver=op.params.driver,
        driver_opts=dict(op.params.driver_opts),
        labels={**op.params.labels, INSTANCE: new_instance()},
    )


@executes(p.RemoveVolume)
def remove_volume(ex: Executors, run: Run, op: p.RemoveVolume) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_volume(op.name)  # refused by Docker while in use


def volume_exists(ex: Executors, name: str) -> bool:
    try:
        ex.api.inspect_volume(name)
    except docker.errors.NotFound:
        return False
    return True


@executes(p.BackUpVolume)
def back_up_volume(ex: Executors, run: Run, op: p.BackUpVolume) -> None:
    """A snapshot of the volume, read back and checked, before anything deletes it."""
    from reconciler.backup import engine_io, store
    from reconciler.backup.run import Options, backup_volume

    if op.if_present and not volume_exists(ex, op.volume):
        return  # already gone: done (its backup was taken before it went)
    if not op.destination:
        raise ApplyError(f"no backup destination for {op.volume}: run dsr apply with its spec")
    if op.migration:
        run.quiet = engine_io.quiet_users(ex.engine, op.volume)
        labels = ex.api.inspect_volume(op.volume).get("Labels") or {}
        run.original = labels.get(INSTANCE, "")
    key = ex.state.backup_key() if ex.state is not None else b""
    options = Options(policy="dsr-apply", key=key)
    manifest = backup_volume(ex.engine, ex.project, op.volume, op.destination, options)
    log.info("volume_backup", volume=op.volume, snapshot=manifest.id, size=manifest.size)
    run.backup = store.snapshot_folder(op.destination, ex.project, manifest.id)
    run.skipped = list(manifest.skipped)
    if op.migration:
        engine_io.still_quiet(ex.engine, op.volume, run.quiet)
        lost = engine_io.uncarried(ex.engine, op.volume, run.skipped)
        if lost:
            raise ApplyError(
                f"a migration of {op.volume} would lose {lost}; nothing was removed "
                "(on_change: recreate drops the data, or remove them first)"
            )


@executes(p.RecordMigration)
def record_migration(ex: Executors, run: Run, op: p.RecordMigration) -> None:
    if run.backup is None:
        raise PlanError(f"the migration of {op.volume} records a backup it did not take")
    migration = Migration(run.backup, run.original)
    state = ex.need_state("a volume migration")
    state.update_record(ex.project, lambda r: r.with_migration(op.volume, migration))


@executes(p.EndMigration)
def end_migration(ex: Executors, run: Run, op: p.EndMigration) -> None:
    state = ex.need_state("a volume migration")
    state.update_record(ex.project, lambda r: r.with_migration(op.volume, None))
    log.info("migration_restored", volume=op.volume)


@executes(p.RestoreVolume)
def restore_volume(ex: Executors, run: Run, op: p.RestoreVolume) -> None:
    """Make the volume hold exactly the snapshot, checked against its tree digest."""
    from reconciler.backup import restore as restoring
    from reconciler.backup import store
    from reconciler.backup.manifest import signature_problem

    folder = op.folder or run.backup
    if folder is None:
        raise PlanError(f"the restore of {op.volume} has no backup to restore")
    snapshot = store.load(folder, ex.project)
    if snapshot is None:
        raise ApplyError(
            f"the backup {folder} of {op.volume}'s migration is missing or incomplete; "
            f"restore it by hand (dsr restore) before anything else{op.hint}"
        )
    problem = ex.state and signature_problem(snapshot.manifest, ex.state.backup_key())
    if problem:
        raise ApplyError(f"the backup {folder} of {op.volume}'s migration: {problem}{op.hint}")
    # Never stop=True: a container running on it now was not planned for, and what it
    # wrote would be wiped; the restore refuses, naming it, and the record stays.
    try:
        restoring.restore_volume(ex.engine, snapshot, op.volume, stop=False)
    except RuntimeError as err:
        raise ApplyError(f"{err}{op.hint}") from err


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


# -- images -----------------------------------------------------------------------------------
@executes(p.ImportImage)
def import_image(ex: Executors, run: Run, op: p.ImportImage) -> None:
    repository, tag = op.params.tag.rsplit(":", 1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w"):
        pass  # an image with no files at all
    ex.api.import_image_from_data(
        buffer.getvalue(),
        repository=repository,
        tag=tag,
        changes=[f"LABEL {k}={v}" for k, v in sorted(op.params.labels.items())],
    )


@executes(p.BuildImage)
def build_image(ex: Executors, run: Run, op: p.BuildImage) -> None:
    params = op.params
    with tempfile.TemporaryFile() as context:  # on disk: contexts can be large
        digest = write_build_context(params.context, params.base, params.path, context)
        if not params.tag.endswith(f":{digest}"):
            raise ApplyError(
                f"the context {params.context} changed since the plan was made, so it no "
                f"longer makes {params.tag}; run dsr plan (or dsr apply PATH) again"
            )
        context.seek(0)
        output = ex.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=DOCKERFILE,
            tag=params.tag,
            labels=dict(params.labels),
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for line in output:
            if "error" in line:
                raise ApplyError(f"building {params.tag} failed: {line['error'].strip()}")


@executes(p.PullImage)
def pull_image(ex: Executors, run: Run, op: p.PullImage) -> None:
    repository, tag = dockerargs.split_reference(op.image)
    try:
        ex.api.pull(repository, tag=tag)
    except docker.errors.APIError as err:
        raise ApplyError(f"cannot pull image {op.image}: {err.explanation or err}") from err


@executes(p.RemoveImage)
def remove_image(ex: Executors, run: Run, op: p.RemoveImage) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_image(op.target)


# -- networks ---------------------------------------------------------------------------------
@executes(p.CreateNetwork)
def create_network(ex: Executors, run: Run, op: p.CreateNetwork) -> None:
    ex.api.create_network(
        op.params.name,
        driver=op.params.driver,
        internal=op.params.internal,
        labels=dict(op.params.labels),
        check_duplicate=True,
    )


@executes(p.RemoveNetwork)
def remove_network(ex: Executors, run: Run, op: p.RemoveNetwork) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_network(op.target)  # refused by Docker while in use


# -- containers -------------------------------------------------------------------------------
@executes(p.StartContainer)
def start_container(ex: Executors, run: Run, op: p.StartContainer) -> None:
    if op.if_stopped_here and op.target not in run.stopped:
        return
    ex.api.start(op.target)


@executes(p.UnpauseContainer)
def unpause_container(ex: Executors, run: Run, op: p.UnpauseContainer) -> None:
    ex.api.unpause(op.target)


@executes(p.StopContainer)
def stop_container(ex: Executors, run: Run, op: p.StopContainer) -> None:
    """Stop it as it was made to stop: its own signal, then SIGKILL after the timeout."""
    try:
        info = ex.api.inspect_container(op.target)
    except docker.errors.NotFound:
        return  # already gone is done
    state = info["State"]
    if not (state["Running"] or state["Paused"] or state["Restarting"]):
        return
    if state["Paused"]:  # a paused process cannot act on its stop signal
        ex.api.unpause(op.target)
    timeout = op.timeout
    if timeout is None:
        own = info["Config"].get("StopTimeout")
        timeout = own if isinstance(own, int) and own >= 0 else 10
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.stop(op.target, timeout=timeout)
    if state["Running"]:
        run.stopped.add(op.target)


@executes(p.RenameContainer)
def rename_container(ex: Executors, run: Run, op: p.RenameContainer) -> None:
    ex.api.rename(op.target, op.to)


@executes(p.RemoveContainer)
def remove_container(ex: Executors, run: Run, op: p.RemoveContainer) -> None:
    # Never forced but for a container this change made: a container dsr removes has
    # been stopped first. v=False: volumes outlive their containers.
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_container(op.target, v=False, force=op.force)


@executes(p.UpdateContainer)
def update_container(ex: Executors, run: Run, op: p.UpdateContainer) -> None:
    """``docker update`` in place (no new container, no restart)."""
    policy = dockerargs.restart(op.restart) or {"Name": "no"}
    # The stubs know only always and on-failure; the engine takes every name.
    ex.api.update_container(op.target, restart_policy=policy)  # type: ignore[arg-type]


@executes(p.CreateContainer)
def create_container(ex: Executors, run: Run, op: p.CreateContainer) -> None:
    params = op.params
    wait_healthy(ex, params.wait_healthy)
    for path in params.make_dirs:
        os.makedirs(path, exist_ok=True)
    exposed, bindings = dockerargs.ports(params.ports)
    # The engine takes one network at creation (API < 1.44); the others are joined
    # before the container starts.
    first, others = (params.networks[0], params.networks[1:]) if params.networks else (None, ())
    host_config = ex.api.create_host_config(
        mounts=[dockerargs.mount(m) for m in params.mounts if not m.selinux],
        binds=[dockerargs.bind(m) for m in params.mounts if m.selinux] or None,
        volumes_from=list(params.volumes_from) or None,
        port_bindings=bindings or None,
        restart_policy=dockerargs.restart(params.restart),
        network_mode="none"
        if params.network_disabled
        else (first.network if first is not None else None),
        init=params.init or None,
        mem_limit=params.memory,
        nano_cpus=params.nano_cpus,
        shm_size=params.shm_size,
    )
    created = ex.api.create_container(
        image=params.image,
        name=op.name,
        command=list(params.command) if params.command is not None else None,
        entrypoint=list(params.entrypoint) if params.entrypoint is not None else None,
        environment=list(params.env) or None,
        ports=exposed or None,
        labels=dict(params.labels),
        working_dir=params.working_dir,
        user=params.user,
        host_config=host_config,
        network_disabled=params.network_disabled,
        stop_signal=params.stop_signal or None,
        stop_timeout=params.stop_timeout,
        networking_config=endpoints(ex, first),
        healthcheck=_health(params.healthcheck),
    )
    for endpoint in others:
        ex.api.connect_container_to_network(
            str(created["Id"]), endpoint.network, aliases=list(endpoint.aliases) or None
        )


def wait_healthy(ex: Executors, names: tuple[str, ...]) -> None:
    """Wait until each of ``names`` reports healthy (depends_on: service_healthy), as
    compose does before it starts a dependent; bounded by HEALTH_WAIT seconds."""
    deadline = time.monotonic() + HEALTH_WAIT
    for name in names:
        while True:
            state = ex.api.inspect_container(name)["State"]
            health = (state.get("Health") or {}).get("Status")
            if health is None:
                raise ApplyError(f"{name} has no health check, so it is never healthy")
            if health == "healthy":
                break
            if not state.get("Running") or time.monotonic() > deadline:
                raise ApplyError(
                    f"{name} is {health if state.get('Running') else 'not running'}: not "
                    f"healthy within {HEALTH_WAIT} s, so its dependents are not started"
                )
            time.sleep(0.5)


def endpoints(ex: Executors, first: EndpointParams | None) -> dict[str, Any] | None:
    if first is None:
        return None
    endpoint = ex.api.create_endpoint_config(aliases=list(first.aliases) or None)
    config: dict[str, Any] = ex.api.create_networking_config(
        {first.network: endpoint}  # type: ignore[arg-type]  # the stub says one; it is a map
    )
    return config


def _health(params: HealthParams | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {
        "test": list(params.test),
        "interval": params.interval,
        "timeout": params.timeout,
        "retries": params.retries,
        "start_period": params.start_period,
    }
