"""``dsr run``: the loop that keeps one project converged, and what wakes it.

::

    spec files ─watch──┐
    Docker events ─────┤
    timer (± jitter) ──┼─▶ Trigger (one dirty flag) ─▶ take ─▶ run_pass(desired=last good)
    event reconnect ───┤                                        │ before_apply: suspend file,
    git pull, SIGHUP ──┘                                        │ refuse-empty, backoff
                                                                ▼
                                      metrics, health, sd_notify, backoff, own-event windows

Every pass goes through ``run_pass`` (habit 12): it observes, plans and applies afresh,
under the project's lock, so a CLI ``dsr apply`` and the daemon take turns. For its whole
life the daemon also holds ``<project>.daemon``, so a second daemon exits naming it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import structlog

from reconciler import logs
from reconciler.apply import Outcome
from reconciler.backup.ops import save_last_good
from reconciler.daemon import git
from reconciler.daemon.alerts import Notifier
from reconciler.daemon.backoff import Backoff, defer
from reconciler.daemon.events import Event, EventListener, OwnChanges, relevant
from reconciler.daemon.metrics import Health, Metrics, ProbeServer, resource_counts
from reconciler.daemon.notify import Watchdog, notify, watchdog_interval
from reconciler.daemon.page import Pages
from reconciler.daemon.report import Reporter
from reconciler.daemon.schedule import BackupRunner, CommandRunner, Scheduler
from reconciler.daemon.specs import SpecSource
from reconciler.daemon.trigger import Trigger
from reconciler.daemon.watch import SETTLE, SpecWatcher
from reconciler.engine import Engine, engine_url
from reconciler.errors import EngineError, LockError, SpecError, SpecIssue
from reconciler.hostinfo import engine_host
from reconciler.plan.model import Action, Plan, Risk, Status
from reconciler.reconcile import (
    PassResult,
    deletes_everything,
    host_share,
    names_of,
    run_pass,
)
from reconciler.request import Request
from reconciler.spec import Desired
from reconciler.statedir import StateDir, default_state_dir, locked

log = logs.get_logger("dsr.daemon")

ENGINE_BACKOFF_CAP = 30.0
LOCK_WAIT = 2.0
# The changes whose own events (destroy, die, stop, rename) the listener receives.
OWN_EVENT_ACTIONS = frozenset({Action.REPLACE, Action.DELETE})
RELOAD_REASONS = frozenset({"file", "git", "hup"})  # run() loaded it at start


@dataclass(frozen=True)
class DaemonOptions:
    """``dsr run``'s flags; ``request`` carries the global options of every pass."""

    request: Request
    interval: float = 60.0
    git_pull: float | None = None
    metrics_addr: str | None = None
    allow_empty: bool = False
    suspend_file: str | None = None
    pass_timeout: float = 300.0
    jitter: float = 0.1
    global_args: tuple[str, ...] = ()  # for the backup subprocesses
    notify: tuple[str, ...] = ()  # --notify URLs


