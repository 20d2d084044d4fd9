"""The ``dsr`` command line. Sits on top of everything; nothing imports it.

Exit codes follow the contract: 0 success, 1 error (usage errors included, so that a
usage error can never pass for ``--detailed-exitcode``'s 2). Each command module
registers its commands on ``cli``; the Docker client, the planner and the applier are
imported by the commands that use them, so that ``dsr validate`` and ``--help`` start fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from reconciler.cli.options import GROUP_OPTIONS, Settings
from reconciler.errors import DsrError, SpecError


def _group_options(func: Any) -> Any:
    for option in reversed(GROUP_OPTIONS):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_group_options
@click.version_option(package_name="docker-storage-reconciler", prog_name="dsr")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """dsr: declarative, GitOps-style reconciler for Docker storage."""
    ctx.obj = Settings(**options)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsr`` and ``python -m reconciler``."""
    try:
        cli.main(args=argv, prog_name="dsr", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(1)
    except DsrError as err:
        report(err)
        sys.exit(1)
    sys.exit(0)


def report(err: DsrError) -> None:
    """A spec error as validate prints it (one ``FILE:LINE: path: message`` each), else one line."""
    if isinstance(err, SpecError):
        for issue in err.issues:
            click.echo(str(issue), err=True)
    else:
        click.echo(f"dsr: {err}", err=True)


# The command modules register themselves on `cli`.
from reconciler.cli import backup, commands, importing, run  # noqa: E402

__all__ = ["backup", "cli", "commands", "importing", "main", "run"]
