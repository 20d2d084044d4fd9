"""One reconcile pass for every caller: load, hash, observe, plan and (when asked) apply.

``run_pass`` is what ``dsr plan``, ``dsr apply``, the daemon and the engine tests call. It
returns a ``PassResult`` (the plan, each change's outcome, the Engine API calls made,
seconds per stage, the error that stopped it) and never exits the process; only the CLI
turns a result into an exit code.

A pass that changes the engine holds the lock of its engine and project for everything
after loading the spec: a second writer waits for it and then observes afresh, so two
``dsr apply`` started together converge once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler import lastpass, logs
from reconciler.engine import Engine
from reconciler.errors import DsrError, PlanError, SpecError, SpecIssue
from reconciler.files import parse_json, write_json
from reconciler.handoff import Statement
from reconciler.hostinfo import engine_host
from reconciler.images import ContextError, PackedImage, pack
from reconciler.kinds import Kind
from reconciler.observe import compare_packed, measure_writable_layers, observe
from reconciler.plan import Action, Plan, adopt, plan
from reconciler.plan import packed as packed_plan
from reconciler.plan.model import Status
from reconciler.plan.params import volume_params
from reconciler.record import Migration, ProjectRecord, VolumeRecord
from reconciler.request import Request
from reconciler.saved import (
    Adoptions,
    SavedPlan,
    check_fresh,
    check_saved,
    measured_targets,
    names_of,
    read_saved_plan,
)
from reconciler.snapshot import CONFIG_HASH, KIND, Observed
from reconciler.spec import Desired, load_checked, load_policy
from reconciler.spec.share import share
from reconciler.statedir import StateDir, locked

if TYPE_CHECKING:
    # Imported where a pass applies: a plan (``dsr plan``, the daemon's dry passes)
    # never loads the applier, its executors or the backup package.
    from reconciler.apply import Outcome, Progress

log = logs.get_logger("dsr.pass")

STAGES = ("load", "hash", "lock", "observe", "plan", "apply")


@dataclass
class PassResult:
    """How a pass went. ``error`` is what stopped it early (the plan may still be there)."""

    plan: Plan | None = None
    desired: Desired | None = None
    outcomes: tuple[Outcome, ...] = ()
    calls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    error: DsrError | None = None
    saved: bool = False  # the plan came from a saved plan file
    applied: bool = False  # the applier ran (before_apply did not veto it)
    pass_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    engine: Engine | None = field(default=None, repr=False)
    observed: Observed | None = field(default=None, repr=False)  # what the plan was made from

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is not Status.OK)

    @property
    def converged(self) -> bool:
        """Nothing stopped the pass, nothing failed, nothing is blocked or left to do."""
        if self.error is not None or self.plan is None or self.plan.errors or self.failed:
            return False
        blocked = len(self.plan.changes) - len(self.plan.actionable)
        return blocked == 0 and (not self.plan.changes or bool(self.outcomes))


class _Timer:
    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def run_pass(
    request: Request,
    *,
    engine: Engine | None = None,
    desired: Desired | None = None,
    progress: Progress | None = None,
    before_apply: Callable[[Plan], bool | Plan] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PassResult:
    """Run one whole pass; see the module docstring. Never raises a ``DsrError``.

    ``engine`` reuses a connection (the daemon's); ``desired`` skips loading (the daemon's
    last good spec); ``before_apply`` sees the plan first and may veto the apply (False)
    or narrow it (a Plan holding fewer changes: the daemon defers those backing off);
    ``should_stop`` is handed to the applier, which starts no change once it is true.
    """
    result = PassResult()
    timer = _Timer(result.seconds)
    own_engine = engine is None
    started = time.perf_counter()
    try:
        _run(request, result, timer, engine, desired, progress, before_apply, should_stop)
    except DsrError as err:
        result.error = err
    finally:
        if own_engine and result.engine is not None:
            result.engine.close()
    _log_pass(request, result, time.perf_counter() - started)
    if request.apply and request.record_pass and request.state_dir:
        project = result.plan.project if result.plan else ""
        project = project or (result.desired.project if result.desired else "")
        record = lastpass.of(result, lastpass.label(result), by="dsr apply")
        lastpass.write(StateDir(request.state_dir), project, record)
    return result


def _log_pass(request: Request, result: PassResult, seconds: float) -> None:
    """One event per pass: what it was asked, what it found and did, and how long it took."""
    summary = result.plan.summary() if result.plan else {}
    # A pass that only plans, or stopped at an invalid spec (which touched nothing), is its
    # caller's to report; one that may change the engine is logged.
    quiet = not request.apply or isinstance(result.error, SpecError)
    level = logging.DEBUG if quiet else logging.ERROR if result.error else logging.INFO
    log.log(
        level,
        "pass",
        pass_id=result.pass_id,
        apply=request.apply,
        # A pass whose apply was vetoed (a suspended daemon) changed nothing: not "applied".
        applied=result.applied,
        project=result.plan.project if result.plan else None,
        changes={k: v for k, v in summary.items() if v},
        failed=len(result.failed),
        calls=result.calls,
        duration_ms=round(seconds * 1000),
        stages_ms={k: round(v * 1000, 1) for k, v in result.seconds.items()},
        **({"error": str(result.error)} if result.error else {}),
    )


def _run(
    request: Request,
    result: PassResult,
    timer: _Timer,
    engine: Engine | None,
    desired: Desired | None,
    progress: Progress | None,
    before_apply: Callable[[Plan], bool | Plan] | None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    state = StateDir(request.state_dir) if request.state_dir else None
    saved = None
    with timer.stage("load"):
        if request.apply and request.accept_saved_plan and desired is None and state:
            saved = read_saved_plan(request.path, state.plan_key())
        if saved is None and desired is None:
            desired = load(request)
    result.desired = desired
    project = saved.plan.project if saved else desired.project if desired else ""
    if saved and request.project and request.project != project:
        raise PlanError(
            f"{request.path} is a plan of the project {project!r}, but --project says "
            f"{request.project!r}"
        )
    if engine is None:
        engine = Engine(request.docker_host, timeout=request.engine_timeout)
    result.engine = engine
    calls_before = engine.calls
    try:
        if desired is not None:
            desired = result.desired = host_share(desired, engine, request.host)
        with ExitStack() as held:
            if request.apply and state is not None:
                with timer.stage("lock"):
                    held.enter_context(
                        locked(state, engine.url, project, timeout=request.lock_timeout)
                    )
                    # A quiesced backup or restore --stop killed meanwhile stopped these.
                    from reconciler.backup.journal import Journal, finish

                    journal = Journal(state, project)
                    if journal.stopped():
                        finish(engine, journal)
            if saved is not None:
                result.saved = True
                record = state.load_record(project) if state is not None else None
                result.observed = check_saved_plan(request, engine, saved, timer, record)
                result.plan = saved.plan
            else:
                assert desired is not None
                with timer.stage("hash"):
                    packed = pack_images(desired, state)
                result.plan, result.observed = compute_plan(engine, desired, packed, state, timer)
                if request.apply and state is not None:
                    record_reclaim(state, desired, result.observed)
                    record_held(desired, result.observed)
            if not request.apply or not result.plan.actionable:
                return
            to_apply = result.plan
            if request.refuse_empty and deletes_everything(to_apply, desired):
                raise PlanError(
                    "the spec declares nothing, so this apply would delete every managed "
                    f"object of the project {project}; nothing was changed (--allow-empty "
                    "lets it)"
                )
            if before_apply is not None:
                verdict = before_apply(result.plan)
                if verdict is False:
                    return
                if isinstance(verdict, Plan):
                    to_apply = verdict
            result.applied = True
            from reconciler.apply import apply_plan

            with timer.stage("apply"):
                outcomes = apply_plan(
                    engine,
                    to_apply,
                    workers=request.workers,
                    progress=progress,
                    pass_id=result.pass_id,
                    state=state,
                    should_stop=should_stop,
                )
            result.outcomes = tuple(outcomes)
            if desired is not None and desired.host is not None:
                made = {
                    o.change.name
                    for o in outcomes
                    if o.status is Status.OK and o.change.kind is Kind.VOLUME and o.change.volume
                }
                record_held(desired, result.observed, made)
    finally:
        result.calls = engine.calls - calls_before


def deletes_everything(plan: Plan, desired: Desired | None) -> bool:
    """The spec declares nothing and the plan deletes what the project has. A host's share
    that is empty while the spec places resources elsewhere declares nothing here on
    purpose: that is the spec speaking, not a half-done checkout."""
    if desired is None or names_of(desired) or desired.images or desired.elsewhere:
        return False
    return any(c.action is Action.DELETE for c in plan.actionable)


def check_saved_plan(
    request: Request,
    engine: Engine,
    saved: SavedPlan,
    timer: _Timer,
    record: ProjectRecord | None = None,
) -> Observed:
    """A saved plan passes the checks a spec does, and nothing it depends on moved; what
    the project adopted is its own by ``record`` (Docker cannot label it)."""
    policy = load_policy(
        request.policy_file,
        (request.path,),
        docker_host=request.docker_host,
        state_dir=request.state_dir,
    )
    with timer.stage("observe"):
        networks = any(
            c.kind is Kind.NETWORK or (c.container is not None and c.container.networks)
            for c in saved.plan.changes
        ) or any(key.startswith(Kind.NETWORK.resource("")) for key in saved.plan.fingerprint)
        observed = observe(engine, saved.plan.project, networks=networks)
        observed = with_sizes(observed, engine, measured_targets(saved.plan))
    record = record or ProjectRecord()
    adoptions = Adoptions(
        volumes=record.adoptions(Kind.VOLUME.value),
        networks=record.adoptions(Kind.NETWORK.value),
        renamed=record.adopting,
    )
    check_saved(request.path, saved.plan, observed, policy, adoptions)
    check_fresh(observed, saved)
    return observed


def with_sizes(observed: Observed, engine: Engine, ids: list[str]) -> Observed:
    """``observed`` with the writable layers of the containers ``ids`` measured."""
    if not ids:
        return observed
    sizes = measure_writable_layers(engine, ids)
    return dataclasses.replace(
        observed,
        containers={
            name: dataclasses.replace(c, size_rw=sizes.get(c.id, c.size_rw))
            for name, c in observed.containers.items()
        },
    )


def load(request: Request) -> Desired:
    """The spec set at ``request.path``, checked against the admin policy."""
    return load_checked(
        request.path,
        project=request.project,
        policy_file=request.policy_file,
        docker_host=request.docker_host,
        state_dir=request.state_dir,
    )


def host_share(desired: Desired, engine: Engine, host: str | None) -> Desired:
    """The share of ``desired`` that belongs on ``engine`` (``--host``, else the engine's
    name); a spec that places nothing is every host's whole share, asked of no engine."""
    if not desired.placements:
        return desired
    return share(desired, engine_host(engine, host))


