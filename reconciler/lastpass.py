"""The last pass that could change the engine, recorded in the state directory.

``dsr apply`` and every daemon pass write one small record per project (``passes/``);
``dsr status`` and the status page read it back. The record is a typed value with one
(de)serialiser, so a reader never guesses at a dict written by another version.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.errors import LockError
from reconciler.plan.model import Action, Status

if TYPE_CHECKING:
    from reconciler.reconcile import PassResult
    from reconciler.statedir import StateDir

FORMAT = 1
# What a pass came to, as the daemon's dsr_reconcile_total{result} counts it too.
RESULTS = ("ok", "blocked", "failed", "error", "suspended", "refused", "deferred", "engine_error")


@dataclass(frozen=True)
class LastPass:
    """One pass: when it ended, how it went, what it planned and what it did."""

    time: float
    result: str
    summary: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    failed: int = 0
    blocked: int = 0
    by: str = ""
    pass_id: str = ""
    commit: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT,
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(),
            "result": self.result,
            "summary": dict(self.summary),
            "applied": self.applied,
            "failed": self.failed,
            "blocked": self.blocked,
            "by": self.by,
            "pass_id": self.pass_id,
            "commit": self.commit,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LastPass | None:
        """The record, or None when it is not one this version wrote (or is garbage)."""
        try:
            if value.get("format_version") != FORMAT:
                return None
            when = datetime.fromisoformat(str(value["time"])).timestamp()
            summary = {str(k): int(v) for k, v in dict(value.get("summary") or {}).items()}
            return cls(
                time=when,
                result=str(value["result"])[:40],
                summary=summary,
                applied=int(value.get("applied") or 0),
                failed=int(value.get("failed") or 0),
                blocked=int(value.get("blocked") or 0),
                by=str(value.get("by") or "")[:80],
                pass_id=str(value.get("pass_id") or "")[:40],
                commit=_text(value.get("commit"), 64),
                error=_text(value.get("error"), 2000),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def _text(value: object, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def label(result: PassResult) -> str:
    """How a pass that could apply went: ok, blocked, failed or error."""
    if result.error is not None or result.plan is None or result.plan.errors:
        return "error"
    if result.failed:
        return "failed"
    if any(c.action is Action.BLOCKED for c in result.plan.changes):
        return "blocked"
    return "ok"


def of(
    result: PassResult, result_label: str, by: str, commit: str | None = None
) -> LastPass | None:
    """The record of ``result``; None for a pass that never ran (another held the lock)."""
    if isinstance(result.error, LockError):
        return None
    plan = result.plan
    return LastPass(
        time=time.time(),
        result=result_label,
        summary=dict(plan.summary()) if plan else {},
        applied=sum(o.status is Status.OK for o in result.outcomes),
        failed=len(result.failed),
        blocked=sum(c.action is Action.BLOCKED for c in plan.changes) if plan else 0,
        by=by,
        pass_id=result.pass_id,
        commit=commit,
        error=str(result.error) if result.error is not None else None,
    )


def write(state: StateDir, project: str, record: LastPass | None) -> None:
    if record is not None and project:
        # A full or read-only disk must not turn a good pass into a failed one.
        with contextlib.suppress(OSError):
            state.write_last_pass(project, record.to_json())


def read(state: StateDir, project: str) -> LastPass | None:
    value = state.read_last_pass(project)
    return LastPass.from_json(value) if value is not None else None