class Daemon:
    """One daemon; ``run()`` returns the exit code (0 once stopped by a signal)."""

    def __init__(self, options: DaemonOptions, backup_runner: BackupRunner | None = None):
        self.options = options
        # A pass waits for a CLI `dsr apply` holding the lock only briefly, then tries again
        # a second later: a long wait would hold SIGTERM up for as long.
        self.request = dataclasses.replace(
            options.request,
            apply=True,
            accept_saved_plan=False,
            lock_timeout=min(options.request.lock_timeout, LOCK_WAIT),
            record_pass=False,  # recorded with the daemon's own result (suspended...)
        )
        self.stop = threading.Event()
        self.trigger = Trigger()
        self.metrics = Metrics()
        self.health = Health(options.interval)
        self.own = OwnChanges()
        self.backoff = Backoff()
        self.specs = SpecSource(self.request, options.allow_empty)
        self.top = git.work_tree(self.request.path)
        self.url = engine_url(self.request.docker_host)
        self.engine: Engine | None = None
        self.engine_failures = 0
        self.retry_at: float | None = None
        self.passes = 0
        self._project = ""
        self._names: set[str] = set()
        self._generation = -1
        self._pending: set[str] = set()  # changes the last pass planned and did not finish
        self._gate_result = ""
        self._last_label = ""
        self._own_counted = 0
        self._desired: Desired | None = None
        self.state = StateDir(self.request.state_dir or default_state_dir())
        notifier = Notifier(
            options.notify,
            lambda: self._project,
            socket.gethostname(),
            self.stop,
            counted=lambda event, outcome: self.metrics.notifications.labels(event, outcome).inc(),
        )
        self.reporter = Reporter(self.state, socket.gethostname(), notifier, options.suspend_file)
        self.health.suspended = self.reporter.suspended
        self._shared: tuple[Desired, Desired] | None = None  # (spec in force, this host's share)
        self._share_issues: tuple[SpecIssue, ...] = ()
        self._host_name: str | None = None
        runner = backup_runner or CommandRunner(
            self.request.path,
            options.global_args,
            self.metrics.set_backups,
            self._backup_failed,
            project=lambda: self._project,
            on_missed=lambda rule, where: self.metrics.backup_missed.labels(rule, where).inc(),
        )
        self.scheduler = Scheduler(runner, self.stop)
        self.listener = EventListener(
            self.url, self._on_event, self._on_connect, self._on_disconnect, self.stop
        )
        self.pages = Pages(self.reporter.serving)
        self.server = (
            ProbeServer(options.metrics_addr, self.metrics, self.health.ready, self.pages.routes())
            if options.metrics_addr
            else None
        )

    # -- life ------------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> int:
        self.specs.current(force=True)
        self._adopt(self.specs.last_good)
        project = self.specs.project()
        self.metrics.project = project
        with locked(self.state, self.url, project + ".daemon", timeout=0, what="dsr run"):
            self.reporter.started(project, self.options.metrics_addr)
            if install_signals:
                self._install_signals()
            self._start_threads()
            log.info("daemon started", path=self.request.path, project=project, git=self.top)
            try:
                self._loop()
            finally:
                self._stop_threads()
        log.info("daemon stopped", passes=self.passes)
        return 0

    def shutdown(self, *_: object) -> None:
        """Finish the change in progress, start no other, leave the loop."""
        self.stop.set()
        self.trigger.stop()

    def _install_signals(self) -> None:
        def hup(signum: int, frame: FrameType | None) -> None:
            self.trigger.wake("hup")

        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        signal.signal(signal.SIGHUP, hup)

    def _start_threads(self) -> None:
        if self.server is not None:
            # A pass is pure Python and holds the GIL; the HTTP thread needs it a few times
            # per request. Handing it over every 1 ms instead of 5 keeps the status page
            # and the probes answering in milliseconds while a large pass runs.
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
            self.server.start()
        self.listener.start()
        SpecWatcher(self.request.path, self._on_files, self.stop).start()
        if self.options.suspend_file:  # removing it resumes at once, not at the next timer
            suspend = self.options.suspend_file
            SpecWatcher(suspend, lambda _: self.trigger.wake("suspend-file"), self.stop).start()
        self.scheduler.start()
        self.reporter.notifier.start()
        if self.options.git_pull and self.top:
            git.Puller(
                self.top, self.options.git_pull, self._on_commit, self.stop, self._on_pull
            ).start()
        every = watchdog_interval()
        if every:
            Watchdog(every, self._progressing, self.stop).start()

    def _stop_threads(self) -> None:
        self.stop.set()
        self.listener.close()
        if self.server is not None:
            self.server.stop()
        if self.engine is not None:
            self.engine.close()
        notify("STOPPING=1")

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        reasons = {"start"}
        timer = self._next_timer()
        while not self.stop.is_set():
            self._pass(reasons)
            if self.stop.is_set():
                break
            now = time.monotonic()
            due = [timer, self.backoff.next_due(now), self.retry_at]
            reasons = self.trigger.take(min(t for t in due if t is not None))
            now = time.monotonic()
            if now >= timer:
                reasons.add("interval")
                timer = self._next_timer()
            if not reasons:
                reasons.add("retry")

    def _next_timer(self) -> float:
        spread = 1 + random.uniform(-self.options.jitter, self.options.jitter)
        return time.monotonic() + self.options.interval * spread

    def _pass(self, reasons: set[str]) -> None:
        desired = self._share(self.specs.current(force=bool(reasons & RELOAD_REASONS)))
        refused = 1 if self.specs.empty_refused else 0  # an empty or deleted spec folder
        self.metrics.spec_errors.set(len(self.specs.issues) + len(self._share_issues) + refused)
        self._adopt(desired)
        if desired is None:
            self.metrics.reconcile.labels("spec_error").inc()
            notify("STATUS=no valid spec yet")
            return
        commit = git.head(self.top) if self.top else None
        trigger = ",".join(sorted(reasons))
        with structlog.contextvars.bound_contextvars(trigger=trigger, commit=commit):
            self._gate_result = ""
            started = time.monotonic()
            self.health.pass_started = started
            deadline = started + self.options.pass_timeout
            self.own.begin(time.time())
            result = run_pass(
                self.request,
                engine=self._connect(),
                desired=desired,
                progress=self._on_change_done,
                before_apply=self._gate,
                should_stop=lambda: self.stop.is_set() or time.monotonic() > deadline,
            )
            for _ in self.own.end():
                self.trigger.wake("event")
            self._count_own_events()
            self.health.pass_started = None
            if time.monotonic() > deadline:
                log.error("pass timed out", pass_timeout=self.options.pass_timeout)
            self._after(result, reasons, time.monotonic() - started)
            self.reporter.after_pass(result, self._last_label, self._desired, commit)
            if self.server is not None:
                self.pages.warm()

    def _share(self, desired: Desired | None) -> Desired | None:
        """This host's share of the spec in force (worked out once per spec): what the
        passes plan and the backup schedules follow. A share whose references lead to
        other hosts is a spec error: nothing is applied, as with any invalid spec."""
        self._identify()
        if desired is None or not desired.placements:
            self._share_issues = ()
            return desired
        if self._shared is not None and self._shared[0] is desired:
            return self._shared[1]
        engine = self._connect()
        if engine is None:
            return desired  # run_pass reports the engine; it shares once it can
        try:
            narrowed = host_share(desired, engine, self.request.host)
        except SpecError as err:
            if tuple(err.issues) != self._share_issues:
                log.error("spec invalid on this host", issues=[str(i) for i in err.issues])
            self._share_issues = tuple(err.issues)
            return None
        except EngineError:
            return desired
        self._share_issues = ()
        self._shared = (desired, narrowed)
        return narrowed

    def _identify(self) -> None:
        """Name this agent after its host (``--host``, else the engine's name) in its
        status and metrics, once the engine has answered."""
        if self._host_name is not None:
            return
        name = self.request.host
        if name is None:
            engine = self._connect()
            if engine is None:
                return
            try:
                name = engine_host(engine).name
            except EngineError:
                return
        self._host_name = self.reporter.host = name
        self.metrics.agent.labels(name).set(1)

    def _connect(self) -> Engine | None:
        """The daemon's engine connection (None lets run_pass report why there is none)."""
        if self.engine is None:
            try:
                self.engine = Engine(self.request.docker_host, timeout=self.request.engine_timeout)
                self.engine.keep_inspected = True  # forgotten on every container event
            except EngineError:
                return None
        return self.engine

    def _adopt(self, desired: Desired | None) -> None:
        """Follow the spec in force: event names, backup schedules."""
        if desired is None or desired is self._desired:
            return
        self._desired = desired
        self._project = desired.project
        self._names = names_of(desired)
        rules = {name: b.schedule for name, b in desired.backups.items() if b.schedule}
        try:  # what the scheduled backups run from (dsr backup --last-good)
            save_last_good(self.state, desired)
        except OSError as err:
            log.error("cannot record the last good spec", error=str(err))
        self.scheduler.set_rules(rules)

    # -- before the apply ------------------------------------------------------------------
    def _gate(self, plan: Plan) -> bool | Plan:
        """The daemon's say before a pass applies: suspended, refused, or narrowed."""
        summary = {k: v for k, v in plan.summary().items() if v}
        suspend = self.options.suspend_file
        if suspend and os.path.lexists(suspend):
            self._gate_result = "suspended"
            log.warning("suspended", suspend_file=suspend, changes=summary)
            return False
        if not self.options.allow_empty and deletes_everything(plan, self._desired):
            self._gate_result = "refused"
            log.error(
                "refused",
                changes=summary,
                error="the spec declares nothing, so this pass would delete every managed "
                "object of the project; run with --allow-empty to let it",
            )
            return False
        if any(c.risk is Risk.DATA_LOSS for c in plan.actionable) and not self.specs.unchanged():
            # Read mid-write, or changed since: what deletes data must come from files at rest.
            self._gate_result = "deferred"
            log.warning("deferred", changes=summary, reason="the spec changed while planned")
            return False  # the watch (or the interval) brings the pass that reads it whole
        waiting = self.backoff.waiting(time.monotonic())
        waiting &= {c.resource for c in plan.actionable}
        if not waiting:
            return True
        self._gate_result = "deferred"
        log.info("deferred", resources=sorted(waiting), reason="backing off after failures")
        narrowed = defer(plan, waiting)
        return narrowed if narrowed.actionable else False

    # -- after the pass --------------------------------------------------------------------
    def _after(self, result: PassResult, reasons: set[str], seconds: float) -> None:
        self.passes += 1
        now = time.monotonic()
        label = self._last_label = self._result_label(result, now)
        self.metrics.reconcile.labels(label).inc()
        self.metrics.suspended.set(1 if label == "suspended" else 0)
        self.metrics.duration.observe(seconds)
        self.metrics.record_outcomes(result.outcomes)
        plan = result.plan
        if plan is not None:
            if self.specs.generation == self._generation:
                self.metrics.record_drift(plan.changes, self._pending)
            self._generation = self.specs.generation
            done = {o.change.resource for o in result.outcomes if o.status is Status.OK}
            self._pending = {c.resource for c in plan.actionable} - done
            self.backoff.record(result.outcomes, now)
            self.backoff.forget_absent({c.resource for c in plan.actionable})
            counts = resource_counts(
                self._desired, plan, result.outcomes, set(self.backoff.failures)
            )
            self.metrics.set_resources(counts)
        if self.passes == 1:
            notify("READY=1")
        changed = sum(o.status is Status.OK for o in result.outcomes)
        notify(f"STATUS=last pass: {label}, {changed} changes, {len(result.failed)} failed")

    def _result_label(self, result: PassResult, now: float) -> str:
        if isinstance(result.error, EngineError):
            self.health.engine_up = False
            if self.engine is not None:
                self.engine.close()
                self.engine = None  # a restarted engine needs a fresh connection
            self.engine_failures += 1
            delay = min(2.0 ** (self.engine_failures - 1), ENGINE_BACKOFF_CAP)
            self.retry_at = now + delay
            log.warning("engine unavailable; backing off", retry_in=delay)
            return "engine_error"
        self.health.engine_up = True
        self.health.last_pass = now
        self.engine_failures, self.retry_at = 0, None
        if isinstance(result.error, LockError):
            self.retry_at = now + 1.0
            log.info("the project's lock is held; trying again in 1 s", error=str(result.error))
            return "locked"
        if result.error is not None:
            return "error"
        if self._gate_result:
            return self._gate_result
        if result.failed:
            return "failed"
        if self.specs.issues or self.specs.empty_refused or self._share_issues:
            return "spec_error"  # the last good spec was enforced; the files are not good
        self.metrics.last_success.set(time.time())
        return "ok"

    # -- what wakes it ---------------------------------------------------------------------
    def _on_change_done(self, outcome: Outcome, done: int, total: int) -> None:
        # Creating and starting cause only create/start events, which the listener does
        # not ask for: a volume removed right after dsr created it is somebody else's doing.
        if outcome.change.action in OWN_EVENT_ACTIONS:
            self.own.changed([outcome.change.name], time.time())

    def _on_event(self, event: Event) -> None:
        if event.kind == "container":
            self._forget_inspected()  # a container changed: the next pass inspects again
        if not relevant(event, self._project, self._names):
            return
        if self.own.offer(event):
            log.debug("event", kind=event.kind, action=event.action, names=event.names)
            self.trigger.wake("event")
        self._count_own_events()

    def _count_own_events(self) -> None:
        ignored = self.own.ignored  # judged now, or when the pass that held them ended
        if ignored > self._own_counted:
            self.metrics.own_events.inc(ignored - self._own_counted)
            self._own_counted = ignored

    def _forget_inspected(self) -> None:
        engine = self.engine
        if engine is not None:
            engine.inspected_epoch += 1
            engine.inspected = {}

    def _on_connect(self, first: bool) -> None:
        self._forget_inspected()  # events may have been missed while the stream was down
        self.health.engine_up = True
        if not first:
            self.metrics.reconnects.inc()
            log.info("event stream reconnected")
        self.trigger.wake("connect" if first else "reconnect")

    def _on_disconnect(self, reason: str) -> None:
        self.health.engine_up = False
        if not self.stop.is_set():
            log.warning("event stream lost", error=reason)

    def _on_files(self, paths: list[str]) -> None:
        self.trigger.wake("file", settle=SETTLE)

    def _on_commit(self, commit: str) -> None:
        self.trigger.wake("git")

    def _backup_failed(self, rule: str, step: str) -> None:
        self.metrics.backup_failures.labels(rule, step).inc()
        self.reporter.backup_failed(rule, step)

    def _on_pull(self, ok: bool, message: str) -> None:
        """A failed pull leaves the last good commit in force and the daemon not ready."""
        if not ok:
            self.metrics.git_pull_failures.inc()
        self.health.git_error = None if ok else message[:500]
        self.reporter.git_pulled(ok, message)

    def _progressing(self) -> bool:
        started = self.health.pass_started
        return started is None or time.monotonic() - started < self.options.pass_timeout + 30


__all__ = ["Daemon", "DaemonOptions"]
