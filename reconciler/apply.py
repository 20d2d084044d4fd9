"""The applier: runs a plan's changes against the engine, deciding nothing.

Changes run as soon as what they depend on has succeeded, several at a time; a failed
change is reported, the changes that depend on it are skipped, independent ones go on.
"Already so" counts as success, so an interrupted apply is finished by the next one.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import docker.errors
import docker.types

from reconciler import dockerargs, logs
from reconciler.engine import Engine, timed_out
from reconciler.errors import ApplyError, PlanError
from reconciler.images import DOCKERFILE, write_build_context
from reconciler.kinds import Kind
from reconciler.observe import on_this_host, volume_identity
from reconciler.plan.model import (
    Action,
    Change,
    ContainerParams,
    EndpointParams,
    HandoffParams,
    HealthParams,
    ImageParams,
    Op,
    Plan,
    Status,
    VolumeParams,
)
from reconciler.record import Migration
from reconciler.snapshot import INSTANCE, new_instance
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.apply")
HEALTH_WAIT = 300  # seconds a dependent waits for its depends_on to become healthy


@dataclass(frozen=True)
class Outcome:
    """How one change went."""

    change: Change
    status: Status
    seconds: float = 0.0
    error: str = ""


Progress = Callable[[Outcome, int, int], None]


@dataclass(frozen=True)
class TerminalProgress:
    """A progress callback that tells a person each finished change. The change's own
    event would say it a second time, so it is logged at debug level; any other callback
    (the daemon's watchdog) leaves the events as they are."""

    show: Progress

    def __call__(self, outcome: Outcome, done: int, total: int) -> None:
        self.show(outcome, done, total)


def apply_plan(
    engine: Engine,
    plan: Plan,
    *,
    workers: int = 4,
    progress: Progress | None = None,
    pass_id: str | None = None,
    state: StateDir | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """Run every actionable change of ``plan``; return how each went, in plan order.

    No change is started once a call has timed out (the engine is not answering) or
    ``should_stop()`` is true (the daemon stopping, or its pass deadline passed): those
    running finish, the rest are skipped for the next pass. ``state`` is where a volume
    migration records its backup.
    """
    changes = list(plan.actionable)
    by_resource = {c.resource: c for c in changes}
    outcomes: dict[str, Outcome] = {}
    pending = list(changes)
    running: dict[Future[None], Change] = {}
    executor = _Executor(engine, plan.project, state)
    pass_id = pass_id or uuid.uuid4().hex[:12]
    stalled = ""  # set once a call timed out: the engine is not answering, start nothing
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            stop = stalled
            if pending and not stop and should_stop is not None and should_stop():
                stop = "stopped before it started"
            if pending and stop:
                for change in pending:
                    outcome = Outcome(change, Status.SKIPPED, error=stop)
                    _record(outcomes, outcome, pass_id, len(changes), progress)
                pending.clear()
            for change in list(pending):
                if len(running) >= workers:
                    # Submit no more than run at once: every wait() below walks all the
                    # futures given it, and 1,000 queued ones made an apply quadratic.
                    break
                deps = [d for d in change.depends_on if d in by_resource]
                failed = [d for d in deps if d in outcomes and outcomes[d].status is not Status.OK]
                if failed:
                    pending.remove(change)
                    outcome = Outcome(
                        change, Status.SKIPPED, error=f"{', '.join(failed)} did not succeed"
                    )
                    _record(outcomes, outcome, pass_id, len(changes), progress)
                elif all(d in outcomes for d in deps):
                    pending.remove(change)
                    running[pool.submit(executor.run, change)] = change
            if not running:
                for change in pending:  # only a dependency cycle can leave these waiting
                    _record(
                        outcomes,
                        Outcome(change, Status.SKIPPED, error="dependency cycle"),
                        pass_id,
                        len(changes),
                        progress,
                    )
                pending.clear()
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                change = running.pop(future)
                error = future.exception()
                if error is not None and timed_out(error) and not stalled:
                    stalled = (
                        f"not started: {change.resource} got no answer from the engine within "
                        f"{engine.timeout:g} s (--engine-timeout)"
                    )
                outcome = Outcome(
                    change,
                    Status.FAILED if error else Status.OK,
                    seconds=executor.seconds.get(change.resource, 0.0),
                    error=_message(error) if error else "",
                )
                _record(outcomes, outcome, pass_id, len(changes), progress)
    return [outcomes[c.resource] for c in changes]


def _record(
    outcomes: dict[str, Outcome],
    outcome: Outcome,
    pass_id: str,
    total: int,
    progress: Progress | None,
) -> None:
    outcomes[outcome.change.resource] = outcome
    if isinstance(progress, TerminalProgress):
        event = log.debug
    else:
        event = log.info if outcome.status is Status.OK else log.error
    event(
        "change",
        pass_id=pass_id,
        resource=outcome.change.resource,
        action=outcome.change.action.value,
        outcome=outcome.status.value,
        duration_ms=round(outcome.seconds * 1000),
        **({"error": outcome.error} if outcome.error else {}),
    )
    if progress is not None:
        progress(outcome, len(outcomes), total)


def _message(error: BaseException) -> str:
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error)
    if timed_out(error):
        return "the engine did not answer in time (--engine-timeout)"
    return str(error) or type(error).__name__


class _Executor:
    """One Docker call (or a short fixed sequence) per action kind."""

    def __init__(self, engine: Engine, project: str, state: StateDir | None = None) -> None:
        self.engine = engine
        self.project = project
        self.state = state
        self.api = engine.api
        self.seconds: dict[str, float] = {}

    def run(self, change: Change) -> None:
        started = time.monotonic()
        try:
            handler = _HANDLERS[(change.kind, change.action)]
            handler(self, change)
        finally:
            self.seconds[change.resource] = time.monotonic() - started

    # -- volumes and images ---------------------------------------------------------------
    def create_volume(self, change: Change) -> None:
        params = change.volume
        assert params is not None
        if change.restore_from is not None:  # the end of a migration, or a handoff
            if not self.volume_exists(params.name):
                self.make_volume(params)
            try:
                self.restore(change.restore_from, params.name)
            except ApplyError as err:
                if change.handoff is None:
                    raise
                raise ApplyError(
                    f"{err} (hosts that hand volumes over share one backup-key: "
                    "DSR_BACKUP_KEY_FILE)"
                ) from err
            if change.handoff is not None:  # restored and verified: the old host may let go
                self.state_handoff(change, change.handoff)
            return
        self.make_volume(params)

    def make_volume(self, params: VolumeParams) -> None:
        self.api.create_volume(
            name=params.name,
            driver=params.driver,
            driver_opts=dict(params.driver_opts),
            labels={**params.labels, INSTANCE: new_instance()},
        )

    def adopt_volume(self, change: Change) -> None:
        """Take over a volume as it is: Docker cannot relabel one, so it is recorded in the
        project's record with its identity (a volume made again under its name later has
        another one, and is not taken)."""
        name = change.target_id
        assert name is not None
        live = self.api.inspect_volume(name)
        identity = volume_identity(live, local=on_this_host(self.engine))
        if not change.identity or identity != change.identity:
            raise ApplyError(
                f"the volume {name} is not the one planned for adoption (it is {identity}, "
                f"the plan saw {change.identity}); run dsr plan again"
            )
        self.record_adoption(Kind.VOLUME, name, identity)

    # -- networks ---------------------------------------------------------------------------
    def create_network(self, change: Change) -> None:
        params = change.network
        assert params is not None
        self.api.create_network(
            params.name,
            driver=params.driver,
            internal=params.internal,
            labels=dict(params.labels),
            check_duplicate=True,
        )

    def replace_network(self, change: Change) -> None:
        assert change.target_id is not None
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_network(change.target_id)  # refused by Docker while in use
        self.create_network(change)

    def delete_network(self, change: Change) -> None:
        assert change.target_id is not None
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_network(change.target_id)

    def adopt_network(self, change: Change) -> None:
        """Take over a network as it is, recorded by its id (Docker cannot relabel one)."""
        assert change.target_id is not None
        live = self.api.inspect_network(change.target_id)
        self.record_adoption(Kind.NETWORK, str(live["Name"]), str(live["Id"]))

    def record_adoption(self, kind: Kind, name: str, identity: str) -> None:
        if self.state is None:
            raise ApplyError("an adoption needs dsr's state directory to record it")
        self.state.update_record(
            self.project,
            lambda r: r.with_adoptions(kind.value, {**r.adoptions(kind.value), name: identity}),
        )
        log.info("adopted", kind=kind.value, name=name, identity=identity)

    def update_volume(self, change: Change) -> None:
        """Refill a volume from the backup of its interrupted migration; or, for a volume
        that moved to another host, back it up and offer that snapshot (``handoff``)."""
        assert change.target_id is not None
        if change.handoff is not None and change.backup_to is not None:
            folder, _ = self.back_up(change.target_id, change.backup_to)
            snapshot = os.path.basename(folder)
            self.state_handoff(change, replace(change.handoff, snapshot=snapshot))
            return
        assert change.restore_from is not None
        self.restore(change.restore_from, change.target_id)

    def state_handoff(self, change: Change, params: HandoffParams) -> None:
        """Write this host's statement about a moving volume (``reconciler.handoff``)."""
        from reconciler import handoff

        statement = handoff.Statement(
            host=params.host,
            state=params.state,  # type: ignore[arg-type]
            placement=params.placement,
            snapshot=params.snapshot,
            source=params.source,
            time=datetime.now(UTC).isoformat(),
        )
        handoff.write_statement(params.destination, self.project, change.name, statement)

    def replace_volume(self, change: Change) -> None:
        """Recreate (or migrate) a volume: Docker cannot change one in place. A migration
        stops the volume's users first (nothing writes after the backup), then records its
        verified backup before it removes anything, so that a migration cut short anywhere
        is finished by the next pass from that backup (``restore_from``: the end of one)."""
        from reconciler.backup import engine_io

        params, name = change.volume, change.target_id
        assert params is not None and name is not None
        running = []
        for container in change.removes:  # stopped as made to stop, never forced
            with contextlib.suppress(docker.errors.NotFound):
                if self.stop(container, self.stop_timeout_of(container)):
                    running.append(container)
        folder = change.restore_from
        if change.backup_to is not None:
            try:
                quiet = engine_io.quiet_users(self.engine, name)
                original = (self.api.inspect_volume(name).get("Labels") or {}).get(INSTANCE, "")
                folder, skipped = self.back_up(name, change.backup_to)
                engine_io.still_quiet(self.engine, name, quiet)
                lost = engine_io.uncarried(self.engine, name, skipped)
                if lost:
                    raise ApplyError(
                        f"a migration of {name} would lose {lost}; nothing was removed "
                        "(on_change: recreate drops the data, or remove them first)"
                    )
            except BaseException:
                self.start_again(running)  # nothing was removed: back as they were
                raise
            self.set_migration(name, Migration(folder, original))
        for container in change.removes:
            with contextlib.suppress(docker.errors.NotFound):
                self.remove(container)
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_volume(name)
        self.make_volume(params)
        if folder is not None:
            self.restore(folder, name)

    def start_again(self, containers: list[str]) -> None:
        for container in containers:
            with contextlib.suppress(docker.errors.APIError):
                self.api.start(container)

    def restore(self, folder: str, volume: str) -> None:
        """Make ``volume`` hold exactly the snapshot in ``folder``, checked against its
        tree digest; then the migration that took it is over."""
        from reconciler.backup import restore as restoring
        from reconciler.backup import store
        from reconciler.backup.manifest import signature_problem

        snapshot = store.load(folder, self.project)
        if snapshot is None:
            raise ApplyError(
                f"the backup {folder} of {volume}'s migration is missing or incomplete; "
                "restore it by hand (dsr restore) before anything else"
            )
        problem = self.state and signature_problem(snapshot.manifest, self.state.backup_key())
        if problem:
            raise ApplyError(f"the backup {folder} of {volume}'s migration: {problem}")
        # Never stop=True: a container running on it now was not planned for, and what it
        # wrote would be wiped; the restore refuses, naming it, and the record stays.
        restoring.restore_volume(self.engine, snapshot, volume, stop=False)
        self.set_migration(volume, None)
        log.info("migration_restored", volume=volume, snapshot=snapshot.id)

    def set_migration(self, volume: str, migration: Migration | None) -> None:
        if self.state is None:
            raise ApplyError("a volume migration needs dsr's state directory")
        self.state.update_record(self.project, lambda r: r.with_migration(volume, migration))

    def stop_timeout_of(self, container: str) -> int:
        timeout = self.api.inspect_container(container)["Config"].get("StopTimeout")
        return timeout if isinstance(timeout, int) and timeout >= 0 else 10

    def build_image(self, change: Change) -> None:
        params = change.image
        assert params is not None
        if params.context:
            self.build_packed_image(params)
            return
        repository, tag = params.tag.rsplit(":", 1)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w"):
            pass  # an image with no files at all
        self.api.import_image_from_data(
            buffer.getvalue(),
            repository=repository,
            tag=tag,
            changes=[f"LABEL {k}={v}" for k, v in sorted(params.labels.items())],
        )

    def build_packed_image(self, params: ImageParams) -> None:
        with tempfile.TemporaryFile() as context:  # on disk: contexts can be large
            digest = write_build_context(params.context, params.base, params.path, context)
            if not params.tag.endswith(f":{digest}"):
                raise ApplyError(
                    f"the context {params.context} changed since the plan was made, so it no "
                    f"longer makes {params.tag}; run dsr plan (or dsr apply PATH) again"
                )
            context.seek(0)
            output = self.api.build(
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

    def delete_image(self, change: Change) -> None:
        assert change.target_id is not None
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_image(change.target_id)

    def delete_volume(self, change: Change) -> None:
        assert change.target_id is not None
        if change.backup_to is not None:
            if not self.volume_exists(change.target_id):
                return  # already gone: done (its backup was taken before it went)
            self.back_up(change.target_id, change.backup_to)
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_volume(change.target_id)  # refused by Docker while in use

    def volume_exists(self, name: str) -> bool:
        try:
            self.api.inspect_volume(name)
        except docker.errors.NotFound:
            return False
        return True

    def back_up(self, volume: str, destination: str) -> tuple[str, list[str]]:
        """A snapshot of ``volume``, read back and checked, before anything deletes it;
        returns its folder and what it left out (``skipped``)."""
        from reconciler.backup import store
        from reconciler.backup.run import Options, backup_volume

        if not destination:
            raise ApplyError(f"no backup destination for {volume}: run dsr apply with its spec")
        key = self.state.backup_key() if self.state is not None else b""
        manifest = backup_volume(
            self.engine, self.project, volume, destination, Options(policy="dsr-apply", key=key)
        )
        log.info("volume_backup", volume=volume, snapshot=manifest.id, size=manifest.size)
        folder = store.snapshot_folder(destination, self.project, manifest.id)
        return folder, list(manifest.skipped)

    # -- containers -------------------------------------------------------------------------
    def create_container(self, change: Change) -> None:
        params = change.container
        assert params is not None
        new_id = self.create(params, params.name)
        if params.start:
            self.api.start(new_id)

    def start_container(self, change: Change) -> None:
        """Make it run: a paused container is unpaused (starting it would fail)."""
        assert change.target_id is not None
        if self.api.inspect_container(change.target_id)["State"]["Paused"]:
            self.api.unpause(change.target_id)
        else:
            self.api.start(change.target_id)

    def update_container(self, change: Change) -> None:
        """``docker update`` in place (no new container, no restart), as the plan lists."""
        params, target = change.container, change.target_id
        if params is None or target is None:
            raise PlanError(f"{change.resource}: an update without its container or target")
        for operation in change.operations:
            if operation.op is Op.UPDATE_CONTAINER:
                policy = dockerargs.restart(params.restart) or {"Name": "no"}
                # The stubs know only always and on-failure; the engine takes every name.
                self.api.update_container(target, restart_policy=policy)  # type: ignore[arg-type]
            elif operation.op is Op.START_CONTAINER:
                self.api.start(target)

    def delete_container(self, change: Change) -> None:
        assert change.target_id is not None
        with contextlib.suppress(docker.errors.NotFound):  # already gone is done
            self.stop(change.target_id, change.stop_timeout)
            self.remove(change.target_id)

    def stop(self, container: str, timeout: int) -> bool:
        """Stop ``container`` as it was made to stop: its own signal, then SIGKILL after
        ``timeout`` seconds. True when it was running."""
        state = self.api.inspect_container(container)["State"]
        if not (state["Running"] or state["Paused"] or state["Restarting"]):
            return False
        if state["Paused"]:  # a paused process cannot act on its stop signal
            self.api.unpause(container)
        self.api.stop(container, timeout=timeout)
        return bool(state["Running"])

    def remove(self, container: str) -> None:
        # Never force: a container dsr removes has been stopped first. v=False: volumes
        # outlive their containers; anonymous ones stay as data.
        self.api.remove_container(container, v=False, force=False)

    def replace_container(self, change: Change) -> None:
        """Create the new one beside the old; swap names; start; only then drop the old."""
        params = change.container
        old = change.target_id
        assert params is not None and old is not None
        new_id = self.create(params, params.name + NEW_SUFFIX)
        was_running = self.stop(old, change.stop_timeout)
        self.api.rename(old, params.name + OLD_SUFFIX)
        self.api.rename(new_id, params.name)
        if params.start:
            try:
                self.api.start(new_id)
            except docker.errors.APIError:
                self.api.remove_container(new_id, v=False, force=True)
                self.api.rename(old, params.name)
                if was_running:
                    self.api.start(old)
                raise
        self.remove(old)

    def wait_healthy(self, names: tuple[str, ...]) -> None:
        """Wait until each of ``names`` reports healthy (depends_on: service_healthy), as
        compose does before it starts a dependent; bounded by HEALTH_WAIT seconds."""
        deadline = time.monotonic() + HEALTH_WAIT
        for name in names:
            while True:
                state = self.api.inspect_container(name)["State"]
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

    def create(self, params: ContainerParams, name: str) -> str:
        self.wait_healthy(params.wait_healthy)
        for path in params.make_dirs:
            os.makedirs(path, exist_ok=True)
        if params.pull:
            self.pull(params.image)
        exposed, bindings = dockerargs.ports(params.ports)
        # The engine takes one network at creation (API < 1.44); the others are joined
        # before the container starts.
        first, *others = params.networks or (None,)
        host_config = self.api.create_host_config(
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
        created = self.api.create_container(
            image=params.image,
            name=name,
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
            networking_config=self.endpoints(first),
            healthcheck=_health(params.healthcheck),
        )
        new_id = str(created["Id"])
        for endpoint in others:
            assert endpoint is not None
            self.api.connect_container_to_network(
                new_id, endpoint.network, aliases=list(endpoint.aliases) or None
            )
        return new_id

    def endpoints(self, first: EndpointParams | None) -> dict[str, Any] | None:
        if first is None:
            return None
        endpoint = self.api.create_endpoint_config(aliases=list(first.aliases) or None)
        config: dict[str, Any] = self.api.create_networking_config(
            {first.network: endpoint}  # type: ignore[arg-type]  # the stub says one; it is a map
        )
        return config

    def pull(self, image: str) -> None:
        repository, tag = dockerargs.split_reference(image)
        try:
            self.api.pull(repository, tag=tag)
        except docker.errors.APIError as err:
            raise ApplyError(f"cannot pull image {image}: {_message(err)}") from err


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


_HANDLERS: dict[tuple[Kind, Action], Callable[[_Executor, Change], None]] = {
    (Kind.VOLUME, Action.CREATE): _Executor.create_volume,
    (Kind.VOLUME, Action.UPDATE): _Executor.update_volume,
    (Kind.VOLUME, Action.REPLACE): _Executor.replace_volume,
    (Kind.VOLUME, Action.ADOPT): _Executor.adopt_volume,
    (Kind.NETWORK, Action.CREATE): _Executor.create_network,
    (Kind.NETWORK, Action.REPLACE): _Executor.replace_network,
    (Kind.NETWORK, Action.DELETE): _Executor.delete_network,
    (Kind.NETWORK, Action.ADOPT): _Executor.adopt_network,
    # A container is adopted by replacing it with dsr's own (the plan carried its mounts).
    (Kind.CONTAINER, Action.ADOPT): _Executor.replace_container,
    (Kind.VOLUME_CONTAINER, Action.ADOPT): _Executor.replace_container,
    (Kind.IMAGE, Action.BUILD): _Executor.build_image,
    (Kind.IMAGE, Action.DELETE): _Executor.delete_image,
    (Kind.VOLUME, Action.DELETE): _Executor.delete_volume,
    (Kind.CONTAINER, Action.CREATE): _Executor.create_container,
    (Kind.VOLUME_CONTAINER, Action.CREATE): _Executor.create_container,
    (Kind.CONTAINER, Action.REPLACE): _Executor.replace_container,
    (Kind.VOLUME_CONTAINER, Action.REPLACE): _Executor.replace_container,
    (Kind.CONTAINER, Action.START): _Executor.start_container,
    (Kind.CONTAINER, Action.UPDATE): _Executor.update_container,
    (Kind.VOLUME_CONTAINER, Action.START): _Executor.start_container,
    (Kind.CONTAINER, Action.DELETE): _Executor.delete_container,
    (Kind.VOLUME_CONTAINER, Action.DELETE): _Executor.delete_container,
}
