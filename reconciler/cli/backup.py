"""backup, backups list|prune|verify, restore: parse flags, call reconciler.backup, exit.

``dsr backup`` takes ``--policy RULE`` (a backup rule of the spec, as in the contract's
command table), so it cannot take the global ``--policy FILE`` after its name: the admin
policy file goes before the command (``dsr --policy FILE backup PATH``). Every other global
option works on either side, as for the other commands.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.cli import cli, fail
from reconciler.cli.options import _NAMES, Settings, _options, global_options
from reconciler.errors import DsrError
from reconciler.escape import escape_controls

if TYPE_CHECKING:
    from reconciler.backup.store import Snapshot
    from reconciler.request import Request

F = TypeVar("F", bound=Callable[..., Any])
VIA = click.Choice(["auto", "direct", "api"])
VIA_HELP = "How to read or write a volume: its directory (direct), the Engine API, or auto."


def _globals_but_policy(func: F) -> F:
    """``global_options`` without ``--policy`` (which names a backup rule here)."""
    options = dict(zip(_NAMES, _options(with_defaults=False), strict=True))
    names = [n for n in _NAMES if n != "policy"]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings: Settings = click.get_current_context().ensure_object(Settings)
        for name in names:
            value = kwargs.pop(name)
            if value is not None:
                setattr(settings, name, value)
        return func(settings, *args, **kwargs)

    for name in reversed(names):
        wrapper = options[name](wrapper)
    return wrapper  # type: ignore[return-value]


IDENTITY_HELP = "age identity file that reads encrypted snapshots (default: $DSR_AGE_IDENTITY)."


def _request(settings: Settings, path: str, identity: str | None = None) -> Request:
    from reconciler.request import Request

    settings.configure_logs()
    return Request(path=path, identity=identity, last_good=settings.last_good, **settings.request())


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int], None] | None]:
    """A byte counter with a rate on a terminal's stderr; nothing elsewhere."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    columns = (*Progress.get_default_columns()[:1], DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield Meter(bar, bar.add_task(what, total=None))


