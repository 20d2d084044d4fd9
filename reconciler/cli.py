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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.errors import DsrError, SpecError
from reconciler.spec import Desired, describe_counts, load_policy, load_spec

if TYPE_CHECKING:
    from reconciler.apply import Outcome, Progress
    from reconciler.engine import Engine
    from reconciler.plan import Plan

# The Docker client, the planner, the applier and the log set-up are imported by the
# commands that use them, so that `dsr validate` and `dsr --help` start quickly.
FORMATS = ("text", "json", "markdown")

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


def engine_for(settings: Settings) -> Engine:
    from reconciler.engine import Engine

    return Engine(settings.docker_host)


def planned(settings: Settings, engine: Engine, desired: Desired) -> Plan:
    """Hash the data-packed images' contexts, observe the engine, and plan."""
    from reconciler.reconcile import compute_plan, pack_images

    state_dir = settings.resolved_state_dir()
    packed = pack_images(desired, state_dir)
    return compute_plan(
        engine,
        desired,
        {key: image.tag for key, image in packed.items()},
        manifests={image.tag: image.manifest for image in packed.values()},
        state_dir=state_dir,
    )


def offline_plan(old: Desired, new: Desired) -> Plan:
    """``dsr diff``: the plan from ``old`` applied to ``new``, with no engine and no state."""
    from reconciler.plan import plan
    from reconciler.plan.simulate import simulate
    from reconciler.reconcile import pack_images

    old_packed, new_packed = pack_images(old, None), pack_images(new, None)
    manifests = {i.tag: i.manifest for i in [*old_packed.values(), *new_packed.values()]}
    before = simulate(old, {key: image.tag for key, image in old_packed.items()})
    tags = {key: image.tag for key, image in new_packed.items()}
    return plan(new, before, tags, manifests=manifests)


_FORMAT = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="text", help="Output format."
)


@cli.command("plan")
@click.argument("path", type=click.Path())
@_FORMAT
@click.option("--out", help="Save the plan to FILE, to apply it later with dsr apply FILE.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@global_options
def plan_command(
    settings: Settings, path: str, fmt: str, out: str | None, detailed_exitcode: bool
) -> None:
    """Compare the spec with the live engine and show the changes."""
    from reconciler.reconcile import names_of, save_plan
    from reconciler.render import render, render_json

    desired = load(settings, path)
    engine = engine_for(settings)
    the_plan = planned(settings, engine, desired)
    color = fmt == "text" and sys.stdout.isatty() and not out
    if out:
        save_plan(out, the_plan, names_of(desired), json.loads(render_json(the_plan)))
        click.echo(render(the_plan, fmt, color=sys.stdout.isatty()))
        click.echo(f"\nSaved the plan to {out}; apply it with: dsr apply {out}")
    else:
        click.echo(render(the_plan, fmt, color=color))
    if the_plan.errors:
        sys.exit(1)
    if detailed_exitcode and the_plan.changes:
        sys.exit(2)


@cli.command("apply")
@click.argument("path", type=click.Path())
@click.option("--workers", type=click.IntRange(1, 32), default=4, help="Changes run at once.")
@global_options
def apply_command(settings: Settings, path: str, workers: int) -> None:
    """Converge the engine to the spec (or to a saved plan). Never asks anything."""
    from reconciler import logs
    from reconciler.apply import apply_plan
    from reconciler.reconcile import check_fresh, read_saved_plan
    from reconciler.render import render

    logs.configure(settings.log_format)  # type: ignore[arg-type]
    saved = read_saved_plan(path)
    if saved is not None:
        the_plan, names = saved
        engine = engine_for(settings)
        check_fresh(engine, the_plan, names)
    else:
        desired = load(settings, path)  # an invalid spec stops here, before any engine call
        engine = engine_for(settings)
        the_plan = planned(settings, engine, desired)
    click.echo(render(the_plan, "text", color=sys.stdout.isatty()))
    if not the_plan.actionable:
        sys.exit(1 if the_plan.errors or the_plan.changes else 0)
    outcomes = apply_plan(engine, the_plan, workers=workers, progress=progress_printer())
    failed = [o for o in outcomes if o.status != "ok"]
    blocked = len(the_plan.changes) - len(the_plan.actionable)
    click.echo(
        f"\nApplied {len(outcomes) - len(failed)} of {len(outcomes)} changes"
        + (f"; {len(failed)} failed or skipped" if failed else "")
        + (f"; {blocked} blocked" if blocked else "")
        + "."
    )
    for outcome in failed:
        click.echo(f"  {outcome.change.resource}: {outcome.status}: {outcome.error}", err=True)
    if failed or blocked or the_plan.errors:
        sys.exit(1)


def progress_printer() -> Progress | None:
    """One line per finished change, on a terminal only."""
    if not sys.stderr.isatty():
        return None

    def show(outcome: Outcome, done: int, total: int) -> None:
        mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[outcome.status]
        click.echo(
            f"[{done}/{total}] {outcome.change.action.value} {outcome.change.resource}: {mark}"
            f" ({outcome.seconds:.1f}s)",
            err=True,
        )

    return show


@cli.command("diff")
@click.argument("old_path", type=click.Path())
@click.argument("new_path", type=click.Path())
@_FORMAT
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@global_options
def diff_command(
    settings: Settings, old_path: str, new_path: str, fmt: str, detailed_exitcode: bool
) -> None:
    """Offline: the plan from the OLD spec to the NEW one, for pull requests."""
    old = load(settings, old_path)
    new = load(settings, new_path)
    if old.project != new.project and old.project_from_folder:
        # OLD is the same spec set at another revision, often checked out in a folder of
        # another name: that folder's name says nothing about the project its objects have.
        old = replace(old, project=new.project)
    the_plan = offline_plan(old, new)
    from reconciler.render import render

    click.echo(render(the_plan, fmt, color=fmt == "text" and sys.stdout.isatty()))
    if the_plan.errors:
        sys.exit(1)
    if detailed_exitcode and the_plan.changes:
        sys.exit(2)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of spec files, for editors."""
    from reconciler.spec.schema import spec_schema

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
    except SpecError as err:  # one FILE:LINE: spec.path: message line each, as validate
        for issue in err.issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    except DsrError as err:
        click.echo(f"dsr: {err}", err=True)
        sys.exit(1)
    sys.exit(0)
