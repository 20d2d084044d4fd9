"""Each finished change is one log event, unless a terminal's progress line already says it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from reconciler.apply import Outcome, Progress, TerminalProgress, _record
from reconciler.plan.model import Action, Change, ReasonCode

CHANGE = Change("volume:data", Action.CREATE, "not on the engine", ReasonCode.MISSING)


def _levels(progress: Progress | None, status: str) -> list[str]:
    seen: list[tuple[int, int]] = []

    def count(outcome: Outcome, done: int, total: int) -> None:
        seen.append((done, total))

    wrapped: Progress | None
    if progress is None:
        wrapped = None
    elif isinstance(progress, TerminalProgress):
        wrapped = TerminalProgress(count)
    else:
        wrapped = count
    with capture_logs() as events:
        _record({}, Outcome(CHANGE, status), "p1", 1, wrapped)
    if wrapped is not None:
        assert seen == [(1, 1)]
    return [e["log_level"] for e in events if e["event"] == "change"]


def _noop(outcome: Outcome, done: int, total: int) -> None:
    del outcome, done, total


@pytest.mark.parametrize(
    ("progress", "status", "level"),
    [
        (None, "ok", "info"),
        (None, "failed", "error"),
        # The daemon's watchdog is a progress callback, not a person reading lines.
        (_noop, "ok", "info"),
        (_noop, "failed", "error"),
        (TerminalProgress(_noop), "ok", "debug"),
        (TerminalProgress(_noop), "failed", "debug"),
    ],
)
def test_a_change_event_is_quiet_only_behind_a_terminals_progress_line(
    progress: Progress | None, status: str, level: str
) -> None:
    assert _levels(progress, status) == [level]
