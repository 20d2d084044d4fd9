"""The ``dsr`` command line. Sits on top of everything; nothing imports it.

Exit codes follow the contract: 0 success, 1 error (usage errors included, so that a
usage error can never pass for ``--detailed-exitcode``'s 2).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from reconciler import logs
from reconciler.errors import DsrError, SpecError
from reconciler.spec import Desired, describe_counts, load_policy, load_spec
from reconciler.spec.schema import spec_schema

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    """Global options, given before or after the command name."""

    docker_host: str | None = None
    state_dir: str | None = None
    project: str | None = None
    policy: str | None = None
    log_format: str = "console"

    def resolved_state_dir(self) -> str:
        if self.state_dir:
            return self.state_dir
        if os.environ.get("DSR_STATE_DIR"):
            return os.environ["DSR_STATE_DIR"]
        if os.geteuid() == 0:
            return "/var/lib/dsr"
        base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return os.path.join(base, "dsr")


_GLOBAL_OPTIONS = (
    click.option(
        "--docker-host", help="Engine address (default: DOCKER_HOST, then the local socket)."
    ),
    click.option(
        "--state-dir", help="Where dsr keeps backups and state (default /var/lib/dsr for root)."
    ),
    click.option("--project", help="Project name when the spec does not set one."),
    click.option(
        "--policy", "policy", help="Admin host-path policy file (never in the spec directory)."
    ),
    click.option(
        "--log-format", type=click.Choice(["json", "console"]), help="Log format on stderr."
    ),
)


def global_options(func: F) -> F:
    """Accept the global options on a command too, overriding the group's values."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings: Settings = click.get_current_context().ensure_object(Settings)
        for name in ("docker_host", "state_dir", "project", "policy", "log_format"):
            value = kwargs.pop(name)
            if value is not None:
                setattr(settings, name, value)
        logs.configure(settings.log_format)  # type: ignore[arg-type]
        return func(settings, *args, **kwargs)

    for option in reversed(_GLOBAL_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--docker-host")
@click.option("--state-dir")
@click.option("--project")
@click.option("--policy", "policy")
@click.option("--log-format", type=click.Choice(["json", "console"]), default="console")
@click.version_option(package_name="docker-storage-reconciler", prog_name="dsr")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """dsr: declarative, GitOps-style reconciler for Docker storage."""
    ctx.obj = Settings(**options)


def load(settings: Settings, path: str) -> Desired:
    """The spec set at ``path``, checked against the policy; raises ``SpecError``."""
    policy = load_policy(settings.policy, (path,))
    return load_spec(path, project=settings.project, policy=policy)


@cli.command()
@click.argument("path", type=click.Path())
@global_options
def validate(settings: Settings, path: str) -> None:
    """Check spec files offline: syntax, schema, references, host-path policy."""
    try:
        desired = load(settings, path)
    except SpecError as err:
        for issue in err.issues:
            click.echo(str(issue))
        sys.exit(1)
    click.echo(f"valid: {describe_counts(desired)} (project {desired.project})")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of spec files, for editors."""
    click.echo(json.dumps(spec_schema(), indent=2, sort_keys=False))


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
        click.echo(f"dsr: {err}", err=True)
        sys.exit(1)
    sys.exit(0)
