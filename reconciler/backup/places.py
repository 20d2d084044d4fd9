"""A rule's destinations as places, and one snapshot made once and stored in each.

A rule's ``destination`` is a folder, ``s3://BUCKET/PREFIX`` or a list of those (the
default: the state directory's ``backups/``). ``take`` makes a source's archive once.
A single plain folder is written in place (and flushed there, as always). Otherwise
the archive goes into every place at once as it is made (``tee``: encrypted once, each
chunk written into each place), with no copy staged on this host; the staging folder
only holds the snapshot's name and its manifest's draft. A place that fails does not
stop the others: it gets no manifest (nothing lists there), the snapshot is kept where
it was stored, and ``PlacesFailed`` names the places missed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from reconciler import logs
from reconciler.backup import crypt, run
from reconciler.backup import staging as staged
from reconciler.backup.errors import BackupError, PlacesFailed
from reconciler.backup.manifest import Manifest
from reconciler.backup.sealed import SealedFolder
from reconciler.backup.store import Folder, Place, Source
from reconciler.backup.tee import Tee, said
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
    places: dict[str, Place] = {}
    for url in rule.destinations:
        place = place_of(url, rule, state, keys)
        first = places.setdefault(place.key, place)
        if first is not place:  # a link to a folder listed too: one store, written once
            log.warning("destination_repeated", destination=url, same_as=first.url)
    return list(places.values()) or [_folder(state.backups, state, keys, tuple(rule.encrypt_to))]


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
        failed: dict[str, str] = {}
        live: list[Place] = []
        taken: set[str] = set()
        for place in places:  # a place that cannot be read now is missed, not the rest
            try:
                taken |= place.taken(project)
                live.append(place)
            except (BackupError, OSError) as err:
                _missed(failed, place.url, err)
        if not live:
            raise PlacesFailed(None, [], failed)
        options = dataclasses.replace(options, taken=options.taken | frozenset(taken))
        first = live[0]
        if len(places) == 1 and isinstance(first, Folder) and not first.encrypts:
            options = dataclasses.replace(options, guard=first.guard)
            return run.backup_source(engine, project, source, first.url, options)
        return _streamed(engine, project, source, options, live, staging, failed)

    return one


def _streamed(
    engine: Engine | None,
    project: str,
    source: Source,
    options: run.Options,
    places: list[Place],
    staging: str,
    failed: dict[str, str],
) -> Manifest:
    """One source's archive sent into every place in ``places`` as it is made."""
    tees: list[Tee] = []

    def opened(snapshot_id: str) -> Tee:
        sinks = []
        for place in places:
            try:
                sinks.append(place.stream(project, snapshot_id))
            except (BackupError, OSError) as err:
                _missed(failed, place.url, err)
        if not sinks:
            raise PlacesFailed(None, [], failed)
        to = crypt.recipients(places[0].recipients) if places[0].encrypts else []
        tees.append(Tee(sinks, failed, to))
        return tees[-1]

    with staged.folder(staging) as folder:
        options = dataclasses.replace(options, staged=True, stream=opened)
        try:
            manifest = run.backup_source(engine, project, source, folder, options)
            stored = tees[-1].commit(manifest)
        except BaseException:
            for tee in tees:
                tee.abort()
            raise
    for url in stored:
        log.info("stored", id=manifest.id, destination=url)
    if failed:
        raise PlacesFailed(manifest, stored, failed)
    return manifest


def _missed(failed: dict[str, str], url: str, err: BaseException) -> None:
    failed[url] = said(err)
    log.error("store_failed", destination=url, error=said(err))