def pack_images(desired: Desired, state: StateDir | None) -> dict[str, PackedImage]:
    """Hash every data-packed image's context; record each manifest for later reasons."""
    packed: dict[str, PackedImage] = {}
    issues = []
    cache_dir = state.hash_cache if state else None
    for key, spec in sorted(desired.images.items()):
        try:
            packed[key] = pack(desired.project, key, spec, cache_dir)
        except ContextError as err:
            origin = desired.origins.get(Kind.IMAGE.resource(key))
            file, line = (origin.file, origin.line) if origin else ("", 1)
            issues.append(SpecIssue(file, line, f"images.{key}.context", str(err)))
    if issues:
        raise SpecError(issues)
    if state:
        for image in packed.values():
            path = state.manifest(image.tag)
            if not os.path.exists(path):
                write_json(path, dict(image.manifest))
    return packed


def _known_manifests(state: StateDir | None, observed: Observed) -> dict[str, Mapping[str, str]]:
    """Manifests of the builds the engine holds, as recorded when they were planned."""
    out: dict[str, Mapping[str, str]] = {}
    if not state:
        return out
    for tag, image in observed.images.items():
        if image.labels.get(KIND) != Kind.IMAGE or tag.startswith("sha256:"):
            continue
        try:
            with open(state.manifest(tag), encoding="utf-8") as handle:
                out[tag] = parse_json(handle.read())
        except (OSError, ValueError):
            continue
    return out


