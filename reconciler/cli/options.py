"""Global options, shared by every command module, and the pass request they make."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import click

from reconciler.statedir import default_state_dir

if TYPE_CHECKING:
    from reconciler.logs import LogFormat  # structlog loads only when a command logs

F = TypeVar("F", bound=Callable[..., Any])


class Scope(TypedDict):
    """The global options a spec is loaded and checked with."""

    project: str | None
    policy_file: str | None
    docker_host: str | None
    state_dir: str


class Reach(Scope):
    """The global options of a request that talks to the engine."""

    engine_timeout: float
    lock_timeout: float
    host: str | None


@dataclass
class Settings:
    """Global options, given before or after the command name."""

    docker_host: str | None = None
    state_dir: str | None = None
    project: str | None = None
    policy: str | None = None
    log_format: LogFormat | None = None  # None: JSON lines unless stderr is a terminal
    # The daemon's backup subprocesses: the rules of the last spec that loaded whole.
    last_good: bool = False
    engine_timeout: float = 30.0
    lock_timeout: float = 60.0
    host: str | None = None

    def logs(self) -> LogFormat:
        """The log format: the one given, else console on a terminal and JSON lines
        elsewhere (a pipe, a CI log, journald), for every command alike."""
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"

    def configure_logs(self) -> None:
        from reconciler import logs

        logs.configure(self.logs())

    def resolved_state_dir(self) -> str:
        return self.state_dir or default_state_dir()

    def scope(self) -> Scope:
        """What loading a spec takes from the global options: the project, the host-path
        policy, and the socket and state directory that policy protects."""
        return {
            "project": self.project,
            "policy_file": self.policy,
            "docker_host": self.docker_host,
            "state_dir": self.resolved_state_dir(),
        }

    def request(self) -> Reach:
        """What every request that touches the engine takes from them (``scope`` and the
        engine's and the lock's deadlines)."""
        return {
            **self.scope(),
            "engine_timeout": self.engine_timeout,
            "lock_timeout": self.lock_timeout,
            "host": self.host,
        }


_NAMES = (
    "docker_host",
    "state_dir",
    "project",
    "policy",
    "log_format",
    "engine_timeout",
    "lock_timeout",
    "host",
)


class Seconds(click.ParamType[float]):
    """A number of seconds: finite, 0 or more, at most a year (``nan`` would compare false
    with every deadline and wait forever; ``inf`` is no deadline)."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0 <= seconds <= 366 * 86400:
            self.fail(f"{value!r} is not a number of seconds from 0 to a year", param, ctx)
        return seconds


def _state_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (
        "\0" in value or (os.path.lexists(value) and not os.path.isdir(value))
    ):
        raise click.BadParameter(f"{value!r} is not a folder", ctx, param)
    return value


_SECONDS = Seconds()


def _options(with_defaults: bool) -> tuple[Callable[[F], F], ...]:
    def default(value: object) -> object:
        return value if with_defaults else None

    return (
        click.option(
            "--docker-host", help="Engine address (default: DOCKER_HOST, then the local socket)."
        ),
        click.option(
            "--state-dir",
            callback=_state_dir,
            help="Where dsr keeps its state (default /var/lib/dsr for root).",
        ),
        click.option("--project", help="Project name when the spec does not set one."),
        click.option(
            "--policy", "policy", help="Admin host-path policy file (never in the spec directory)."
        ),
        click.option(
            "--log-format",
            type=click.Choice(["json", "console"]),
            help="Log format on stderr (default: console on a terminal, else JSON lines).",
        ),
        click.option(
            "--engine-timeout",
            type=_SECONDS,
            default=default(30.0),
            help="Seconds each Engine API call may take (default 30).",
        ),
        click.option(
            "--lock-timeout",
            type=_SECONDS,
            default=default(60.0),
            help="Seconds to wait for another dsr holding the lock (default 60; 0: none).",
        ),
        click.option(
            "--host",
            "host",
            metavar="NAME",
            help="Act on this host's share of the spec (default: the engine's name).",
        ),
    )


GROUP_OPTIONS = _options(with_defaults=True)


def global_options(func: F) -> F:
    """Accept the global options on a command too, overriding the group's values."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings: Settings = click.get_current_context().ensure_object(Settings)
        for name in _NAMES:
            value = kwargs.pop(name)
            if value is not None:
                setattr(settings, name, value)
        return func(settings, *args, **kwargs)

    for option in reversed(_options(with_defaults=False)):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


FORMATS = ("text", "json", "markdown")
FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="text", help="Output format."
)
