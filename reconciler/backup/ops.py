"""The backup commands as functions of a spec: back up, list, prune, verify, restore.

Each loads the spec set as every command does (admin policy included), finds the
destinations of its rules, and, when it changes anything (backup, prune, restore), holds
the lock of its engine and project for the whole run. They return values and raise
``DsrError``s; only the CLI turns them into output and exit codes, and the daemon calls
the CLI as a subprocess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler import logs
from reconciler.backup import crypt, engine_io, places, run, staging, store
from reconciler.backup import restore as restoring
from reconciler.backup.errors import BackupError, ChecksumError
from reconciler.backup.journal import Journal, finish
from reconciler.backup.manifest import backup_time
from reconciler.backup.retention import apply_keep, is_empty, newest_first
from reconciler.backup.store import COMPLETE, DAMAGED, Folder, Place, Snapshot, Source
from reconciler.engine import Engine, engine_url
from reconciler.errors import DsrError
from reconciler.escape import escape_controls
from reconciler.files import parse_json, remove_below, write_json
from reconciler.hostinfo import engine_host
from reconciler.labels import managed, owned_by
from reconciler.observe import on_this_host, volume_identity
from reconciler.plan.params import volume_params
from reconciler.request import Request
from reconciler.spec import Desired, Policy, load_policy, load_spec
from reconciler.spec.backups import Backup
from reconciler.spec.models import Volume
from reconciler.spec.policy import is_under
from reconciler.spec.share import share
from reconciler.statedir import StateDir, locked

UNREADABLE = "unreadable"  # a damaged status that a re-read could not confirm
log = logs.get_logger("dsr.backup")


def load(request: Request) -> tuple[Desired, Policy]:
    policy = load_policy(
        request.policy_file,
        (request.path,),
        docker_host=request.docker_host,
        state_dir=request.state.root,
    )
    if request.last_good:
        return last_good(request), policy
    desired = load_spec(request.path, project=request.project, policy=policy)
    if desired.placements:  # only this host's rules and volumes (see spec.share)
        engine = _engine(request)
        try:
            desired = share(desired, engine_host(engine, request.host))
        finally:
            engine.close()
    return desired, policy


def save_last_good(state: StateDir, desired: Desired) -> None:
    """Record the backup rules of ``desired`` (this host's share of a spec that loaded
    whole) for the daemon's scheduled backups: they run from it while the spec is broken."""
    rules = {name: rule.model_dump(mode="json") for name, rule in desired.backups.items()}
    document = {"project": desired.project, "backups": rules}
    path = state.last_good(desired.project)
    try:
        with open(path, encoding="utf-8") as handle:
            if parse_json(handle.read()) == document:
                return
    except (OSError, ValueError):
        pass
    write_json(path, document, indent=1)


def last_good(request: Request) -> Desired:
    """The spec of the daemon's last good load, as ``save_last_good`` recorded it."""
    project = request.project
    if not project:
        raise BackupError("--last-good needs --project: the spec on disk may not load")
    path = request.state.last_good(project)
    try:
        with open(path, encoding="utf-8") as handle:
            document = parse_json(handle.read())
        rules = {
            str(name): Backup.model_validate(rule)
            for name, rule in dict(document["backups"]).items()
        }
        if document["project"] != project:
            raise ValueError(f"it is the record of the project {document['project']!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BackupError(
            f"no usable record of the last good spec of {project} ({path}): {err}"
        ) from err
    return Desired(project=project, backups=rules)


def folders(rule: Backup, state: StateDir) -> list[str]:
    """The rule's destinations on this host."""
    return [p.url for p in places.places_of(rule, state) if isinstance(p, Folder)]


@contextmanager
def _locked(request: Request, project: str) -> Iterator[None]:
    url = engine_url(request.docker_host)
    with locked(request.state, url, project, timeout=request.lock_timeout):
        yield


def _engine(request: Request) -> Engine:
    return Engine(request.docker_host, timeout=request.engine_timeout)


# -- backup --------------------------------------------------------------------------------