def reclaim_of(desired: Desired, backups: str) -> dict[str, VolumeRecord]:
    """Each managed volume's reclaim policy, and where a backup-then-delete puts its data:
    the first folder destination of the first backup rule that lists it, else ``backups``
    (a reclaim's backup stays on this host: it is restored from there if the delete fails)."""
    first: dict[str, str] = {}  # volume -> the destination of the first rule naming one
    for _, rule in sorted(desired.backups.items()):
        if rule.folders:
            for name in rule.volumes:
                first.setdefault(name, rule.folders[0])
    return {
        name: VolumeRecord(volume.reclaim, first.get(name) or backups)
        for name, volume in desired.volumes.items()
        if not volume.external
    }


def _handoffs(desired: Desired, observed: Observed) -> dict[str, dict[str, Statement]]:
    """Each host's statements about the placed volumes that may be moving here or away:
    those of the share missing here, and those here placed elsewhere (files only)."""
    if desired.host is None or not desired.handoff_to:
        return {}
    from reconciler import handoff

    moving = {
        name: destination
        for name, destination in desired.handoff_to.items()
        if (name in desired.volumes) != (name in observed.volumes)
    }
    return handoff.read_all(moving, desired.project)


def record_held(desired: Desired, observed: Observed | None, made: set[str] | None = None) -> None:
    """State, in their handoff folders, that this host holds the placed volumes of its
    share that it has (``observed``, and ``made`` by the apply that just ran): a host they
    move to waits for this host's offer rather than make them empty."""
    if desired.host is None or not desired.handoff_to:
        return
    from reconciler import handoff

    mine = {
        name: (destination, handoff.placement_digest(desired.placements.get(f"volume:{name}")))
        for name, destination in desired.handoff_to.items()
        if name in desired.volumes
        and (name in (made or ()) or (observed is not None and name in observed.volumes))
    }
    known = handoff.read_all({n: desired.handoff_to[n] for n in mine}, desired.project)
    handoff.hold(desired.project, desired.host, mine, known)


