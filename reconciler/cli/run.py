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
    envvar="DSR_METRICS_ADDR",
    callback=lambda ctx, param, value: _check_addr(value),
    help="Serve /healthz, /readyz, /metrics, the status page / and /status.json "
    "(also DSR_METRICS_ADDR, e.g. a Swarm template).",
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
@click.option(
    "--git",
    "git_url",
    metavar="URL",
    help="Clone (or reuse the clone of) this repository into the state directory; PATH is "
    "then a folder inside it. Pulls every --git-pull (default 60 s).",
)
@click.option("--ref", metavar="BRANCH", help="With --git: the branch (default: the remote's).")
@click.option(
    "--git-credentials",
    metavar="FILE",
    envvar="DSR_GIT_CREDENTIALS",
    help="With --git: a git credential-store file (https://user:token@host), e.g. a secret.",
)
@global_options
def run_command(
    settings: Settings,
    path: str,
    git_url: str | None,
    ref: str | None,
    git_credentials: str | None,
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
    if git_url is not None:
        path, git_pull = _clone(settings, git_url, ref, git_credentials, path, git_pull)
    elif ref is not None or git_credentials is not None:
        raise click.UsageError("--ref and --git-credentials go with --git URL")
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


def _clone(
    settings: Settings,
    url: str,
    ref: str | None,
    credentials: str | None,
    path: str,
    git_pull: float | None,
) -> tuple[str, float]:
    """Clone (or update) the repository in the state directory: the spec path inside it,
    and the pull interval (60 s unless given)."""
    from reconciler.cli import fail
    from reconciler.daemon.clone import CloneError, checkout, spec_path

    try:
        top = checkout(settings.resolved_state_dir(), url, ref, credentials)
        return spec_path(top, path), git_pull or 60.0
    except CloneError as err:
        fail(err)