def backup(
    request: Request,
    *,
    rule: str | None = None,
    volume: str | None = None,
    time: str | None = None,
    via: str = "auto",
    progress: run.Progress | None = None,
) -> list[run.Taken]:
    """``dsr backup``: every rule (or ``rule``), every source (or ``volume``), one snapshot."""
    desired, policy = load(request)
    rules = _rules(desired, rule, volume)
    for name, spec in rules.items():
        problems = run.check_paths(spec, folders(spec, request.state), policy)
        if problems:
            raise BackupError(f"backup rule {name}: " + "; ".join(problems))
    try:
        moment, zone = backup_time(time)
    except ValueError as err:
        raise BackupError(f"--time {time!r} is not an ISO 8601 time: {err}") from err
    options = run.Options(
        time=moment, zone=zone, via=via, progress=progress, key=request.state.backup_key()
    )
    needs_engine = any(
        r.volumes or r.quiesce or r.hooks.before or r.hooks.after for r in rules.values()
    )
    engine = _engine(request) if needs_engine else None
    taken: list[run.Taken] = []
    try:
        with _locked(request, desired.project), staging.spilling(request.state.staging):
            journal = Journal(request.state, desired.project)
            if engine is not None:
                engine_io.remove_stale_helpers(engine, desired.project)
                finish(engine, journal)
            for name, spec in rules.items():
                where = places.places_of(spec, request.state)
                for place in where:  # judged again as each snapshot folder is made
                    if isinstance(place, Folder) and place.url in spec.folders:
                        place.guard = functools.partial(policy.check, role="destination")
                take = places.take(engine, desired.project, where, request.state.staging)
                taken += run.run_rule(
                    engine, desired.project, name, spec, take, options, volume, journal
                )
    finally:
        if engine is not None:
            engine.close()
    return taken


def _rules(desired: Desired, rule: str | None, volume: str | None) -> dict[str, Backup]:
    rules = dict(sorted(desired.backups.items()))
    if not rules:
        raise BackupError(f"the spec {desired.project!r} has no backups section")
    if rule is not None:
        if rule not in rules:
            raise BackupError(f"no backup rule {rule!r}; the spec has {', '.join(rules)}")
        rules = {rule: rules[rule]}
    if volume is not None:
        rules = {n: r for n, r in rules.items() if volume in r.volumes}
        if not rules:
            raise BackupError(
                f"no backup rule{' ' + rule if rule else ''} lists the volume {volume}"
            )
    return rules


# -- list, verify ---------------------------------------------------------------------------


class Listed(list[Snapshot]):
    """Snapshots found, and why some places could not be read (``problems``)."""

    problems: list[str]


def listing(request: Request) -> Listed:
    """Every snapshot of the project with a manifest, per policy and source, newest first
    (one entry per place a snapshot is stored in). A place that cannot be read does not
    hide the others: its error is in ``problems``."""
    desired, _ = load(request)
    return _found(desired, request)


def listing_all(request: Request) -> tuple[Listed, list[dict[str, str | None]]]:
    """``listing``, and each snapshot whose manifest is unreadable, as damaged (its
    folder's name for an id): one bad snapshot never hides the others."""
    desired, _ = load(request)
    damaged: list[dict[str, str | None]] = []
    return _found(desired, request, damaged), damaged


def _damaged(found: store.Found, place: Place, project: str) -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    for item in found.unreadable:
        problem = "its manifest is unreadable"
        if isinstance(place, Folder):
            problem = store.read_manifest(item, project)[1]
        out.append(
            {
                "id": escape_controls(os.path.basename(item.rstrip("/"))),
                "policy": None,
                "source": None,
                "time": None,
                "status": store.DAMAGED,
                "problem": problem,
            }
        )
    return out


def _signed(place: Place, found: store.Found, key: bytes) -> store.Found:
    """A folder's snapshots must carry this state directory's keyed digest. A remote
    store's are read by hosts that never had that key (a restore after the host is lost:
    the point of keeping them off it): the store's credentials guard who writes there,
    and the archive's sha256 and tree digest are checked against the manifest anyway."""
    return found if place.remote else store.signed(found, key)


def _keys(request: Request) -> tuple[Any, ...]:
    return tuple(crypt.identities(request.identity))


def _found(
    desired: Desired, request: Request, damaged: list[dict[str, str | None]] | None = None
) -> Listed:
    """Every place's snapshots; one whose manifest this state directory's backup-key did
    not sign is damaged (refused by its id), and never hides the others."""
    out: list[Snapshot] = []
    problems: list[str] = []
    every = places.every_place(desired, request.state, _keys(request))
    key = request.state.backup_key()
    for place in every:
        try:
            here = _signed(place, place.find(desired.project), key)
            out += here.snapshots
            if damaged is not None:
                damaged += _damaged(here, place, desired.project)
        except BackupError as err:
            log.error("list_failed", destination=place.url, error=str(err))
            problems.append(str(err))
    if problems and len(problems) == len(every):
        raise BackupError("; ".join(problems))
    found = Listed(
        sorted(out, key=lambda s: (s.manifest.policy, s.manifest.source, -s.time.timestamp()))
    )
    found.problems = problems
    return found


