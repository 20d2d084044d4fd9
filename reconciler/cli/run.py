"""``dsr run PATH``: the daemon. Parses its flags and hands everything to ``reconciler.daemon``."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from reconciler.cli import cli
from reconciler.cli.commands import pass_request
from reconciler.cli.options import Settings, global_options
from reconciler.escape import has_control

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds from ``60``, ``90s``, ``5m``, ``1h30m`` or ``250ms``; ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _PART.sub("", text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))


class Duration(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration: seconds (60) or 90s, 5m, 1h", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be more than zero", param, ctx)
        return seconds


def _global_args(settings: Settings) -> tuple[str, ...]:
    """The global options again, for the backup commands the daemon runs as subprocesses."""
    # --last-good: a scheduled backup runs from the spec the daemon enforces (the last one
    # that loaded whole), not from files on disk that may be broken since.
    args = ["--state-dir", settings.resolved_state_dir(), "--log-format", "json", "--last-good"]
    for flag, value in (
        ("--docker-host", settings.docker_host),
        ("--project", settings.project),
        ("--policy", settings.policy),
        ("--host", settings.host),
    ):
        if value:
            args += [flag, value]
    args += ["--engine-timeout", f"{settings.engine_timeout:g}"]
    args += ["--lock-timeout", f"{settings.lock_timeout:g}"]
    return tuple(args)


def _check_addr(value: str | None) -> str | None:
    """``HOST:PORT`` with a port from 0 to 65535 (``[::1]:9100`` for IPv6)."""
    if value is None:
        return None
    _, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535 or has_control(value):
        raise click.BadParameter(
            f"{value!r} is not HOST:PORT with a port from 0 to 65535", param_hint="--metrics-addr"
        )
    return value


def _check_urls(urls: tuple[str, ...]) -> tuple[str, ...]:
    from reconciler.daemon.alerts import check_url

    for url in urls:
        problem = check_url(url)
        if problem:
            raise click.BadParameter(problem, param_hint="--notify")
    return urls


@cli.command("run")
@click.argument("path", type=click.Path())
@click.option("--interval", type=Duration(), default="60", help="Seconds between timer passes.")
@click.option(
    "--git-pull", type=Duration(), help="Fast-forward the spec's git checkout this often."
)
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    callback=lambda ctx, param, value: _check_addr(value),
    help="Serve /healthz, /readyz, /metrics, the status page / and /status.json.",
)
@click.option("--allow-empty", is_flag=True, help="Let an empty spec delete the whole project.")
@click.option("--suspend-file", metavar="FILE", help="While FILE exists, apply nothing.")
@click.option("--pass-timeout", type=Duration(), default="5m", help="Deadline of one pass.")
@click.option("--workers", type=click.IntRange(1, 32), default=4, help="Changes run at once.")
@click.option(
    "--notify",
    "notify_urls",
    metavar="URL",
    multiple=True,
    callback=lambda ctx, param, urls: _check_urls(urls),
    help="POST a JSON event here for failed passes, blocked changes, failed or late "
    "backups, failed git pulls (repeatable).",
)
@global_options
def run_command(
    settings: Settings,
    path: str,
    interval: float,
    git_pull: float | None,
    metrics_addr: str | None,
    allow_empty: bool,
    suspend_file: str | None,
    pass_timeout: float,
    workers: int,
    notify_urls: tuple[str, ...],
) -> None:
    """Keep the engine converged to PATH: on start, file changes, Docker events, a timer."""
    from reconciler.daemon import Daemon, DaemonOptions

    settings.configure_logs()
    options = DaemonOptions(
        request=pass_request(settings, path, apply=True, workers=workers),
        interval=interval,
        git_pull=git_pull,
        metrics_addr=metrics_addr,
        allow_empty=allow_empty,
        suspend_file=suspend_file,
        pass_timeout=pass_timeout,
        global_args=_global_args(settings),
        notify=notify_urls,
    )
    try:
        daemon = Daemon(options)
    except (OSError, ValueError, OverflowError) as err:  # the address is taken or invalid
        raise click.ClickException(f"cannot listen on {metrics_addr}: {err}") from err
    sys.exit(daemon.run())