@dataclass(frozen=True)
class Meter:
    """Counts bytes on a rich progress bar; a restore tells it each phase and its size
    (``phase``), so a known total shows as one rather than ``?``."""

    bar: Any
    task: Any

    def __call__(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def phase(self, what: str, total: int | None) -> None:
        self.bar.reset(self.task, total=total, description=what)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@cli.command("backup")
@click.argument("path", type=click.Path())
@click.option("--policy", "rule", help="Only this backup rule of the spec (default: all).")
@click.option("--volume", help="Only this volume (of the rules that list it).")
@click.option("--time", "when", help="Record this ISO 8601 time instead of now (as restic's).")
@click.option("--via", type=VIA, default="auto", help=VIA_HELP, hidden=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    help="json: each source's snapshot, error and the destinations it missed, on stdout.",
)
@_globals_but_policy
def backup_command(
    settings: Settings,
    path: str,
    rule: str | None,
    volume: str | None,
    when: str | None,
    via: str,
    fmt: str,
) -> None:
    """Back up now: one snapshot per source of each backup rule."""
    from reconciler.backup.ops import backup

    try:
        with _progress("backing up") as progress:
            taken = backup(
                _request(settings, path),
                rule=rule,
                volume=volume,
                time=when,
                via=via,
                progress=progress,
            )
    except DsrError as err:
        fail(err, fmt)
    failed = [t for t in taken if t.error]
    if fmt == "json":
        click.echo(json.dumps({"format_version": 1, "backups": [_taken(t) for t in taken]}))
    for t in taken:
        m = t.manifest
        if m is not None and fmt == "text":
            click.echo(
                f"{t.policy}: {m.source} -> {m.id} ({_size(m.size)} in {m.files} files, "
                f"archive {_size(m.archive_size)}, {m.seconds:.1f}s, read {m.read_via})"
            )
    for t in failed:
        click.echo(f"dsr: backup rule {t.policy}: {t.error}", err=True)
    if failed:
        sys.exit(1)


def _taken(t: Any) -> dict[str, object]:
    """One source's outcome: its snapshot (also when some destinations missed it, listed
    in ``missed`` with why), or only the error that stopped it."""
    m = t.manifest
    done: dict[str, object] = {"policy": t.policy, "source": str(t.source)}
    if m is not None:
        done.update(id=m.id, size=m.size, files=m.files, archive_size=m.archive_size)
        done.update(sha256=m.sha256, seconds=m.seconds)
    if t.error:
        done["error"] = t.error
    done["missed"] = [{"destination": url, "error": why} for url, why in t.missed]
    return done


@cli.group("backups")
def backups_group() -> None:
    """List, prune and verify the snapshots of a spec's backup rules."""


@backups_group.command("list")
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--identity", type=click.Path(dir_okay=False), help=IDENTITY_HELP)
@global_options
def list_command(settings: Settings, path: str, fmt: str, identity: str | None) -> None:
    """List snapshots, per rule and source, newest first."""
    from reconciler.backup.ops import listing_all

    try:
        snapshots, damaged = listing_all(_request(settings, path, identity))
    except DsrError as err:
        fail(err, fmt)
    if fmt == "json":
        rows: list[dict[str, object]] = [
            {**s.listing(), **({"problem": s.problem} if s.problem else {})} for s in snapshots
        ]
        rows += [{**d, "size": None, "files": None, "sha256": None} for d in damaged]
        # One line per snapshot, each by the C encoder: indent=2 takes Python's own, a
        # second for 10,000 snapshots.
        body = ",\n".join("    " + json.dumps(row) for row in rows)
        click.echo(
            '{\n  "format_version": 1,\n  "backups": [' + (f"\n{body}\n  " if rows else "") + "]\n}"
        )
    else:
        _table(snapshots, damaged)
    for problem in snapshots.problems:
        click.echo(f"dsr: {problem}", err=True)
    if snapshots.problems:
        sys.exit(1)


def _table(snapshots: list[Snapshot], damaged: Sequence[Mapping[str, str | None]] = ()) -> None:
    """Aligned columns, one line per snapshot (every cell escaped). Plain text, not a rich
    table: rich measures every cell of every row, seconds for 10,000 snapshots."""
    if not snapshots and not damaged:
        click.echo("no backups")
        return
    where = any(s.place is not None and s.place.remote for s in snapshots)
    columns = ("id", "policy", "source", "time", "size", "files", "status")
    rows: list[tuple[str, ...]] = [(*columns, *(("destination",) if where else ()))]
    for s in snapshots:
        m = s.manifest
        status = s.status if not s.problem else f"{s.status}: {s.problem}"
        row: tuple[str, ...] = (
            m.id,
            m.policy,
            m.source,
            m.time.isoformat(),
            _size(m.size),
            str(m.files),
            status,
        )
        if where:
            row = (*row, s.place.url if s.place is not None else "")
        rows.append(tuple(escape_controls(cell) for cell in row))
    for d in damaged:
        cells = (d["id"] or "?", "?", "?", "?", "?", "?", f"{d['status']}: {d['problem']}")
        rows.append(tuple(escape_controls(c) for c in cells + (("?",) if where else ())))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = (
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )
    click.echo("\n".join(line.rstrip() for line in lines))


@backups_group.command("prune")
@click.argument("path", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--identity", type=click.Path(dir_okay=False), help=IDENTITY_HELP)
@global_options
def prune_command(
    settings: Settings, path: str, dry_run: bool, fmt: str, identity: str | None
) -> None:
    """Apply the keep rules (restic's forget semantics) and remove what they drop."""
    from reconciler.backup.ops import prune

    try:
        result = prune(_request(settings, path, identity), dry_run=dry_run)
    except DsrError as err:
        fail(err, fmt)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for s, reasons in result.keep:
        click.echo(f"keep   {s.id} ({s.manifest.source}): {', '.join(reasons)}")
    verb = "would remove" if dry_run else "removed"
    for s in result.remove:
        click.echo(f"{verb} {s.id} ({s.manifest.source})" + (f": {s.problem}" if s.problem else ""))
    for folder in result.unfinished:
        click.echo(f"{verb} unfinished {folder!r}")


@backups_group.command("verify")
@click.argument("path", type=click.Path())
@click.option("--backup", "backup_id", help="Only this snapshot id.")
@click.option("--identity", type=click.Path(dir_okay=False), help=IDENTITY_HELP)
@global_options
def verify_command(
    settings: Settings, path: str, backup_id: str | None, identity: str | None
) -> None:
    """Re-read archives: check their sha256 and the digest of their tree."""
    from reconciler.backup.ops import verify

    results = verify(_request(settings, path, identity), backup_id)
    # Every result is data (stdout); each failure is also a diagnostic (stderr).
    for snapshot, problem in results:
        click.echo(f"FAILED {snapshot.id}: {problem}" if problem else f"ok     {snapshot.id}")
    failed = [(snapshot, problem) for snapshot, problem in results if problem]
    for snapshot, problem in failed:
        click.echo(f"dsr: {snapshot.id} failed verification: {problem}", err=True)
    if failed:
        sys.exit(1)


@cli.command("restore")
@click.argument("path", type=click.Path())
@click.argument("volume")
@click.option("--backup", "backup_id", default="latest", help="Snapshot id, or latest.")
@click.option("--into", help="Restore into this new volume (or folder) instead.")
@click.option("--stop", is_flag=True, help="Stop running users of the volume, then restart them.")
@click.option("--via", type=VIA, default="auto", help=VIA_HELP, hidden=True)
@click.option("--identity", type=click.Path(dir_okay=False), help=IDENTITY_HELP)
@click.option(
    "--trust-unsigned",
    is_flag=True,
    help="Accept snapshots whose manifest this state directory's backup-key did not sign "
    "(a new host after the old one and its state directory are gone). Their archives are "
    "still checked against their manifests.",
)
@global_options
def restore_command(
    settings: Settings,
    path: str,
    volume: str,
    backup_id: str,
    into: str | None,
    stop: bool,
    via: str,
    identity: str | None,
    trust_unsigned: bool,
) -> None:
    """Restore VOLUME (or a backed-up host folder) from a snapshot, verified by checksum."""
    from reconciler.backup.ops import restore

    with _progress("restoring") as progress:
        snapshot = restore(
            _request(settings, path, identity),
            volume,
            backup_id=backup_id,
            into=into,
            stop=stop,
            via=via,
            progress=progress,
            trust_unsigned=trust_unsigned,
        )
    click.echo(f"restored {snapshot.id} into {into or volume}; its tree digest matches")