def verify(request: Request, backup_id: str | None = None) -> list[tuple[Snapshot, str | None]]:
    """Re-read archives (all, or one): (snapshot, the problem or ``None``) each."""
    found = listing(request)
    if found.problems:  # a verify that skipped a place would say all is well
        raise BackupError("; ".join(found.problems))
    snapshots: list[Snapshot] = list(found)
    if backup_id is not None:
        snapshots = [s for s in snapshots if s.id == backup_id]
        if not snapshots:
            raise BackupError(f"no backup {backup_id!r} in this project")
    out = []
    for snapshot in snapshots:
        place = _place(snapshot)
        try:
            with staging.spilling(request.state.staging), place.fetched(snapshot) as local:
                restoring.check(local)
            problem = None
        except DsrError as err:
            problem = str(err)
        except OSError as err:
            problem = f"cannot read snapshot {snapshot.id}: {err}"
        place.record_verify(snapshot, problem)
        log.log(40 if problem else 20, "verify", id=snapshot.id, ok=problem is None, error=problem)
        out.append((snapshot, problem))
    return out


def _place(snapshot: Snapshot) -> Place:
    return snapshot.place if snapshot.place is not None else Folder(snapshot.folder)


# -- prune ----------------------------------------------------------------------------------


@dataclass
class Pruned:
    """What a prune keeps (with reasons) and removes, per policy and source, newest first."""

    keep: list[tuple[Snapshot, tuple[str, ...]]] = field(default_factory=list)
    remove: list[Snapshot] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)

    def add(self, other: Pruned) -> None:
        self.keep += other.keep
        self.remove += other.remove
        self.unfinished += other.unfinished

    def to_json(self) -> dict[str, object]:
        return {
            "format_version": 1,
            "keep": [{**_brief(s), "reasons": list(why)} for s, why in self.keep],
            "remove": [
                {**_brief(s), **({"status": s.status} if s.status != COMPLETE else {})}
                for s in self.remove
            ],
        }


def _brief(s: Snapshot) -> dict[str, object]:
    m = s.manifest
    where = {"destination": s.place.url} if s.place is not None else {}
    return {"id": m.id, "policy": m.policy, "source": m.source, "time": m.time.isoformat(), **where}


def prune(request: Request, *, dry_run: bool = False) -> Pruned:
    """Apply the keep rules; remove what they drop (unless ``dry_run``) and unfinished ones."""
    desired, _ = load(request)
    result = Pruned()
    with _locked(request, desired.project):
        for place in places.every_place(desired, request.state, _keys(request)):  # one by one
            found = _signed(place, place.find(desired.project), request.state.backup_key())
            checked = [_rechecked(place, s, record=not dry_run) for s in found.snapshots]
            mine = plan_prune(desired, checked)
            mine.unfinished = list(found.unfinished)
            result.add(mine)
            if dry_run:
                continue
            for snapshot in mine.remove:
                place.remove(snapshot)
                log.info("pruned", id=snapshot.id, policy=snapshot.manifest.policy)
            for item in found.unfinished:
                place.remove_unfinished(item)
                log.info("pruned_unfinished", folder=item)
    return result


def _rechecked(place: Place, snapshot: Snapshot, *, record: bool) -> Snapshot:
    """A damaged snapshot read again before prune decides on it: an archive that was
    unreadable for a moment during a verify is good again, and one that cannot be read
    now is not known to be damaged (``UNREADABLE``: never removed)."""
    if snapshot.status != DAMAGED or store.is_unsigned(snapshot):
        return snapshot  # an edited manifest stays refused, whatever its archive holds
    try:
        with place.fetched(snapshot) as local:
            restoring.check(local)
    except (DsrError, OSError) as err:
        if isinstance(err, OSError) or isinstance(err.__cause__, OSError):
            log.warning("prune_unreadable", id=snapshot.id, error=str(err))
            return dataclasses.replace(snapshot, status=UNREADABLE, problem=str(err))
        if record:
            place.record_verify(snapshot, str(err))
        return dataclasses.replace(snapshot, problem=str(err))
    if record:
        place.record_verify(snapshot, None)
    log.info("prune_recheck", id=snapshot.id, ok=True, was=snapshot.problem)
    return dataclasses.replace(snapshot, status=COMPLETE, problem="")


