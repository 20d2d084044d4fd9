"""The executors of volumes: create, remove, back up, restore, and a migration's record."""

from __future__ import annotations

import contextlib

import docker
import docker.errors

from reconciler.errors import ApplyError, PlanError
from reconciler.execute.core import Executors, Run, executes, log
from reconciler.labels import INSTANCE
from reconciler.plan import payloads as p
from reconciler.record import Migration
from reconciler.snapshot import new_instance


# -- volumes ----------------------------------------------------------------------------------
@executes(p.CreateVolume)
def create_volume(ex: Executors, run: Run, op: p.CreateVolume) -> None:
    if op.if_missing and volume_exists(ex, op.params.name):
        return
    ex.engine.create_volume(
        name=op.params.name,
        driver=op.params.driver,
        driver_opts=op.params.driver_opts,
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


def _spilling(ex: Executors) -> contextlib.AbstractContextManager[None]:
    """A backup's or restore's sorted runs in the state directory, when there is one."""
    from reconciler.backup import staging

    return staging.spilling(ex.state.staging) if ex.state is not None else contextlib.nullcontext()


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
    with _spilling(ex):
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
        with _spilling(ex):
            restoring.restore_volume(ex.engine, snapshot, op.volume, stop=False)
    except RuntimeError as err:
        raise ApplyError(f"{err}{op.hint}") from err