def record_reclaim(state: StateDir, desired: Desired, observed: Observed) -> None:
    """Record the reclaim policy of every volume of the spec being applied: the one in
    force once it leaves the spec. Records of volumes gone from the engine are dropped,
    and so are adoptions of volumes that are no longer the one adopted."""
    state.update_record(desired.project, lambda record: _recorded(record, desired, observed, state))


def _recorded(
    record: ProjectRecord, desired: Desired, observed: Observed, state: StateDir
) -> ProjectRecord:
    volume_key, network_key = Kind.VOLUME.value, Kind.NETWORK.value
    ids = {c.id for c in observed.containers.values()}
    adoptions = adopt.recorded(record.adoptions(volume_key), observed.volumes)
    networks = {
        n: i
        for n, i in record.adoptions(network_key).items()
        if n in observed.networks and observed.networks[n].id == i
    }
    volumes = {
        name: kept
        for name, entry in record.volumes.items()
        if name in observed.volumes
        and (kept := _departed(entry, observed.volumes[name].instance, name in desired.volumes))
    }
    return dataclasses.replace(
        record,
        adopted={**record.adopted, volume_key: adoptions, network_key: networks},
        # Whether the project has networks on the engine: the next pass lists them only then.
        networks=bool(desired.networks)
        or any(n.project == desired.project for n in observed.networks.values())
        or bool(networks),
        volumes={**volumes, **reclaim_of(desired, state.backups)},
        migrations={
            k: v for k, v in record.migrations.items() if not _settled(desired, observed, k, v)
        },
        # An interrupted adoption's renamed container removed since (by dsr or by hand).
        adopting={n: i for n, i in record.adopting.items() if i in ids},
    )


def _departed(entry: VolumeRecord, instance: str, in_spec: bool) -> VolumeRecord | None:
    """A volume's reclaim record: bound to the volume it was decided for once it left the
    spec (its ``dsr.instance``), dropped when the volume there now is another one."""
    if in_spec:
        return entry
    if not entry.instance:
        return dataclasses.replace(entry, instance=instance)
    return entry if entry.instance == instance else None


