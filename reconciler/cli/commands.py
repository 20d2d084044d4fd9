"""validate, plan, apply, diff, schema: parse flags, run one pass, render, choose the exit."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import click

from reconciler.cli import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK, EXIT_PENDING, cli, fail
from reconciler.cli.options import FORMAT_OPTION, Settings, global_options
from reconciler.errors import DsrError, PlanError
from reconciler.escape import escape_controls
from reconciler.spec import Desired, describe_counts, load_checked

if TYPE_CHECKING:
    from reconciler.apply import Outcome, Progress
    from reconciler.plan import Plan
    from reconciler.reconcile import PassResult
    from reconciler.request import Request


def pass_request(settings: Settings, path: str, *, apply: bool, workers: int = 4) -> Request:
    from reconciler.request import Request

    return Request(path=path, apply=apply, workers=workers, **settings.request())


def load_with(
    settings: Settings, path: str, *, project_optional: bool = False, host_facts: bool = True
) -> Desired:
    """The spec set at ``path``, checked with the global options (policy, socket, state).
    ``host_facts=False``: where the spec is reviewed, not on its host (validate, diff)."""
    return load_checked(
        path, project_optional=project_optional, host_facts=host_facts, **settings.scope()
    )


def say_unchecked(desired: Desired, err: bool = False) -> None:
    """What validate and diff could not check where they run (host facts)."""
    for note in desired.unchecked:
        click.echo(f"not checked here: {escape_controls(note)}", err=err)


@cli.command()
@click.argument("path", type=click.Path())
@click.option(
    "--hosts", "inventory", metavar="FILE", help="Also check each inventory host's share."
)
@global_options
def validate(settings: Settings, path: str, inventory: str | None) -> None:
    """Check spec files offline: syntax, schema, references, host-path policy."""
    try:
        desired = load_with(settings, path, host_facts=False)
        _check_shares(settings, desired, inventory)
    except DsrError as err:
        fail(err)
    say_unchecked(desired)
    click.echo(f"valid: {describe_counts(desired)} (project {desired.project})")


def _check_shares(settings: Settings, desired: Desired, inventory: str | None) -> None:
    """Each named host's share resolves (``--hosts FILE``, or ``--host NAME`` without labels)."""
    from reconciler.spec.hosts import Host
    from reconciler.spec.inventory import load_inventory
    from reconciler.spec.share import shares

    hosts = load_inventory(inventory).host_list() if inventory else []
    if settings.host is not None:
        hosts.append(Host(settings.host))
    shares(desired, hosts)


