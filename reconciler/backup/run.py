"""Taking snapshots: one source into one snapshot folder, and a rule's whole run.

``backup_volume`` and ``backup_path`` are the API the planner and the applier reuse
(``reclaim: backup-then-delete``, ``on_change: migrate``): each writes one snapshot and
returns its manifest only once the archive, hashed as it is written, is on the disk
(``fsync``) at the size written. ``run_rule`` adds what a spec rule asks around them: hooks before and after (the
after hooks also when a backup failed) and, with ``quiesce``, the containers that use a
source stopped while it is copied and started again, exactly those that were running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reconciler import logs
from reconciler.backup import archive, engine_io, sink, store
from reconciler.backup.errors import BackupError, PlacesFailed
from reconciler.backup.journal import Journal
from reconciler.backup.manifest import ARCHIVE, Manifest, VolumeInfo, backup_time, sign, snapshot_id
from reconciler.backup.store import Source
from reconciler.backup.tree import FORMAT, TreeDigest, content_hash, gc_paused
from reconciler.engine import Engine
from reconciler.spec.backups import Backup, Hook
from reconciler.spec.policy import Policy, is_under

log = logs.get_logger("dsr.backup")

Progress = Callable[[int], None]
Take = Callable[[Source, "Options"], Manifest]  # one source into a rule's places
VIA = ("auto", "direct", "api")


def dsr_version() -> str:
    from reconciler import __version__

    return __version__


def spec_hash(rule: Backup) -> str:
    text = rule.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Options:
    """How to take a snapshot; the defaults suit a one-off backup through the API."""

    policy: str = "manual"
    spec_hash: str = ""
    time: datetime | None = None
    zone: str | None = None
    via: str = "auto"  # auto: the volume's directory when dsr can read it, else the API
    progress: Progress | None = None
    taken: frozenset[str] = frozenset()  # snapshot ids in use in other places
    key: bytes = b""  # the state directory's backup-key: the manifest's keyed digest
    staged: bool = False  # a copy on its way to a store, which rehashes it as it sends it
    # A store's upload that takes the archive as it is made (nothing on this host's disk):
    # called with the snapshot's id, it gives a ``Stream``.
    stream: Callable[[str], Stream] | None = None
    # Why a new snapshot may not go under a resolved destination (the admin policy),
    # asked again as its folder is made: ``None`` writes by path, as the API always did.
    guard: Callable[[str], str | None] | None = None


class Stream(Protocol):
    """An archive's bytes on their way to a store: ``write`` them, then ``finish`` with
    their sha256 and count (every part stored and checked), or ``abort``."""

    def write(self, data: bytes) -> int: ...

    def finish(self, sha256: str, size: int) -> None: ...

    def abort(self) -> None: ...


def backup_volume(
    engine: Engine, project: str, volume: str, destination: str, options: Options = Options()
) -> Manifest:
    """Snapshot the volume ``volume`` into ``destination``; its verified manifest."""
    return backup_source(engine, project, Source("volume", volume), destination, options)


def backup_path(
    engine: Engine | None, project: str, path: str, destination: str, options: Options = Options()
) -> Manifest:
    """Snapshot the host folder ``path`` (no engine needed) into ``destination``."""
    return backup_source(engine, project, Source("path", path), destination, options)


def backup_source(
    engine: Engine | None, project: str, source: Source, destination: str, options: Options
) -> Manifest:
    started = time.monotonic()
    moment, zone = (options.time, options.zone) if options.time else backup_time()
    made = _guarded_folder(destination, project, source, moment, options)
    if made is not None:
        folder = store.snapshot_folder(destination, project, made.id)
    else:
        folder = _new_folder(destination, project, source, moment, options.taken)
    try:
        manifest = _write(engine, project, source, folder, options, moment, zone or "UTC", made)
        manifest = manifest.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
        if options.key:
            manifest = sign(manifest, options.key)
        # a full disk here too: nothing is left
        store.write_manifest(folder, manifest, made.fd if made is not None else None)
    except BaseException:  # best effort; a killed backup leaves a folder prune removes
        if made is not None:
            made.undo()
        else:
            store.remove(folder, destination)
        raise
    finally:
        if made is not None:
            made.close()
    log.info(
        "snapshot",
        id=manifest.id,
        policy=manifest.policy,
        source=manifest.source,
        size=manifest.size,
        files=manifest.files,
        archive_size=manifest.archive_size,
        read_via=manifest.read_via,
        duration_ms=round(manifest.seconds * 1000),
        folder=folder,
    )
    return manifest


def _new_folder(
    destination: str, project: str, source: Source, moment: datetime, taken: frozenset[str]
) -> str:
    base = snapshot_id(source.short, moment)
    parent = os.path.dirname(store.snapshot_folder(destination, project, base))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    for n in range(1, 1000):
        folder = os.path.join(parent, base if n == 1 else f"{base}-{n}")
        if os.path.basename(folder) in taken:
            continue
        try:
            os.mkdir(folder, 0o700)
            return folder
        except FileExistsError:
            continue
    raise BackupError(f"too many snapshots of {source} at {moment.isoformat()}")


def _guarded_folder(
    destination: str, project: str, source: Source, moment: datetime, options: Options
) -> store.MadeFolder | None:
    """With ``options.guard`` (the admin policy), the new snapshot's folder made through
    descriptors from the destination's resolved path, judged as it is made: a destination
    swapped for a link since the rule was checked gets nothing (``store.MadeFolder``)."""
    if options.guard is None:
        return None
    real = os.path.realpath(destination)
    problem = options.guard(real)
    if problem:
        raise BackupError(problem)
    base = snapshot_id(source.short, moment)
    names = (base if n == 1 else f"{base}-{n}" for n in range(1, 1000))
    return store.MadeFolder(real, project, (n for n in names if n not in options.taken))


def _write(
    engine: Engine | None,
    project: str,
    source: Source,
    folder: str,
    options: Options,
    moment: datetime,
    zone: str,
    made: store.MadeFolder | None = None,
) -> Manifest:
    tree = TreeDigest()
    skipped: list[str] = []
    if options.stream is not None:  # straight into a store: nothing on this host's disk
        stream = options.stream(os.path.basename(folder))
        try:
            out = sink.ArchiveSink(-1, output=sink.Passed(stream))
            writer, volume, via = _made(engine, project, source, options, out, tree, skipped)
            sha256, size = out.close()
            stream.finish(sha256, size)
        except BaseException:
            stream.abort()
            raise
    else:
        path = os.path.join(folder, ARCHIVE)
        if made is not None:
            fd = made.create(ARCHIVE)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            out = sink.ArchiveSink(fd, durable=not options.staged)
            writer, volume, via = _made(engine, project, source, options, out, tree, skipped)
            sha256, size = out.close()
            on_disk = os.fstat(fd).st_size
        finally:
            os.close(fd)
        _check_written(path, size, on_disk)
    return Manifest(
        format_version=FORMAT,
        id=os.path.basename(folder),
        policy=options.policy,
        project=project,
        source=str(source),
        time=moment,
        zone=zone,
        dsr_version=dsr_version(),
        spec_hash=options.spec_hash,
        volume=volume,
        size=tree.size,
        files=tree.files,
        archive_size=size,
        sha256=sha256,
        tree_digest=tree.hexdigest(),
        read_via=via,
        skipped=[_shown(p) for p in skipped],
        changed=[_shown(p) for p in writer.short],
    )


def _made(
    engine: Engine | None,
    project: str,
    source: Source,
    options: Options,
    out: sink.ArchiveSink,
    tree: TreeDigest,
    skipped: list[str],
) -> tuple[archive.TarWriter, VolumeInfo | None, str]:
    """The source written as tar into ``out`` (stopped, its file unfinished, on an error)."""
    try:
        writer = archive.TarWriter(
            out,  # type: ignore[arg-type]
            tree,
            progress=options.progress,
            hasher=content_hash(FORMAT),
        )
        with gc_paused():
            volume, via = _pack(engine, project, source, options.via, writer, skipped)
    except BaseException:
        out.abort()
        raise
    return writer, volume, via


def _pack(
    engine: Engine | None,
    project: str,
    source: Source,
    via: str,
    writer: archive.TarWriter,
    skipped: list[str],
) -> tuple[VolumeInfo | None, str]:
    if source.kind == "path":
        archive.pack_dir(source.name, writer, skipped)
        return None, "direct"
    if engine is None:
        raise BackupError(f"backing up {source} needs the Docker engine")
    live = engine_io.inspect_volume(engine, source.name)
    if live is None:
        raise BackupError(f"the volume {source.name} does not exist")
    info = VolumeInfo(
        driver=str(live.get("Driver") or "local"),
        options=dict(live.get("Options") or {}),
        labels=dict(live.get("Labels") or {}),
    )
    mountpoint = None if via == "api" else engine_io.local_mountpoint(engine, live, write=False)
    if via == "direct" and mountpoint is None:
        why = engine_io.mounted_elsewhere(live) or "it is not readable from here"
        raise BackupError(
            f"cannot read the volume {source.name}'s directory on this host: {why}; "
            "use --via api (a helper container that mounts it)"
        )
    if mountpoint is not None:
        archive.pack_dir(mountpoint, writer, skipped)
        return info, "direct"
    with engine_io.helper(engine, project, source.name, read_only=True) as helper_id:
        chunks, _ = engine.api.get_archive(helper_id, engine_io.MOUNT, chunk_size=archive.CHUNK)
        archive.pack_tar(IterReader.of(chunks), writer, skipped)
    return info, "api"


def _shown(path: str) -> str:
    """A path as valid UTF-8 text for the manifest: undecodable bytes as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_written(path: str, size: int, on_disk: int) -> None:
    """A backup is good only once the file on disk (``fsync``ed by the sink) is as long
    as what was written (``on_disk``: its size then); nothing is read back (``sink``)."""
    if on_disk != size:
        raise BackupError(f"{path} is not the size written ({on_disk} bytes, {size} written)")


