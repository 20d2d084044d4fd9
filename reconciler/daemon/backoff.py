"""Per-resource exponential backoff: a change that failed is retried, later each time.

A failure does not wait for the next commit (Argo CD's lesson): the loop wakes itself
when the earliest resource is due. Until then its change (and whatever depends on it)
is left out of the passes that other triggers start, so a resource that keeps failing
costs one attempt per backoff step, not one per Docker event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from reconciler.apply import Outcome
from reconciler.plan.model import Plan, Status

FIRST = 1.0
CAP = 300.0


class Backoff:
    """Failures per resource and the time each may be tried again (monotonic seconds)."""

    def __init__(self, first: float = FIRST, cap: float = CAP) -> None:
        self.first = first
        self.cap = cap
        self.failures: dict[str, int] = {}
        self.not_before: dict[str, float] = {}

    def record(self, outcomes: Iterable[Outcome], now: float) -> None:
        for outcome in outcomes:
            resource = outcome.change.resource
            if outcome.status is Status.OK:
                self.failures.pop(resource, None)
                self.not_before.pop(resource, None)
            elif outcome.status is Status.FAILED:
                count = self.failures.get(resource, 0) + 1
                self.failures[resource] = count
                self.not_before[resource] = now + min(self.first * 2 ** (count - 1), self.cap)

    def forget_absent(self, resources: set[str]) -> None:
        """Drop resources the plan no longer changes: nothing left to retry."""
        for resource in list(self.failures):
            if resource not in resources:
                self.failures.pop(resource, None)
                self.not_before.pop(resource, None)

    def waiting(self, now: float) -> set[str]:
        return {r for r, t in self.not_before.items() if t > now}

    def next_due(self, now: float) -> float | None:
        """When the earliest resource still waiting may be tried again."""
        return min((t for t in self.not_before.values() if t > now), default=None)


def defer(plan: Plan, resources: set[str]) -> Plan:
    """``plan`` without the changes on ``resources`` and those that depend on them."""
    left_out = set(resources)
    kept = []
    for change in plan.changes:  # dependency order: a dependency comes before its users
        if change.resource in left_out or left_out.intersection(change.depends_on):
            left_out.add(change.resource)
        else:
            kept.append(change)
    return dataclasses.replace(plan, changes=tuple(kept))