@cli.command("plan")
@click.argument("path", type=click.Path())
@FORMAT_OPTION
@click.option("--out", help="Save the plan to FILE, to apply it later with dsr apply FILE.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@global_options
def plan_command(
    settings: Settings, path: str, fmt: str, out: str | None, detailed_exitcode: bool
) -> None:
    """Compare the spec with the live engine and show the changes."""
    from reconciler.reconcile import run_pass
    from reconciler.render import render
    from reconciler.saved import save
    from reconciler.statedir import StateDir

    settings.configure_logs()
    result = run_pass(pass_request(settings, path, apply=False))
    the_plan = _plan_or_exit(result, fmt)
    if out:
        if result.desired is None or result.observed is None:
            fail(PlanError("the plan was made without the engine, so it cannot be saved"), fmt)
        key = StateDir(settings.resolved_state_dir()).plan_key()
        save(out, the_plan, result.desired, result.observed, key)
        click.echo(render(the_plan, fmt, color=fmt == "text" and sys.stdout.isatty()))
        click.echo(f"Saved the plan to {out}; apply it with: dsr apply {out}", err=True)
    else:
        click.echo(render(the_plan, fmt, color=fmt == "text" and sys.stdout.isatty()))
    sys.exit(plan_exit(the_plan, detailed_exitcode))


def plan_exit(the_plan: Plan, detailed: bool) -> int:
    """1 when the plan holds errors; with ``--detailed-exitcode`` 2 when it holds changes."""
    if the_plan.errors:
        for error in the_plan.errors:
            click.echo(f"dsr: {escape_controls(error)}", err=True)
        return EXIT_ERROR
    return EXIT_PENDING if detailed and the_plan.changes else EXIT_OK


def _plan_or_exit(result: PassResult, fmt: str = "text") -> Plan:
    """The pass's plan; a pass stopped before it had one reports why and exits 1."""
    if result.plan is None:
        assert result.error is not None
        fail(result.error, fmt)
    return result.plan


@cli.command("apply")
@click.argument("path", type=click.Path())
@click.option("--workers", type=click.IntRange(1, 32), default=4, help="Changes run at once.")
@click.option(
    "--allow-empty", is_flag=True, help="Let a spec that declares nothing delete the project."
)
@global_options
def apply_command(settings: Settings, path: str, workers: int, allow_empty: bool) -> None:
    """Converge the engine to the spec (or to a saved plan). Never asks anything.

    Exit 0 converged, 1 an error or a failed change, 3 finished with blocked changes."""
    from reconciler.reconcile import run_pass
    from reconciler.render import render

    settings.configure_logs()
    shown: list[Plan] = []
    color = sys.stdout.isatty()

    def show(plan: Plan) -> bool:
        click.echo(render(plan, "text", color=color))
        shown.append(plan)
        return True

    request = replace(
        pass_request(settings, path, apply=True, workers=workers), refuse_empty=not allow_empty
    )
    empty = _empty_spec(settings, path) if allow_empty else None
    result = run_pass(request, desired=empty, progress=progress_printer(), before_apply=show)
    the_plan = _plan_or_exit(result)
    if not shown:  # nothing applied: the pass never asked
        click.echo(render(the_plan, "text", color=color))
    if result.error is not None:
        fail(result.error)
    sys.exit(apply_exit(result))


def _empty_spec(settings: Settings, path: str) -> Desired | None:
    """With ``--allow-empty``, a folder holding no spec files is an empty spec set (as for
    ``dsr run``) of the project ``--project`` or the folder's name; ``None`` otherwise."""
    import os

    from reconciler.spec.load import find_spec_files
    from reconciler.spec.resolve import compose_project_name

    if not os.path.isdir(path) or find_spec_files(path):
        return None
    project = settings.project or compose_project_name(path)
    return Desired(project=project) if project else None


def apply_exit(result: PassResult) -> int:
    """Print what the apply did (also when every change was blocked) and choose the exit:
    1 an error or a failed change, 3 blocked changes and nothing failed, else 0."""
    the_plan = result.plan
    assert the_plan is not None
    failed = result.failed
    blocked = len(the_plan.changes) - len(the_plan.actionable)
    if result.outcomes or blocked:
        applied = len(result.outcomes) - len(failed)
        click.echo(
            f"\nApplied {applied} of {plural(len(result.outcomes), 'change')}"
            + (f"; {len(failed)} failed or skipped" if failed else "")
            + (f"; {blocked} blocked" if blocked else "")
            + "."
        )
        for outcome in failed:
            click.echo(
                f"dsr: {outcome.change.resource}: {outcome.status}: {outcome.error}", err=True
            )
    for error in the_plan.errors:
        click.echo(f"dsr: {escape_controls(error)}", err=True)
    if the_plan.errors or failed or (the_plan.actionable and not result.outcomes):
        return EXIT_ERROR
    return EXIT_BLOCKED if blocked else EXIT_OK


def plural(count: int, word: str) -> str:
    """``1 change``, ``2 changes``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def progress_printer() -> Progress | None:
    """One line per finished change, on a terminal only."""
    if not sys.stderr.isatty():
        return None
    from reconciler.apply import TerminalProgress

    def show(outcome: Outcome, done: int, total: int) -> None:
        mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[outcome.status]
        click.echo(
            f"[{done}/{total}] {outcome.change.action.value} {outcome.change.resource}: {mark}"
            f" ({outcome.seconds:.1f}s)",
            err=True,
        )

    return TerminalProgress(show)


@cli.command("diff")
@click.argument("old_path", type=click.Path())
@click.argument("new_path", type=click.Path())
@FORMAT_OPTION
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option(
    "--hosts", "inventory", metavar="FILE", help="Inventory of hosts: one plan section per host."
)
@global_options
def diff_command(
    settings: Settings,
    old_path: str,
    new_path: str,
    fmt: str,
    detailed_exitcode: bool,
    inventory: str | None,
) -> None:
    """Offline: the plan from the OLD spec to the NEW one, for pull requests."""
    from reconciler.reconcile import offline_plan
    from reconciler.render import render
    from reconciler.spec.rebase import mapper, rebase, relative_to, roots

    # Relative paths of OLD resolve against OLD's own root, as NEW's against NEW's: the
    # same spec checked out in two folders names the same host paths (spec.rebase).
    old_root, new_root = roots(old_path, new_path)
    # OLD is the same spec set at another revision, often checked out in a folder whose
    # name is no project name (tmp.Xy12): its project comes from NEW below.
    try:
        try:
            old = load_with(settings, old_path, project_optional=True, host_facts=False)
        except DsrError as err:
            fail(unrooted(err, old_root, new_root, base=old_root != new_root), fmt)
        old = rebase(old, mapper(old_root, new_root))
        new = load_with(settings, new_path, host_facts=False)
        if old.project != new.project and old.project_from_folder:
            # OLD is the same spec set at another revision, often checked out in a folder of
            # another name: that folder's name says nothing about the project its objects have.
            old = replace(old, project=new.project)
        if inventory is not None:
            _fleet_diff(old, new, inventory, fmt, detailed_exitcode, (old_root, new_root))
        if settings.host is not None:  # one host's share, that host's labels unknown here
            from reconciler.spec.hosts import Host
            from reconciler.spec.share import share

            old, new = share(old, Host(settings.host)), share(new, Host(settings.host))
        the_plan = offline_plan(old, new)
    except DsrError as err:
        fail(unrooted(err, old_root, new_root), fmt)
    for note in (*old.unchecked, *new.unchecked):
        click.echo(
            f"not checked here: {relative_to(escape_controls(note), old_root, new_root)}", err=True
        )
    text = render(the_plan, fmt, color=fmt == "text" and sys.stdout.isatty())
    click.echo(relative_to(text, old_root, new_root))
    sys.exit(plan_exit(the_plan, detailed_exitcode))


def unrooted(err: DsrError, old_root: str, new_root: str, base: bool = False) -> DsrError:
    """``err`` with the checkouts' folders written relative in its messages, and OLD's
    files (``base``) named relative to OLD's root and said to be the base's: no runner's
    temporary folder lands in a pull-request comment. NEW's files are named as given."""
    from reconciler.errors import SpecError
    from reconciler.spec.rebase import relative_to

    if not isinstance(err, SpecError):
        return err
    issues = [
        replace(
            i,
            file=relative_to(i.file, old_root) if base else i.file,
            message=("in the base revision: " if base else "")
            + relative_to(i.message, old_root, new_root),
        )
        for i in err.issues
    ]
    return SpecError(issues)


def _fleet_diff(
    old: Desired,
    new: Desired,
    inventory: str,
    fmt: str,
    detailed: bool,
    roots: tuple[str, str],
) -> NoReturn:
    """One plan per inventory host; exits 1 when a host's share is invalid, else as plan."""
    from reconciler.fleet import fleet_plan
    from reconciler.render.fleet import render_fleet
    from reconciler.spec.inventory import load_inventory

    fleet = fleet_plan(old, new, load_inventory(inventory).host_list())
    from reconciler.spec.rebase import relative_to

    text = render_fleet(fleet, fmt, color=fmt == "text" and sys.stdout.isatty())
    click.echo(relative_to(text, *roots))
    if fleet.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_PENDING if detailed and fleet.changes else EXIT_OK)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of spec files, for editors."""
    from reconciler.spec.schema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2, sort_keys=False))
