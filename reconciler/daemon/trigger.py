"""The one thing every trigger touches: a level-triggered "dirty" flag with a condition.

File changes, Docker events, timers, signals and reconnects only call ``wake``; the loop
calls ``take``. However many wake-ups arrive while a pass runs, they leave one reason set
behind, so a burst makes at most one pass running and one pending (habit 7).

File changes also *settle*: an editor or a ``git checkout`` writes many files, and a test
saves one file 100 times a second. Each file wake-up pushes the pass back ``settle``
seconds (trailing edge), but never more than ``MAX_SETTLE`` after the first one, so a
constant stream of writes still gets applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_SETTLE = 2.0
# The kernel may hand SIGTERM to any thread, and CPython then runs the handler only when
# the main thread next wakes: it never sleeps longer than this, so a stop is prompt.
SLICE = 0.25


class Trigger:
    """Reasons to run a pass, gathered until the loop takes them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # An RLock: signal handlers call wake() on the main thread, maybe inside take().
        self._cond = threading.Condition(threading.RLock())
        self._clock = clock
        self._reasons: set[str] = set()
        self._first = 0.0  # when the oldest pending reason arrived
        self._ready_at = 0.0  # file changes settle until then
        self._stopped = False

    def wake(self, reason: str, settle: float = 0.0) -> None:
        with self._cond:
            now = self._clock()
            if not self._reasons:
                self._first = now
                self._ready_at = now
            self._reasons.add(reason)
            if settle:
                self._ready_at = max(self._ready_at, now + settle)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def pending(self) -> bool:
        with self._cond:
            return bool(self._reasons)

    def take(self, until: float) -> set[str]:
        """Wait for settled reasons, or until the clock reads ``until``; return and clear them.

        At ``until`` the pending reasons are returned settled or not (the timer's pass
        re-reads everything anyway); an empty set means only the time ran out.
        """
        with self._cond:
            while not self._stopped:
                now = self._clock()
                if self._reasons:
                    ready = min(self._ready_at, self._first + MAX_SETTLE)
                    if now >= ready or now >= until:
                        break
                    wake_at = min(ready, until)
                elif now >= until:
                    break
                else:
                    wake_at = until
                self._cond.wait(min(max(wake_at - now, 0.001), SLICE))
            reasons, self._reasons = self._reasons, set()
            return reasons
