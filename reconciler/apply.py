"""The applier: runs a plan's changes against the engine, deciding nothing.

Its scheduler runs changes as soon as what they depend on has succeeded, several at a time;
a failed change is reported, the changes that depend on it are skipped, independent ones go
on. Each change is its planned operations, run in order by ``reconciler.execute`` (one
executor per kind of operation). "Already so" counts as success, so an interrupted apply is
finished by the next one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import docker.errors

from reconciler import logs
from reconciler.engine import Engine, timed_out
from reconciler.execute import Executors
from reconciler.plan.model import Change, Plan, Status
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.apply")


@dataclass(frozen=True)
class Outcome:
    """How one change went."""

    change: Change
    status: Status
    seconds: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # "ok" read as Status.OK


Progress = Callable[[Outcome, int, int], None]


@dataclass(frozen=True)
class TerminalProgress:
    """A progress callback that tells a person each finished change. The change's own
    event would say it a second time, so it is logged at debug level; any other callback
    (the daemon's watchdog) leaves the events as they are."""

    show: Progress

    def __call__(self, outcome: Outcome, done: int, total: int) -> None:
        self.show(outcome, done, total)


def apply_plan(
    engine: Engine,
    plan: Plan,
    *,
    workers: int = 4,
    progress: Progress | None = None,
    pass_id: str | None = None,
    state: StateDir | None = None,
    should_stop: Callable[[], bool] | None = None,
    run: Callable[[Change], None] | None = None,
) -> list[Outcome]:
    """Run every actionable change of ``plan``; return how each went, in plan order.

    No change is started once a call has timed out (the engine is not answering) or
    ``should_stop()`` is true (the daemon stopping, or its pass deadline passed): those
    running finish, the rest are skipped for the next pass. ``state`` is where a volume
    migration records its backup. ``run`` runs one change (by default its operations,
    through ``reconciler.execute``): the scheduler's tests give their own.
    """
    changes = list(plan.actionable)
    by_resource = {c.resource: c for c in changes}
    outcomes: dict[str, Outcome] = {}
    pending = list(changes)
    running: dict[Future[None], Change] = {}
    executor = Executors(engine, plan.project, state)
    seconds: dict[str, float] = {}

    def timed(change: Change) -> None:
        started = time.monotonic()
        try:
            (run or executor.run_change)(change)
        finally:
            seconds[change.resource] = time.monotonic() - started

    pass_id = pass_id or uuid.uuid4().hex[:12]
    stalled = ""  # set once a call timed out: the engine is not answering, start nothing
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            stop = stalled
            if pending and not stop and should_stop is not None and should_stop():
                stop = "stopped before it started"
            if pending and stop:
                for change in pending:
                    outcome = Outcome(change, Status.SKIPPED, error=stop)
                    _record(outcomes, outcome, pass_id, len(changes), progress)
                pending.clear()
            for change in list(pending):
                if len(running) >= workers:
                    # Submit no more than run at once: every wait() below walks all the
                    # futures given it, and 1,000 queued ones made an apply quadratic.
                    break
                deps = [d for d in change.depends_on if d in by_resource]
                failed = [d for d in deps if d in outcomes and outcomes[d].status is not Status.OK]
                if failed:
                    pending.remove(change)
                    outcome = Outcome(
                        change, Status.SKIPPED, error=f"{', '.join(failed)} did not succeed"
                    )
                    _record(outcomes, outcome, pass_id, len(changes), progress)
                elif all(d in outcomes for d in deps):
                    pending.remove(change)
                    running[pool.submit(timed, change)] = change
            if not running:
                for change in pending:  # only a dependency cycle can leave these waiting
                    _record(
                        outcomes,
                        Outcome(change, Status.SKIPPED, error="dependency cycle"),
                        pass_id,
                        len(changes),
                        progress,
                    )
                pending.clear()
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                change = running.pop(future)
                error = future.exception()
                if error is not None and timed_out(error) and not stalled:
                    stalled = (
                        f"not started: {change.resource} got no answer from the engine within "
                        f"{engine.timeout:g} s (--engine-timeout)"
                    )
                outcome = Outcome(
                    change,
                    Status.FAILED if error else Status.OK,
                    seconds=seconds.get(change.resource, 0.0),
                    error=_message(error) if error else "",
                )
                _record(outcomes, outcome, pass_id, len(changes), progress)
    return [outcomes[c.resource] for c in changes]


def _record(
    outcomes: dict[str, Outcome],
    outcome: Outcome,
    pass_id: str,
    total: int,
    progress: Progress | None,
) -> None:
    outcomes[outcome.change.resource] = outcome
    if isinstance(progress, TerminalProgress):
        event = log.debug
    else:
        event = log.info if outcome.status is Status.OK else log.error
    event(
        "change",
        pass_id=pass_id,
        resource=outcome.change.resource,
        action=outcome.change.action.value,
        outcome=outcome.status.value,
        duration_ms=round(outcome.seconds * 1000),
        **({"error": outcome.error} if outcome.error else {}),
    )
    if progress is not None:
        progress(outcome, len(outcomes), total)


def _message(error: BaseException) -> str:
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error)
    if timed_out(error):
        return "the engine did not answer in time (--engine-timeout)"
    return str(error) or type(error).__name__