def plan_prune(desired: Desired, snapshots: list[Snapshot]) -> Pruned:
    """Pure: which snapshots each rule keeps. Damaged ones never count and are removed;
    the newest complete snapshot of a source is always kept."""
    groups: dict[tuple[str, str], list[Snapshot]] = {}
    for s in snapshots:
        groups.setdefault((s.manifest.policy, s.manifest.source), []).append(s)
    result = Pruned()
    now = datetime.now(UTC)
    for (policy, _), group in sorted(groups.items()):
        foreign = [s for s in group if store.is_unsigned(s)]
        result.keep += [(s, ("its manifest is not signed here: left alone",)) for s in foreign]
        group = [s for s in group if not store.is_unsigned(s)]
        good = newest_first([s for s in group if s.status == COMPLETE])
        rule = desired.backups.get(policy)
        if rule is None or is_empty(rule.keep):
            why = "no such rule in the spec" if rule is None else "the rule has no keep rules"
            kept = [(s, (why,)) for s in good]
        else:
            held, _ = apply_keep(good, rule.keep, now=now)
            kept = [(k.snapshot, k.reasons) for k in held]  # type: ignore[misc]
            if good and all(s is not good[0] for s, _ in kept):
                kept.insert(0, (good[0], ("newest verified snapshot",)))
        kept += [
            (s, ("unreadable now, not known to be damaged",))
            for s in group
            if s.status == UNREADABLE
        ]
        ids = {s.folder for s, _ in kept}
        ordered = newest_first(group)
        result.keep += sorted(kept, key=lambda k: ordered.index(k[0]))
        result.remove += [s for s in ordered if s.folder not in ids]
    return result


# -- restore --------------------------------------------------------------------------------


def restore(
    request: Request,
    target: str,
    *,
    backup_id: str = "latest",
    into: str | None = None,
    stop: bool = False,
    via: str = "auto",
    progress: run.Progress | None = None,
    trust_unsigned: bool = False,
) -> Snapshot:
    """``dsr restore``: a volume (or, for a host-folder snapshot, a folder) from a snapshot.

    ``trust_unsigned``: a snapshot whose manifest this state directory's key did not sign
    (the host and its state directory are gone) counts as complete; its archive is still
    checked against its manifest's sha256 and tree digest."""
    desired, policy = load(request)
    source = (
        Source("path", os.path.normpath(target))
        if target.startswith("/")
        else Source("volume", target)
    )
    chosen = _choose(_found(desired, request), source, backup_id, trust_unsigned)
    with (
        _locked(request, desired.project),
        staging.spilling(request.state.staging),
        _place(chosen).fetched(chosen) as snapshot,
    ):
        if source.kind == "path":
            folder = os.path.normpath(into or source.name)
            dests = [
                p.url for p in places.every_place(desired, request.state) if isinstance(p, Folder)
            ]
            _check_target(folder, policy, dests, request.state)
            checked = os.path.realpath(folder)
            top = _make_target(folder)
            if os.path.islink(folder) or os.path.realpath(folder) != checked:
                # made a link between the check and here (a shared /tmp): not written into
                raise BackupError(f"{folder} changed while the restore checked it; not written")
            try:
                restoring.restore_dir(snapshot, folder, progress)
            except BaseException as err:
                if top:  # a folder this restore made: gone again, with what it wrote
                    with contextlib.suppress(OSError, RecursionError):
                        remove_below(os.path.dirname(top), top)
                if isinstance(err, OSError):  # a full disk: said, not a traceback
                    raise BackupError(_partial(snapshot.id, folder, err, bool(top))) from err
                raise
            return snapshot
        engine = _engine(request)
        journal = Journal(request.state, desired.project)
        try:
            engine_io.remove_stale_helpers(engine, desired.project)
            finish(engine, journal)
            name = into or source.name
            if into is not None and journal.half_restored(name):
                _remove_half_restored(engine, desired.project, name)
            adopted = adoptions(request.state, desired.project)
            if into is not None and engine_io.inspect_volume(engine, name) is None:
                journal.restoring(name, snapshot.id)  # before the volume exists
            try:
                made = _prepare_volume(
                    engine, desired, snapshot, name, new=into is not None, adopted=adopted
                )
            except BaseException:
                if engine_io.inspect_volume(engine, name) is None:
                    journal.restored(name)
                raise
            try:
                restoring.restore_volume(
                    engine,
                    snapshot,
                    name,
                    stop=stop,
                    via=via,
                    progress=progress,
                    made=made,
                    journal=journal,
                )
            except BaseException as err:
                if made:  # a volume this restore made: gone, as if it had never run
                    engine_io.remove_made_volume(engine, name)
                if isinstance(err, OSError):  # a full disk: said, not a traceback
                    raise BackupError(_partial(snapshot.id, name, err, made)) from err
                raise
            finally:
                if made and journal.half_restored(name):
                    journal.restored(name)  # done, or removed: nothing left to finish
        finally:
            engine.close()
    return chosen