class IterReader:
    """``read(n)`` over an iterator of byte chunks (the Engine API's streamed archive)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.left = b""

    @classmethod
    def of(cls, chunks: Iterator[bytes]) -> IterReader:
        return cls(chunks)

    def read(self, size: int = -1, /) -> bytes:
        while not self.left:
            try:
                self.left = next(self.chunks)
            except StopIteration:
                return b""
        if size < 0 or size >= len(self.left):
            data, self.left = self.left, b""
        else:
            data, self.left = self.left[:size], self.left[size:]
        return data


# -- a spec rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Taken:
    """How one source of a rule went: its manifest, or the error that stopped it; both
    when some of the rule's places hold the snapshot and others (``missed``: url -> why)
    do not."""

    policy: str
    source: Source
    manifest: Manifest | None = None
    error: str = ""
    missed: tuple[tuple[str, str], ...] = ()


def sources_of(rule: Backup, volume: str | None = None) -> list[Source]:
    """The rule's volumes, then its host folders; only ``volume`` when one is named."""
    found = [Source("volume", v) for v in rule.volumes] + [Source("path", p) for p in rule.paths]
    if volume is not None:
        found = [s for s in found if s.kind == "volume" and s.name == volume]
    return found


def check_paths(rule: Backup, folders: list[str], policy: Policy) -> list[str]:
    """Why the rule's host paths may not be used now (resolved again: links may have moved);
    ``folders``: the rule's destinations on this host."""
    problems = [p for p in (policy.check(path) for path in rule.paths) if p]
    for folder in rule.folders:
        problem = policy.check(folder)
        if problem:
            problems.append(problem)
    for destination in folders:
        real_dest = os.path.realpath(destination)
        for path in rule.paths:
            if is_under(real_dest, os.path.realpath(path)):
                problems.append(f"the destination {destination} lies inside the backed-up {path}")
    return problems


