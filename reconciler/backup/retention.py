"""Which backups the ``keep`` rules keep: restic's ``forget --keep-*`` policy, exactly.

A pure function of (snapshots, rules), as restic's ``ApplyPolicy`` is (restic 0.16 and
later, ``internal/data/snapshot_policy.go``):

* snapshots are sorted newest first (a stable sort: equal times keep their given order);
* ``last`` and each calendar rule (hour, day, ISO week, month, year) walk that list; a
  snapshot whose bucket differs from the previous kept one's is kept while the rule has
  counts left (``-1``: unlimited), so each bucket keeps its newest snapshot;
* a rule that still has counts left when it reaches the oldest snapshot keeps that one too
  ("oldest daily snapshot"), which keeps the history as long as the counts allow;
* ``within`` keeps everything newer than the newest snapshot minus the duration, and
  ``within_<bucket>`` keeps each bucket's newest snapshot in that window;
* buckets read each snapshot's wall clock in the time zone recorded with it.

Rules are independent: any rule keeping a snapshot keeps it, with every rule's reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

from reconciler.spec.backups import Keep

Bucket = Callable[[datetime, int], int]


class Timed(Protocol):
    """Anything with an aware ``time``: a manifest, or a bare time in tests."""

    @property
    def time(self) -> datetime: ...


S = TypeVar("S", bound=Timed)


@dataclass(frozen=True)
class Duration:
    """restic's calendar duration: years, months, days and hours, added field by field."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """``1y2m3d4h`` (any order, each unit summed), as ``Keep`` validated it."""
        fields = {"y": 0, "m": 0, "d": 0, "h": 0}
        for number, unit in re.findall(r"(\d+)([ymdh])", text):
            fields[unit] += int(number)
        return cls(fields["y"], fields["m"], fields["d"], fields["h"])

    def __str__(self) -> str:
        # restic prints the fields in this order and leaves out the zero ones.
        parts = zip((self.years, self.months, self.days, self.hours), "ymdh", strict=True)
        return "".join(f"{n}{unit}" for n, unit in parts if n)

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this duration, as Go's ``AddDate`` then ``Add`` compute it."""
        month_index = moment.year * 12 + moment.month - 1 - self.years * 12 - self.months
        year, month = divmod(month_index, 12)
        try:
            # Go normalizes an overflowing day (31 February) into the next month.
            day = date(year, month + 1, 1) + timedelta(days=moment.day - 1 - self.days)
        except (ValueError, OverflowError):
            return datetime.min.replace(tzinfo=UTC)  # before year 1: before every backup
        # The same wall clock on that day; a zone's offset follows the new date.
        wall = moment.replace(year=day.year, month=day.month, day=day.day)
        # Hours are absolute time (Go's Add), not wall clock: count them in UTC.
        return wall.astimezone(UTC) - timedelta(hours=self.hours)


def _hour(t: datetime, _: int) -> int:
    return t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour


def _day(t: datetime, _: int) -> int:
    return t.year * 10_000 + t.month * 100 + t.day


def _week(t: datetime, _: int) -> int:
    year, week, _weekday = t.isocalendar()
    return year * 100 + week


def _month(t: datetime, _: int) -> int:
    return t.year * 100 + t.month


def _year(t: datetime, _: int) -> int:
    return t.year


def _always(_: datetime, nr: int) -> int:
    return nr


@dataclass
class _Counted:
    count: int
    bucket: Bucket
    reason: str
    last: int | None = None


@dataclass
class _Within:
    within: Duration
    bucket: Bucket
    reason: str
    last: int | None = None


@dataclass(frozen=True)
class Kept:
    """A kept snapshot and every rule's reason for keeping it, in restic's words."""

    snapshot: Timed
    reasons: tuple[str, ...]


def _counted(keep: Keep) -> list[_Counted]:
    rules = (
        (keep.last, _always, "last snapshot"),
        (keep.hourly, _hour, "hourly snapshot"),
        (keep.daily, _day, "daily snapshot"),
        (keep.weekly, _week, "weekly snapshot"),
        (keep.monthly, _month, "monthly snapshot"),
        (keep.yearly, _year, "yearly snapshot"),
    )
    return [_Counted(n, bucket, why) for n, bucket, why in rules if n is not None and n != 0]