def _partial(snapshot: str, target: str, err: OSError, made: bool) -> str:
    where = "it was removed again" if made else f"{target} may hold part of it"
    return (
        f"restoring {snapshot} into {target} failed: {err.strerror or err}; {where}. The "
        "snapshot is intact: free the space (or fix the cause) and run the restore again"
    )


def _remove_half_restored(engine: Engine, project: str, name: str) -> None:
    """What a killed ``restore --into`` left: its volume, half filled, removed so that
    this restore makes it again (only this project's, and only while nothing uses it)."""
    live = engine_io.inspect_volume(engine, name)
    if live is None:
        return
    labels = live.get("Labels") or {}
    users = engine_io.users(engine, volume=name)
    if not owned_by(labels, project) or users:
        raise BackupError(
            f"the volume {name} was left half filled by a restore --into that was "
            "interrupted, but it is used or no longer this project's; remove it by hand"
        )
    engine.api.remove_volume(name)
    log.info("volume_removed", volume=name, reason="a restore --into into it was interrupted")


def _check_target(folder: str, policy: Policy, dests: list[str], state: StateDir) -> None:
    """A restore target is never a backup destination (a restore empties its target), dsr's
    state directory, or anything the policy protects, nor lies under or holds one."""
    refused = policy.check(folder)
    if refused:
        raise BackupError(refused)
    real = os.path.realpath(folder)
    for protected, what in [(d, "the backup destination") for d in dests] + [
        (state.root, "dsr's state directory")
    ]:
        other = os.path.realpath(protected)
        if is_under(real, other) or is_under(other, real):
            raise BackupError(
                f"{folder} cannot be a restore target: it is, lies in or holds {what} {other}"
            )
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise BackupError(f"{folder} cannot be a restore target: it is not a directory")


def _make_target(folder: str) -> str | None:
    """Create the target folder (and missing parents); the topmost folder made, if any."""
    made = None
    path = folder
    while not os.path.lexists(path):
        made = path
        path = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    return made


def _choose(
    snapshots: list[Snapshot], source: Source, backup_id: str, trust_unsigned: bool = False
) -> Snapshot:
    if trust_unsigned:
        snapshots = [
            dataclasses.replace(s, status=COMPLETE, problem="") if store.is_unsigned(s) else s
            for s in snapshots
        ]
    mine = newest_first([s for s in snapshots if s.manifest.source == str(source)])
    if backup_id == "latest":
        good = [s for s in mine if s.status == COMPLETE]
        if not good:
            raise BackupError(f"no complete backup of {source} in this project")
        return good[0]
    for s in snapshots:
        if s.id == backup_id:
            if s.manifest.source != str(source):
                raise BackupError(f"backup {backup_id} is of {s.manifest.source}, not of {source}")
            if s.status != COMPLETE:
                raise ChecksumError(f"backup {backup_id} is {s.status}: {s.problem}")
            return s
    raise BackupError(f"no backup {backup_id!r} of {source} in this project")


def adoptions(state: StateDir, project: str) -> dict[str, str]:
    """The volumes ``project`` adopted (name -> identity), as its record says."""
    return state.load_record(project).adoptions("volume")


def _prepare_volume(
    engine: Engine,
    desired: Desired,
    snapshot: Snapshot,
    name: str,
    *,
    new: bool,
    adopted: Mapping[str, str],
) -> bool:
    """Create the target when it is new or missing (``True`` then); refuse one dsr does
    not manage for the project (made by it, or adopted: the very volume recorded)."""
    live = engine_io.inspect_volume(engine, name)
    if live is not None and not new:
        labels = live.get("Labels") or {}
        identity = volume_identity(live, local=on_this_host(engine))
        if not managed(labels) and identity and adopted.get(name) == identity:
            return False
        if not owned_by(labels, desired.project):
            raise BackupError(
                f"the volume {name} is not managed by dsr for the project {desired.project}, "
                "so dsr never changes it; restore --into a new volume instead"
            )
        return False
    # Never the driver or options a manifest records (anyone who can write the backup
    # folder could make them a bind of dsr's state directory): the spec's volume of that
    # name (for --into: of the snapshot's volume), checked with the spec; else a plain
    # local volume.
    source_name = Source.parse(snapshot.manifest.source).name
    spec = desired.volumes.get(source_name if new else name)
    if spec is None or (new and spec.external):
        spec = Volume()
    elif spec.external:
        raise BackupError(f"the volume {name} is external: dsr never creates it")
    params = volume_params(desired.project, name, spec)
    restoring.create_volume(
        engine, name, params.driver, dict(params.driver_opts), dict(params.labels)
    )
    return True
