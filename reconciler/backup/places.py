"""A rule's destinations as places, and one snapshot made once and stored in each.

A rule's ``destination`` is a folder, ``s3://BUCKET/PREFIX`` or a list of those (the
default: the state directory's ``backups/``). ``take`` makes a source's archive once.
With a single S3 place, it goes up as it is made (``s3stream``), with no copy on this
host. Otherwise it is written in the first place when that is a plain folder (written and
read back there, as always), else in a staging folder of the state directory; then stored
in every other place, the
manifest last in each, and removes the staged copy. A place that fails does not stop the
others: the snapshot is kept where it was stored, and the error names the places missed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from reconciler import logs
from reconciler.backup import run, store
from reconciler.backup import staging as staged
from reconciler.backup.errors import BackupError
from reconciler.backup.manifest import Manifest
from reconciler.backup.sealed import SealedFolder
from reconciler.backup.store import Folder, Place, Source
from reconciler.engine import Engine
from reconciler.spec import Desired
from reconciler.spec.backups import Backup, s3_parts
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.backup")


def place_of(url: str, rule: Backup, state: StateDir, keys: tuple[Any, ...] = ()) -> Place:
    """The place a destination names, with the rule's endpoint, region and recipients;
    ``keys``: the age identities that read encrypted snapshots."""
    if s3_parts(url) is None:
        return _folder(url, state, keys, tuple(rule.encrypt_to))
    from reconciler.backup.s3store import S3

    return S3(
        url,
        endpoint=rule.endpoint,
        region=rule.region,
        recipients=tuple(rule.encrypt_to),
        identities=keys,
        staging=state.staging,
        known=state.known_manifests,
    )


def places_of(rule: Backup, state: StateDir, keys: tuple[Any, ...] = ()) -> list[Place]:
    """Where ``rule`` stores its snapshots, in the order written."""
    places = [place_of(url, rule, state, keys) for url in rule.destinations]
    return places or [_folder(state.backups, state, keys, tuple(rule.encrypt_to))]


def _folder(url: str, state: StateDir, keys: tuple[Any, ...], to: tuple[str, ...]) -> Place:
    return SealedFolder(url, to, keys, state.staging, state.known_manifests)


def every_place(desired: Desired, state: StateDir, keys: tuple[Any, ...] = ()) -> list[Place]:
    """Every rule's places and the default one, each store once."""
    found: dict[str, Place] = {}
    for _, rule in sorted(desired.backups.items()):
        for place in places_of(rule, state, keys):
            found.setdefault(place.key, place)
    default = _folder(state.backups, state, keys, ())
    found.setdefault(default.key, default)
    return list(found.values())


def take(
    engine: Engine | None,
    project: str,
    places: list[Place],
    staging: str,
) -> run.Take:
    """The ``take`` of ``run.run_rule``: one source's snapshot, stored in ``places``."""

    def one(source: Source, options: run.Options) -> Manifest:
        taken: frozenset[str] = frozenset().union(*(p.taken(project) for p in places))
        options = _with_taken(options, taken)
        first = places[0]
        if len(places) == 1 and hasattr(first, "stream"):
            return _streamed(engine, project, source, options, first, staging)
        if isinstance(first, Folder) and not first.encrypts:
            manifest = run.backup_source(engine, project, source, first.url, options)
            _store(project, places[1:], store.folder_of(first.url, manifest), manifest, [first])
            return manifest
        with staged.folder(staging) as folder:
            options = dataclasses.replace(options, staged=True)
            manifest = run.backup_source(engine, project, source, folder, options)
            _store(project, places, store.folder_of(folder, manifest), manifest, [])
        return manifest

    return one


def _streamed(
    engine: Engine | None,
    project: str,
    source: Source,
    options: run.Options,
    place: Any,
    staging: str,
) -> Manifest:
    """One source's archive sent into the store ``place`` as it is made (no local copy;
    the staging folder only holds the snapshot's name and its manifest's draft)."""
    streams: list[Any] = []

    def opened(snapshot_id: str) -> Any:
        streams.append(place.stream(project, snapshot_id))
        return streams[-1]

    with staged.folder(staging) as folder:
        options = dataclasses.replace(options, staged=True, stream=opened)
        try:
            manifest = run.backup_source(engine, project, source, folder, options)
            place.put_manifest(project, manifest, streams[-1])
        except BaseException as err:
            for stream in streams:
                stream.abort()
            if isinstance(err, (BackupError, OSError)):
                log.error("store_failed", source=str(source), destination=place.url, error=str(err))
            raise
    log.info("stored", id=manifest.id, destination=place.url)
    return manifest


def _with_taken(options: run.Options, taken: frozenset[str]) -> run.Options:
    return dataclasses.replace(options, taken=options.taken | taken)


def _store(
    project: str, places: Iterable[Place], folder: str, manifest: Manifest, done: list[Place]
) -> None:
    failed: list[str] = []
    for place in places:
        try:
            place.put(project, folder, manifest)
            done.append(place)
            log.info("stored", id=manifest.id, destination=place.url)
        except (BackupError, OSError) as err:
            log.error("store_failed", id=manifest.id, destination=place.url, error=str(err))
            failed.append(f"{place.url}: {err}")
    if failed:
        kept = f"is stored in {', '.join(p.url for p in done)}" if done else "was stored nowhere"
        raise BackupError(f"snapshot {manifest.id} {kept}; not in " + "; ".join(failed))