def _withins(keep: Keep) -> list[_Within]:
    rules = (
        (keep.within_hourly, _hour, "hourly within"),
        (keep.within_daily, _day, "daily within"),
        (keep.within_weekly, _week, "weekly within"),
        (keep.within_monthly, _month, "monthly within"),
        (keep.within_yearly, _year, "yearly within"),
    )
    out = []
    for text, bucket, why in rules:
        duration = Duration.parse(text) if text else Duration()
        if duration != Duration():
            out.append(_Within(duration, bucket, why))
    return out


def is_empty(keep: Keep) -> bool:
    """No rule at all: restic refuses to forget anything with such a policy."""
    within = Duration.parse(keep.within) if keep.within else Duration()
    return not _counted(keep) and not _withins(keep) and within == Duration()


def newest_first(snapshots: Sequence[S]) -> list[S]:
    """Newest first; equal instants keep their given order (restic's stable sort)."""
    # By instant: two times in one zone would otherwise compare by wall clock (DST folds).
    return sorted(snapshots, key=lambda s: s.time.timestamp(), reverse=True)


def apply_keep(
    snapshots: Sequence[S], keep: Keep, *, now: datetime | None = None
) -> tuple[list[Kept], list[S]]:
    """Split ``snapshots`` into (kept with reasons, removed), both newest first.

    ``now`` only serves to ignore snapshots dated in the future when finding the newest
    one that ``within`` rules measure from, as restic does; ``None`` ignores none.
    """
    ordered = newest_first(snapshots)
    if not ordered:
        return [], []
    counted, withins = _counted(keep), _withins(keep)
    within = Duration.parse(keep.within) if keep.within else Duration()
    newest = _newest(ordered, now)
    kept: list[Kept] = []
    removed: list[S] = []
    for nr, snapshot in enumerate(ordered):
        oldest = nr == len(ordered) - 1
        reasons: list[str] = []
        if within != Duration() and newest is not None and _after(snapshot.time, within, newest):
            reasons.append(f"within {within}")
        reasons += _counted_reasons(counted, snapshot.time, nr, oldest)
        reasons += _within_reasons(withins, snapshot.time, nr, oldest, newest)
        if reasons:
            kept.append(Kept(snapshot, tuple(reasons)))
        else:
            removed.append(snapshot)
    return kept, removed


def _after(time: datetime, within: Duration, newest: datetime) -> bool:
    """``time`` lies strictly after ``newest`` minus ``within`` (restic's ``After``)."""
    return time.timestamp() > within.before(newest).timestamp()


def _newest(ordered: Sequence[Timed], now: datetime | None) -> datetime | None:
    for snapshot in ordered:
        if now is None or snapshot.time.timestamp() < now.timestamp():
            return snapshot.time
    return None


def _counted_reasons(rules: list[_Counted], time: datetime, nr: int, oldest: bool) -> list[str]:
    reasons = []
    for rule in rules:
        if rule.count == 0:
            continue
        value = rule.bucket(time, nr)
        if value != rule.last or oldest:
            reasons.append(f"oldest {rule.reason}" if value == rule.last else rule.reason)
            rule.last = value
            if rule.count > 0:
                rule.count -= 1
    return reasons


def _within_reasons(
    rules: list[_Within], time: datetime, nr: int, oldest: bool, newest: datetime | None
) -> list[str]:
    reasons = []
    for rule in rules:
        if newest is None or not _after(time, rule.within, newest):
            continue
        value = rule.bucket(time, nr)
        if value != rule.last or oldest:
            reason = f"oldest {rule.reason}" if value == rule.last else rule.reason
            reasons.append(f"{reason} {rule.within}")
            rule.last = value
    return reasons


__all__ = ["Duration", "Kept", "apply_keep", "is_empty", "newest_first"]
