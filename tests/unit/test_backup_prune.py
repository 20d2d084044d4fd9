"""Prune planning: restic's rules per policy and source, damaged snapshots never counted,
the newest complete one never removed, the contract's JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.backup.manifest import Manifest
from reconciler.backup.ops import plan_prune
from reconciler.backup.store import COMPLETE, DAMAGED, Snapshot
from reconciler.spec import Desired
from reconciler.spec.backups import Backup, Keep

START = datetime(2026, 11, 1, 3, tzinfo=UTC)


def snap(
    day: int, *, status: str = COMPLETE, policy: str = "nightly", source: str = "volume:db"
) -> Snapshot:
    when = START + timedelta(days=day)
    manifest = Manifest(
        id=f"db-{day}",
        policy=policy,
        project="p",
        source=source,
        time=when,
        zone="UTC",
        dsr_version="0",
        spec_hash="",
        size=1,
        files=1,
        archive_size=1,
        sha256="a" * 64,
        tree_digest="b" * 64,
        read_via="direct",
    )
    return Snapshot(manifest, f"/d/{policy}/{source}/{day}", status)


def desired(keep: Keep) -> Desired:
    return Desired(project="p", backups={"nightly": Backup(volumes=["db"], keep=keep)})


def test_a_failed_newest_backup_never_counts_and_the_last_good_one_stays() -> None:
    snaps = [snap(0), snap(1), snap(2, status=DAMAGED)]
    result = plan_prune(desired(Keep(last=1)), snaps)
    assert [(s.id, why) for s, why in result.keep] == [("db-1", ("last snapshot",))]
    assert [s.id for s in result.remove] == ["db-2", "db-0"]
    doc = result.to_json()
    assert doc["remove"][0] == {
        "id": "db-2",
        "policy": "nightly",
        "source": "volume:db",
        "time": "2026-11-03T03:00:00+00:00",
        "status": "damaged",
    }
    assert doc["keep"][0]["reasons"] == ["last snapshot"] and doc["format_version"] == 1


def test_the_newest_complete_snapshot_is_kept_whatever_the_rules() -> None:
    future = [snap(4000), snap(4001)]  # dated years ahead: restic's within ignores them
    result = plan_prune(desired(Keep(within="1d")), future)
    assert [(s.id, why) for s, why in result.keep] == [("db-4001", ("newest verified snapshot",))]


def test_groups_by_policy_and_source_newest_first_and_unknown_rules_keep_all() -> None:
    snaps = [snap(0), snap(1, source="volume:web"), snap(2), snap(3, policy="gone")]
    result = plan_prune(desired(Keep(last=1)), snaps)
    assert [(s.manifest.policy, s.manifest.source, s.id) for s, _ in result.keep] == [
        ("gone", "volume:db", "db-3"),
        ("nightly", "volume:db", "db-2"),
        ("nightly", "volume:web", "db-1"),
    ]
    assert result.keep[0][1] == ("no such rule in the spec",)
    assert [s.id for s in result.remove] == ["db-0"]


def test_rules_without_keep_remove_nothing() -> None:
    result = plan_prune(desired(Keep()), [snap(0), snap(1)])
    assert not result.remove and len(result.keep) == 2