def _settled(desired: Desired, observed: Observed, name: str, migration: Migration) -> bool:
    """An interrupted migration with nothing left to do: the spec went back to the settings
    of the original volume, which was never removed (so it still holds every byte)."""
    live, spec = observed.volumes.get(name), desired.volumes.get(name)
    if not migration.original or live is None or spec is None:
        return False
    wanted = volume_params(desired.project, name, spec).labels[CONFIG_HASH]
    return live.instance == migration.original and live.labels.get(CONFIG_HASH) == wanted


def compute_plan(
    engine: Engine,
    desired: Desired,
    packed: Mapping[str, PackedImage],
    state: StateDir | None = None,
    timer: _Timer | None = None,
) -> tuple[Plan, Observed]:
    """Observe once and plan; measure writable layers only of containers a plan would drop.
    Returns the plan and the snapshot it was made from (sizes measured)."""
    timer = timer or _Timer({})
    tags = {key: image.tag for key, image in packed.items()}
    record = state.load_record(desired.project) if state else ProjectRecord()
    with timer.stage("observe"):
        observed = observe(
            engine, desired.project, networks=bool(desired.networks or record.networks)
        )
        handoffs = _handoffs(desired, observed)
    with timer.stage("plan"):
        known = {
            **_known_manifests(state, observed),
            **{image.tag: image.manifest for image in packed.values()},
        }
        compare = packed_plan.compared(desired, observed, tags)
    if compare:
        with timer.stage("observe"):
            same = compare_packed(engine, compare, known)
            observed = dataclasses.replace(observed, packed_volumes=same)
    with timer.stage("plan"):
        reclaim = {**record.volumes, **reclaim_of(desired, state.backups if state else "")}
        migrating = record.migrations
        adoptions = record.adoptions(Kind.VOLUME.value)
        network_adoptions = record.adoptions(Kind.NETWORK.value)
        first = plan(
            desired,
            observed,
            tags,
            manifests=known,
            reclaim=reclaim,
            migrations=migrating,
            adoptions=adoptions,
            network_adoptions=network_adoptions,
            adopting=record.adopting,
            handoffs=handoffs,
        )
    ids = [
        c.target_id
        for c in first.changes
        if c.target_id
        and c.kind in (Kind.CONTAINER, Kind.VOLUME_CONTAINER)
        and c.action in (Action.REPLACE, Action.DELETE, Action.BLOCKED, Action.ADOPT)
    ]
    if not ids:
        return first, observed
    with timer.stage("observe"):
        measured = with_sizes(observed, engine, ids)
    with timer.stage("plan"):
        again = plan(
            desired,
            measured,
            tags,
            manifests=known,
            reclaim=reclaim,
            migrations=migrating,
            adoptions=adoptions,
            network_adoptions=network_adoptions,
            adopting=record.adopting,
            handoffs=handoffs,
        )
        return again, measured


def offline_plan(
    old: Desired,
    new: Desired,
    packed: tuple[Mapping[str, PackedImage], Mapping[str, PackedImage]] | None = None,
    handoffs: Mapping[str, Mapping[str, Statement]] | None = None,
) -> Plan:
    """``dsr diff``: the plan from ``old`` applied to ``new``, with no engine and no state.
    ``packed``: OLD's and NEW's images, hashed already (a fleet diff hashes them once);
    ``handoffs``: the statements other hosts would have made (a fleet diff's moves)."""
    from reconciler.plan.simulate import simulate

    if packed is None:
        packed = pack_images(old, None), pack_images(new, None)
    old_packed = {k: v for k, v in packed[0].items() if k in old.images}
    new_packed = {k: v for k, v in packed[1].items() if k in new.images}
    manifests = {i.tag: i.manifest for i in [*old_packed.values(), *new_packed.values()]}
    before = simulate(old, {key: image.tag for key, image in old_packed.items()})
    tags = {key: image.tag for key, image in new_packed.items()}
    reclaim = reclaim_of(old, "")
    return plan(new, before, tags, manifests=manifests, reclaim=reclaim, handoffs=handoffs)


__all__ = [
    "STAGES",
    "PassResult",
    "compute_plan",
    "deletes_everything",
    "host_share",
    "names_of",
    "offline_plan",
    "pack_images",
    "run_pass",
]
