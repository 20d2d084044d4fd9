"""``dsr import compose`` and ``dsr import engine``: a spec for what already runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from reconciler.cli import cli
from reconciler.cli.options import Settings, global_options
from reconciler.importer.model import Imported

if TYPE_CHECKING:
    from reconciler.spec import Policy


@cli.group("import")
def import_group() -> None:
    """Write a dsr spec for objects that already exist (adopt: true)."""


def _emit(imported: Imported, out: str | None) -> None:
    from reconciler.importer.write import render, write

    for note in imported.notes:
        click.echo(str(note), err=True)
    if out is None:
        click.echo(render(imported), nl=False)
        return
    path = write(imported, out)
    click.echo(f"wrote {path}", err=True)


def _policy(settings: Settings) -> Policy:
    from reconciler.spec import load_policy

    return load_policy(
        settings.policy, (), docker_host=settings.docker_host, state_dir=settings.state_dir
    )


@import_group.command("compose")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--project-name", help="The compose project name (default: name:, else the folder).")
@click.option("--out", help="Write FOLDER/<project>.yaml instead of printing the spec.")
@click.option(
    "--naming",
    type=click.Choice(["v2", "v1"]),
    default="v2",
    help="Container names as Compose v2 makes them (project-service-1) or as the Python "
    "docker-compose 1.x did (project_service_1).",
)
@global_options
def import_compose_command(
    settings: Settings, files: tuple[str, ...], project_name: str | None, out: str | None,
    naming: str,
) -> None:  # fmt: skip
    """Write the spec of a compose project: its volumes, networks and containers by the
    names compose gave them, with adopt: true. Keys dsr cannot carry over are listed."""
    from reconciler.importer.compose import import_compose
    from reconciler.importer.compose_read import read_compose

    compose = read_compose(list(files))
    _emit(import_compose(compose, project_name, naming, _policy(settings)), out)


@import_group.command("engine")
@click.argument("names", nargs=-1)
@click.option(
    "--compose-project", help="Take the containers of this compose project (by its labels)."
)
@click.option("--out", help="Write FOLDER/<project>.yaml instead of printing the spec.")
@global_options
def import_engine_command(
    settings: Settings, names: tuple[str, ...], compose_project: str | None, out: str | None
) -> None:
    """Write the spec of containers on the engine (all, those NAMEd, or a compose
    project's) and of the volumes, binds and volume containers they use."""
    from reconciler.engine import Engine
    from reconciler.importer.engine import import_engine
    from reconciler.observe import inspect_for_import

    engine = Engine(settings.docker_host, timeout=settings.engine_timeout)
    try:
        found = inspect_for_import(engine, list(names), compose_project)
    finally:
        engine.close()
    project = settings.project or compose_project or "imported"
    _emit(import_engine(found, project, source=engine.url, policy=_policy(settings)), out)
