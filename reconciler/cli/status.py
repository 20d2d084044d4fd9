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
@click.argument("path", type=click.Path(), required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@click.option(
    "--fleet",
    "inventory",
    metavar="INVENTORY",
    help="Ask every agent of this inventory for its /status.json; one table.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    help="With --fleet: seconds each agent may take to answer (default 5).",
)
@global_options
def status_command(
    settings: Settings, path: str | None, fmt: str, inventory: str | None, timeout: float
) -> None:
    """What dsr manages here and whether it is in sync. Exit 0 in sync, 2 differs, 1 error.

    With --fleet INVENTORY (no PATH): every host's agent, asked at once; a host that is down
    is reported as such. Exit 0 when all answer and are in sync, else 2."""
    if inventory is not None:
        _fleet(inventory, fmt, timeout)
    if path is None:
        raise click.UsageError("give a spec PATH, or --fleet INVENTORY")
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


def _fleet(inventory: str, fmt: str, timeout: float) -> None:
    from reconciler import fleetstatus
    from reconciler.spec.inventory import load_inventory

    try:
        hosts = load_inventory(inventory).hosts
    except DsrError as err:
        fail(err, fmt)
    agents = [fleetstatus.Agent(name, h.address) for name, h in sorted(hosts.items())]
    results = fleetstatus.fleet_status(agents, timeout)
    if fmt == "json":
        click.echo(json.dumps(fleetstatus.to_json(results), indent=1))
    else:
        click.echo(fleetstatus.to_text(results))
    sys.exit(EXIT_PENDING if fleetstatus.differs(results) else EXIT_OK)
