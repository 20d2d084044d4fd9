"""Retention: restic's own ``forget`` test cases, reproduced exactly, and dsr's own cases.

The oracle (``<repo>/../shared/oracles/restic-forget.json``) is restic's
``TestApplyPolicy`` converted to JSON; it is not part of this repository, so the tests
that read it skip, saying why, where it is absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reconciler.backup.retention import Duration, apply_keep, is_empty
from reconciler.spec.backups import Keep

ORACLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "oracles" / "restic-forget.json"


@dataclass(frozen=True)
class Snap:
    time: datetime
    name: str = ""


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _oracle() -> dict[str, Any]:
    if not ORACLE.exists():
        pytest.skip(f"restic's forget oracle is not here ({ORACLE}); it lives outside the repo")
    return json.loads(ORACLE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _case_ids() -> list[int]:
    if not ORACLE.exists():
        return [-1]
    return [case["index"] for case in json.loads(ORACLE.read_text(encoding="utf-8"))["cases"]]


@pytest.mark.parametrize("index", _case_ids())
def test_restic_oracle_case(index: int) -> None:
    oracle = _oracle()
    case = next(c for c in oracle["cases"] if c["index"] == index)
    snaps = [Snap(_parse(s["time"]), str(i)) for i, s in enumerate(oracle["snapshots"])]
    kept, removed = apply_keep(snaps, Keep(**case["policy"]))
    got = [(k.snapshot.time, list(k.reasons)) for k in kept]
    want = [(_parse(r["time"]), r["matches"]) for r in case["reasons"]]
    assert [t for t, _ in got] == [_parse(t) for t in case["keep"]]
    assert got == want
    assert len(kept) + len(removed) == len(snaps)


def test_oracle_has_every_case() -> None:
    assert len(_oracle()["cases"]) >= 37


def at(text: str, zone: str = "UTC") -> Snap:
    return Snap(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)), text)


def names(kept: list[Any]) -> list[str]:
    return [k.snapshot.name for k in kept]


def test_buckets_use_each_backups_own_time_zone() -> None:
    # 23:30 in Berlin on the 1st is 22:30 UTC; 00:30 in Berlin on the 2nd is 23:30 UTC on
    # the 1st. Read in UTC they share a day; read in Berlin, as recorded, they do not.
    first = at("2026-03-01T23:30:00", "Europe/Berlin")
    second = at("2026-03-02T00:30:00", "Europe/Berlin")
    kept, removed = apply_keep([first, second], Keep(daily=5))
    assert names(kept) == [second.name, first.name] and not removed
    utc = [Snap(s.time.astimezone(UTC), s.name) for s in (first, second)]
    kept, _ = apply_keep(utc, Keep(daily=1))
    assert names(kept) == [second.name]


def test_a_gap_of_weeks_keeps_the_tiers_not_only_the_newest() -> None:
    # Daily backups, then six weeks of nothing, then one more: an age-only rule would keep
    # only the newest; daily/weekly tiers keep history across the gap.
    start = datetime(2026, 1, 1, 3, tzinfo=UTC)
    snaps = [Snap(start + timedelta(days=d), f"d{d}") for d in range(10)]
    snaps.append(Snap(start + timedelta(days=9 + 42), "after-gap"))
    kept, removed = apply_keep(snaps, Keep(daily=3, weekly=3))
    # 1 January 2026 is a Thursday: d3 (Sunday 4th) is the newest of ISO week 1.
    assert [(k.snapshot.name, k.reasons) for k in kept] == [
        ("after-gap", ("daily snapshot", "weekly snapshot")),
        ("d9", ("daily snapshot", "weekly snapshot")),
        ("d8", ("daily snapshot",)),
        ("d3", ("weekly snapshot",)),
    ]
    assert len(kept) + len(removed) == len(snaps)
    within_only, _ = apply_keep(snaps, Keep(within="7d"))
    assert names(within_only) == ["after-gap"]  # what the age-only rule would leave


def test_within_counts_from_the_newest_backup_not_from_now() -> None:
    snaps = [at("2020-01-10T00:00:00"), at("2020-01-09T12:00:00"), at("2020-01-01T00:00:00")]
    kept, removed = apply_keep(snaps, Keep(within="2d"), now=datetime.now(UTC))
    assert names(kept) == ["2020-01-10T00:00:00", "2020-01-09T12:00:00"]
    assert [s.name for s in removed] == ["2020-01-01T00:00:00"]


def test_a_rule_with_counts_left_keeps_the_oldest() -> None:
    snaps = [at("2026-05-03T10:00:00"), at("2026-05-03T09:00:00"), at("2026-05-03T08:00:00")]
    kept, removed = apply_keep(snaps, Keep(daily=5))
    assert [(k.snapshot.name, k.reasons) for k in kept] == [
        ("2026-05-03T10:00:00", ("daily snapshot",)),
        ("2026-05-03T08:00:00", ("oldest daily snapshot",)),
    ]
    assert [s.name for s in removed] == ["2026-05-03T09:00:00"]


def test_equal_times_keep_their_order_and_unlimited_counts() -> None:
    snaps = [Snap(datetime(2026, 1, 1, tzinfo=UTC), n) for n in "abc"]
    kept, _ = apply_keep(snaps, Keep(last=-1))
    assert names(kept) == ["a", "b", "c"]


def test_empty_rules_and_durations() -> None:
    assert is_empty(Keep()) and not is_empty(Keep(within="1h"))
    assert str(Duration.parse("1y1d1m")) == "1y1m1d"
    end = datetime(2016, 3, 31, 12, tzinfo=UTC)
    # Go's AddDate: 31 March minus one month is "31 February", normalized to 2 March.
    assert Duration(months=1).before(end) == datetime(2016, 3, 2, 12, tzinfo=UTC)
    berlin = datetime(2026, 3, 29, 12, tzinfo=ZoneInfo("Europe/Berlin"))  # DST began 02:00
    # 24 hours are absolute (10:00 UTC the day before); a day is the same wall clock
    # (12:00 CET, 11:00 UTC), as Go's Add and AddDate compute them.
    assert Duration(hours=24).before(berlin) == datetime(2026, 3, 28, 10, tzinfo=UTC)
    assert Duration(days=1).before(berlin) == datetime(2026, 3, 28, 11, tzinfo=UTC)
