"""What the daemon tells after each pass: the last-pass record, the status it serves,
and the notifications a person should get.

The loop decides and applies; this module only turns each pass's result into the record
in the state directory (``dsr status`` reads it), the ``Status`` behind ``/`` and
``/status.json``, and ``--notify`` events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

from reconciler import lastpass
from reconciler.daemon.alerts import Notifier
from reconciler.plan.model import Action
from reconciler.reconcile import PassResult
from reconciler.spec import Desired
from reconciler.statedir import StateDir
from reconciler.status import Status, backup_states, resource_states
from reconciler.statusread import safe_newest_backups

FAILED_RESULTS = frozenset({"failed", "error", "engine_error"})


class Reporter:
    """Keeps the status the daemon serves and tells what went wrong, once per condition."""

    def __init__(
        self,
        state: StateDir,
        host: str,
        notifier: Notifier,
        suspend_file: str | None,
    ) -> None:
        self.state = state
        self.host = host
        self.notifier = notifier
        self.suspend_file = os.path.abspath(suspend_file) if suspend_file else None
        self.status: Status | None = None

    def suspended(self) -> str | None:
        """Why the daemon is suspended (its suspend file exists), or None."""
        if self.suspend_file and os.path.lexists(self.suspend_file):
            return f"{self.suspend_file} exists"
        return None

    def started(self, project: str, metrics_addr: str | None) -> None:
        """Record who holds the project, for ``dsr status`` (pid, suspend file)."""
        record = {
            "pid": os.getpid(),
            "suspend_file": self.suspend_file,
            "metrics_addr": metrics_addr,
            "started": time.time(),
        }
        # Unwritable: status then shows the pid from the lock, not the suspend file.
        with contextlib.suppress(OSError):
            self.state.write_daemon(project, record)

    def after_pass(
        self, result: PassResult, label: str, desired: Desired | None, commit: str | None
    ) -> None:
        project = desired.project if desired else ""
        if label == "ok":  # the metric's ok; the record tells a pass left with blocked ones
            label = lastpass.label(result)
        record = lastpass.of(result, label, by="dsr run", commit=commit)
        lastpass.write(self.state, project, record)
        if desired is not None and result.plan is not None:
            done = {o.change.resource: o.status for o in result.outcomes}
            newest, problem = safe_newest_backups(desired, self.state)
            self.status = Status(
                project=project,
                host=self.host,
                resources=resource_states(desired, result.plan.changes, done),
                backups=backup_states(desired, newest),
                last_pass=record or (self.status.last_pass if self.status else None),
                daemon_pid=os.getpid(),
                suspended=self.suspended() is not None,
                observed_at=time.time(),
                errors=(problem,) if problem else (),
            )
        elif self.status is not None and record is not None:
            self.status = _with_pass(self.status, record)
        self._tell(result, label)

    def serving(self) -> Status | None:
        """The status as served now: whether suspended is judged at each request."""
        status = self.status
        if status is None:
            return None
        suspended = self.suspended() is not None
        if suspended != status.suspended:
            status = _replace(status, suspended=suspended)
            self.status = status
        return status

    # -- notifications ---------------------------------------------------------------------------
    def _tell(self, result: PassResult, label: str) -> None:
        n = self.notifier
        if label in FAILED_RESULTS:
            failed = [
                {"resource": o.change.resource, "error": str(o.error or o.status)}
                for o in result.failed
            ][:20]
            message = str(result.error) if result.error else f"{len(result.failed)} changes failed"
            n.raised(
                "pass_failed", "", f"a pass failed: {message}", {"result": label, "failed": failed}
            )
        elif label in ("ok", "blocked"):
            n.cleared("pass_failed")
        plan = result.plan
        if plan is not None:
            blocked = sorted(
                (c.resource, c.code.value) for c in plan.changes if c.action is Action.BLOCKED
            )
            if blocked:
                n.raised(
                    "blocked",
                    "",
                    f"{len(blocked)} changes are blocked: dsr will not make them on its own",
                    {"changes": [{"resource": r, "reason_code": c} for r, c in blocked[:50]]},
                )
            else:
                n.cleared("blocked")
        status = self.status
        if status is not None:
            now = time.time()
            for b in status.backups:
                key = f"{b.policy}/{b.source}"
                if b.overdue(now):
                    n.raised(
                        "backup_late",
                        key,
                        f"backup {b.policy} of {b.source} is overdue",
                        {
                            "policy": b.policy,
                            "source": b.source,
                            "schedule": b.schedule,
                            "last": b.last,
                        },
                    )
                else:
                    n.cleared("backup_late", key)

    def backup_failed(self, rule: str, step: str) -> None:
        self.notifier.send(
            "backup_failed",
            f"the scheduled backup {rule} failed at {step}",
            {"policy": rule, "step": step},
        )

    def git_pulled(self, ok: bool, message: str) -> None:
        if ok:
            self.notifier.cleared("git_pull_failed")
        else:
            self.notifier.raised(
                "git_pull_failed",
                "",
                f"git pull failed: {message}",
                {"error": message[:2000]},
                same="failing",  # once per failing streak, whatever git says each time
            )


def _replace(status: Status, **changes: object) -> Status:
    return dataclasses.replace(status, **changes)  # type: ignore[arg-type]


def _with_pass(status: Status, record: lastpass.LastPass) -> Status:
    return _replace(status, last_pass=record)
