"""Backup rules with a ``schedule`` run on time (croniter), then retention.

The backup and prune commands take the project's lock themselves, so they run as
subprocesses (``dsr backup PATH --policy RULE``, then ``dsr backups prune PATH``) while the
daemon holds no lock: a pass and a backup wait for each other instead of deadlocking.
A failed run is logged and counted and tried again at the next scheduled time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from croniter import croniter

from reconciler import logs

log = logs.get_logger("dsr.schedule")

BackupRunner = Callable[[str], bool]  # rule name -> succeeded
BACKUP_TIMEOUT = 6 * 3600.0


def next_time(cron: str, after: float) -> float:
    """The first time strictly after ``after`` (epoch seconds) that ``cron`` names.

    In the host's local time zone, as cron reads its tables.
    """
    base = datetime.fromtimestamp(after).astimezone()
    return float(croniter(cron, base).get_next(float))


class Scheduler(threading.Thread):
    """Runs each rule at its times, one at a time, with ``runner``."""

    def __init__(
        self,
        runner: BackupRunner,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="dsr-schedule", daemon=True)
        self.runner = runner
        self.stop_event = stop
        self.clock = clock
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._rules: dict[str, str] = {}
        self._due: dict[str, float] = {}
        self.runs: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def set_rules(self, rules: Mapping[str, str]) -> None:
        """The rules of the spec in force (name -> cron); a changed cron is re-timed."""
        with self._lock:
            now = self.clock()
            due = {}
            for name, cron in rules.items():
                keep = self._rules.get(name) == cron and name in self._due
                due[name] = self._due[name] if keep else next_time(cron, now)
            self._rules, self._due = dict(rules), due
        self._changed.set()

    def run(self) -> None:
        # Signals stay unblocked here: the children this thread starts inherit its mask.
        while not self.stop_event.is_set():
            with self._lock:
                due = min(self._due.items(), key=lambda item: item[1], default=None)
            wait = 3600.0 if due is None else due[1] - self.clock()
            if wait > 0:
                self._changed.wait(min(wait, 60.0))  # re-read the clock at least each minute
                self._changed.clear()
                continue
            assert due is not None
            self._fire(due[0])

    def _fire(self, rule: str) -> None:
        with self._lock:
            cron = self._rules.get(rule)
            if cron is None:
                return
            # Computed from now, not from the missed time: a daemon that was down runs a
            # late backup once, not once per missed slot.
            self._due[rule] = next_time(cron, self.clock())
        self.runs[rule] = self.runs.get(rule, 0) + 1
        log.info("scheduled backup", rule=rule)
        try:
            ok = self.runner(rule)
        except Exception as err:  # a runner's bug must not stop the other schedules
            log.error("scheduled backup crashed", rule=rule, error=repr(err))
            ok = False
        if not ok:
            self.failures[rule] = self.failures.get(rule, 0) + 1


class CommandRunner:
    """Runs ``dsr backup``, ``dsr backups prune`` and ``dsr backups list`` as subprocesses."""

    def __init__(
        self,
        path: str,
        global_args: Sequence[str],
        on_backups: Callable[[list[dict[str, Any]]], None],
        on_failure: Callable[[str, str], None],
        project: Callable[[], str] | None = None,
        on_missed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.path = path
        self.base = [sys.executable, "-m", "reconciler", *global_args]
        # The project of the spec in force: --last-good reads its recorded rules.
        self.project = project
        self.on_backups = on_backups
        self.on_failure = on_failure
        self.on_missed = on_missed  # (rule, destination): a place the snapshot missed

    def __call__(self, rule: str) -> bool:
        # Prune also after a failed backup: what a backup that ran out of disk left is
        # removed by prune, and a full disk would otherwise stay full.
        ok = True
        backup = ["backup", self.path, "--policy", rule, "--format", "json"]
        for step in (backup, ["backups", "prune", self.path]):
            done = self._run(step)
            if done is not None and step is backup:
                self._missed(rule, done.stdout)
            if done is None or done.returncode != 0:
                error = done.stderr.strip()[-2000:] if done else "timed out"
                log.error("scheduled backup failed", rule=rule, step=step[0], error=error)
                self.on_failure(rule, step[0])
                ok = False
        if not ok:
            return False
        listed = self._run(["backups", "list", self.path, "--format", "json"])
        if listed is not None and listed.returncode == 0:
            try:
                self.on_backups(json.loads(listed.stdout).get("backups", []))
            except (ValueError, AttributeError) as err:
                log.warning("cannot read dsr backups list", error=str(err))
        return True

    def _missed(self, rule: str, stdout: str) -> None:
        """Each destination that a snapshot of the backup missed (``dsr backup --format
        json``): one of a rule's places failing is said apart from the rule failing."""
        try:
            taken = json.loads(stdout).get("backups", [])
            missed = {str(m["destination"]) for t in taken for m in t.get("missed", [])}
        except (ValueError, AttributeError, KeyError, TypeError):
            return
        for destination in sorted(missed):
            log.error("backup destination missed", rule=rule, destination=destination)
            if self.on_missed is not None:
                self.on_missed(rule, destination)

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str] | None:
        project = ["--project", self.project()] if self.project is not None else []
        try:
            return subprocess.run(
                [*self.base, *project, *args],
                capture_output=True,
                text=True,
                timeout=BACKUP_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