def run_rule(
    engine: Engine | None,
    project: str,
    name: str,
    rule: Backup,
    take: Take,
    options: Options,
    volume: str | None = None,
    journal: Journal | None = None,
) -> list[Taken]:
    """Hooks before; each source (quiesced if asked); hooks after, whatever happened.
    ``journal`` records the containers a quiesce stops, for a run killed meanwhile."""
    options = dataclasses.replace(options, policy=name, spec_hash=spec_hash(rule))
    sources = sources_of(rule, volume)
    taken: list[Taken] = []
    try:
        error = _hooks(engine, name, "before", rule.hooks.before)
        if error:
            return [Taken(name, s, error=error) for s in sources]
        for source in sources:
            taken.append(_one(engine, name, rule, source, take, options, journal))
    finally:
        error = _hooks(engine, name, "after", rule.hooks.after)
        if error:
            taken.append(Taken(name, Source("path", "-"), error=error))
    return taken


def _one(
    engine: Engine | None,
    name: str,
    rule: Backup,
    source: Source,
    take: Take,
    options: Options,
    journal: Journal | None,
) -> Taken:
    try:
        with _quiesced(engine, rule, source, journal):
            manifest = take(source, options)
        return Taken(name, source, manifest)
    except PlacesFailed as err:
        log.error("snapshot", policy=name, source=str(source), error=str(err))
        missed = tuple(err.missed.items())
        return Taken(name, source, err.manifest, error=f"{source}: {err}", missed=missed)
    except (BackupError, OSError) as err:
        log.error("snapshot", policy=name, source=str(source), error=str(err))
        return Taken(name, source, error=f"{source}: {err}")
    except Exception as err:  # the engine's errors, and anything else: report, go on
        log.error("snapshot", policy=name, source=str(source), error=str(err))
        return Taken(name, source, error=f"{source}: {type(err).__name__}: {err}")


@contextlib.contextmanager
def _quiesced(
    engine: Engine | None, rule: Backup, source: Source, journal: Journal | None
) -> Iterator[None]:
    if not rule.quiesce or engine is None:
        yield
        return
    kind = {"volume": source.name} if source.kind == "volume" else {"path": source.name}
    running = [u for u in engine_io.users(engine, **kind) if u.running]
    with engine_io.stopped(engine, running, journal):
        yield


def _hooks(engine: Engine | None, rule: str, when: str, hooks: list[Hook]) -> str:
    """Run hooks in order; the error that stops them (``on_error: fail``), else ``""``."""
    for hook in hooks:
        if engine is None:
            return f"hook in {hook.container} needs the Docker engine"
        error = engine_io.run_hook(engine, hook)
        log.log(
            40 if error else 20,
            "hook",
            policy=rule,
            when=when,
            container=hook.container,
            command=hook.command[0],
            **({"error": error} if error else {}),
        )
        if error and hook.on_error == "fail":
            return f"{when} hook: {error}"
    return ""
