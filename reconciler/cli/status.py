"""``dsr status PATH``: every resource in sync or not, the last pass, backups, the daemon."""

from __future__ import annotations

import json
import socket
import sys
import time

import click

from reconciler.cli import EXIT_OK, EXIT_PENDING, cli, fail
from reconciler.cli.commands import load_with
from reconciler.cli.options import Settings, global_options
from reconciler.errors import DsrError


@cli.command("status")
@click.argument("path", type=click.Path())
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@global_options
def status_command(settings: Settings, path: str, fmt: str) -> None:
    """What dsr manages here and whether it is in sync. Exit 0 in sync, 2 differs, 1 error."""
    from reconciler import lastpass
    from reconciler.engine import Engine
    from reconciler.hostinfo import engine_host
    from reconciler.reconcile import compute_plan, host_share, pack_images
    from reconciler.statedir import StateDir
    from reconciler.status import Status, backup_states, resource_states, to_text
    from reconciler.statusread import daemon_of, safe_newest_backups

    try:
        desired = load_with(settings, path)
        state = StateDir(settings.resolved_state_dir())
        engine = Engine(settings.docker_host, timeout=settings.engine_timeout)
        try:
            # This host's share of the spec (--host, else the engine's name), as plan has it.
            desired = host_share(desired, engine, settings.host)
            # Read-only: no lock, no manifest written, nothing applied.
            the_plan, _ = compute_plan(engine, desired, pack_images(desired, None), state)
            host = engine_host(engine, settings.host).name or socket.gethostname()
        finally:
            engine.close()
    except DsrError as err:
        fail(err, fmt)  # with --format json, the contract's error document on stdout
    newest, problem = safe_newest_backups(desired, state)
    pid, suspended = daemon_of(state, engine.url, desired.project)
    status = Status(
        project=desired.project,
        host=host,
        resources=resource_states(desired, the_plan.changes),
        backups=backup_states(desired, newest),
        last_pass=lastpass.read(state, desired.project),
        daemon_pid=pid,
        suspended=suspended,
        observed_at=time.time(),
        errors=(problem,) if problem else (),
    )
    now = time.time()
    if fmt == "json":
        click.echo(json.dumps(status.to_json(now), indent=1))
    else:
        click.echo(to_text(status, now))
    sys.exit(EXIT_PENDING if status.differs(now) else EXIT_OK)
