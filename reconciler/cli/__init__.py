"""The ``dsr`` command line. Sits on top of everything; nothing imports it.

Exit codes follow the contract: 0 done, 1 error (usage errors included, so that a usage
error can never pass for ``--detailed-exitcode``'s 2), 2 changes pending (``plan
--detailed-exitcode``, ``diff``), 3 ``apply`` finished with blocked changes and nothing
failed. Data goes to stdout, diagnostics to stderr; with ``--format json`` stdout holds
JSON even on error (``error_document``). Each command module
registers its commands on ``cli``; the Docker client, the planner and the applier are
imported by the commands that use them, so that ``dsr validate`` and ``--help`` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from reconciler.cli.options import GROUP_OPTIONS, Settings
from reconciler.errors import DsrError, SpecError
from reconciler.escape import escape_controls
from reconciler.spec.redact import Scrubbed


def _group_options(func: Any) -> Any:
    for option in reversed(GROUP_OPTIONS):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_group_options
@click.option(
    "--last-good",
    is_flag=True,
    hidden=True,
    help="Backup commands: take the backup rules the daemon last loaded from a valid spec.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _show_version(ctx) if value else None,
    help="Show the version and the git commit, then exit.",
)
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """dsr: declarative, GitOps-style reconciler for Docker storage."""
    ctx.obj = Settings(**options)


def _show_version(ctx: click.Context) -> None:
    from reconciler.version import describe

    click.echo(describe())
    ctx.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsr`` and ``python -m reconciler``."""
    if any("\0" in arg for arg in (sys.argv[1:] if argv is None else argv)):
        # execve cannot pass one; only a caller in-process can, and no path holds one
        click.echo("dsr: an argument contains a NUL character", err=True)
        sys.exit(1)
    # One redaction at the edge: whatever a command prints, values from ${VAR} and env
    # values of the specs it loaded leave as the spec writes them.
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Scrubbed(out), Scrubbed(err)
    try:
        _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> None:
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
    except OSError as err:  # a full disk, a folder gone, a file dsr was told to use: one
        # line naming it, never a traceback
        where = f": {err.filename}" if err.filename else ""
        click.echo(escape_controls(f"dsr: {err.strerror or err}{where}"), err=True)
        sys.exit(1)
    except Exception as err:  # no command ends in a traceback; DSR_DEBUG=1 shows it
        if os.environ.get("DSR_DEBUG"):
            raise
        text = escape_controls(str(err).splitlines()[0] if str(err) else "")[:500]
        click.echo(f"dsr: internal error: {type(err).__name__}: {text}", err=True)
        sys.exit(1)
    sys.exit(0)


EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_BLOCKED = 0, 1, 2, 3


def report(err: DsrError, fmt: str = "text") -> None:
    """A spec error as validate prints it (one ``FILE:LINE: path: message`` each), else one
    line, on stderr; with ``fmt`` json, also the contract's error document on stdout."""
    if isinstance(err, SpecError):
        for issue in err.issues:
            click.echo(str(issue), err=True)
    else:
        click.echo(f"dsr: {err}", err=True)
    if fmt == "json":
        click.echo(json.dumps(error_document(err), indent=2))


def fail(err: DsrError, fmt: str = "text") -> NoReturn:
    """Report ``err`` (see ``report``) and exit 1."""
    report(err, fmt)
    sys.exit(EXIT_ERROR)


def error_document(err: DsrError) -> dict[str, Any]:
    """``{"format_version": 1, "error": {"message", "file", "line"}}``: the first spec
    issue's place (every issue under ``issues``), or no place for other errors."""
    if isinstance(err, SpecError) and err.issues:
        issues = [
            {
                "message": f"{i.path}: {i.message}" if i.path else i.message,
                "file": i.file,
                "line": i.line,
                "path": i.path,
            }
            for i in err.issues
        ]
        return {"format_version": 1, "error": {**issues[0], "issues": issues}}
    return {"format_version": 1, "error": {"message": str(err), "file": None, "line": None}}


# The command modules register themselves on `cli`.
from reconciler.cli import backup, commands, importing, run, status  # noqa: E402

__all__ = ["backup", "cli", "commands", "importing", "main", "run", "status"]
