"""The daemon's parts, without an engine: trigger, backoff, own events, schedule, notify."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from reconciler.apply import Outcome
from reconciler.cli.run import parse_duration
from reconciler.daemon.backoff import Backoff, defer
from reconciler.daemon.events import Event, OwnChanges, relevant
from reconciler.daemon.metrics import Health, Metrics, ProbeServer
from reconciler.daemon.notify import notify, watchdog_interval
from reconciler.daemon.schedule import Scheduler, next_time
from reconciler.daemon.specs import SpecSource
from reconciler.daemon.trigger import Trigger
from reconciler.plan.model import Action, Change, Plan, ReasonCode
from reconciler.request import Request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- trigger -----------------------------------------------------------------------------


def test_a_burst_of_wakeups_is_one_take() -> None:
    trigger = Trigger()
    for _ in range(1000):
        trigger.wake("event")
    trigger.wake("interval")
    assert trigger.take(time.monotonic() + 1) == {"event", "interval"}
    assert trigger.take(time.monotonic() + 0.01) == set()


def test_file_wakeups_settle_until_quiet_but_not_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trigger = Trigger()
    started = time.monotonic()
    trigger.wake("file", settle=0.1)
    threading.Timer(0.05, trigger.wake, ("file",), {"settle": 0.1}).start()
    assert trigger.take(started + 5) == {"file"}
    assert time.monotonic() - started >= 0.15  # quiet for 0.1 s after the second write
    # A constant stream of writes is still taken MAX_SETTLE after it began.
    monkeypatch.setattr("reconciler.daemon.trigger.MAX_SETTLE", 0.3)
    stop = threading.Event()

    def writes() -> None:
        while not stop.wait(0.02):
            trigger.wake("file", settle=0.1)

    threading.Thread(target=writes, daemon=True).start()
    started = time.monotonic()
    try:
        assert trigger.take(started + 5) == {"file"}
    finally:
        stop.set()
    assert 0.25 <= time.monotonic() - started < 1.0


def test_take_returns_empty_at_the_deadline_and_stop_ends_waiting() -> None:
    trigger = Trigger()
    started = time.monotonic()
    assert trigger.take(started + 0.05) == set()
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, trigger.stop).start()
    assert trigger.take(time.monotonic() + 5) == set()
    assert trigger.stopped


# -- backoff -----------------------------------------------------------------------------


def _change(resource: str, *depends: str, action: Action = Action.CREATE) -> Change:
    return Change(resource, action, "why", ReasonCode.MISSING, depends_on=depends)


def test_backoff_doubles_per_failure_caps_and_clears_on_success() -> None:
    backoff = Backoff(first=1, cap=4)
    failed = Outcome(_change("volume:a"), "failed", error="boom")
    for expected in (1, 2, 4, 4):
        backoff.record([failed], now=0)
        assert backoff.not_before["volume:a"] == expected
    assert backoff.waiting(3.9) == {"volume:a"} and backoff.waiting(4) == set()
    assert backoff.next_due(0) == 4 and backoff.next_due(4) is None
    backoff.record([Outcome(_change("volume:a"), "ok")], now=5)
    assert backoff.waiting(0) == set()


def test_backoff_forgets_what_no_longer_needs_a_change() -> None:
    backoff = Backoff()
    backoff.record([Outcome(_change("volume:a"), "failed")], now=0)
    backoff.forget_absent({"volume:b"})
    assert not backoff.failures and not backoff.not_before


def test_defer_leaves_out_the_resource_and_what_depends_on_it() -> None:
    plan = Plan(
        "p",
        (
            _change("volume:a"),
            _change("volume:b"),
            _change("container:c", "volume:a"),
            _change("container:d", "container:c"),
            _change("container:e", "volume:b"),
        ),
    )
    kept = defer(plan, {"volume:a"})
    assert [c.resource for c in kept.changes] == ["volume:b", "container:e"]


# -- events ------------------------------------------------------------------------------


def _raw(kind: str, action: str, name: str, when: float, **attrs: str) -> dict[str, object]:
    attributes = {"name": name, **attrs} if kind == "container" else {"driver": "local"}
    return {
        "Type": kind,
        "Action": action,
        "Actor": {"ID": name if kind == "volume" else "abc", "Attributes": attributes},
        "timeNano": int(when * 1e9),
    }


def test_events_parse_and_relevance() -> None:
    names = {"data", "web"}
    volume = Event.parse(_raw("volume", "destroy", "data", 5.0))
    assert volume.names == ("data",) and volume.time == pytest.approx(5.0)
    assert relevant(volume, "p", names)
    assert not relevant(Event.parse(_raw("volume", "destroy", "other", 5.0)), "p", names)
    labelled = _raw("container", "die", "x", 1, **{"dsr.managed": "true", "dsr.project": "p"})
    assert relevant(Event.parse(labelled), "p", names)
    assert not relevant(Event.parse(labelled), "q", set())
    renamed = Event.parse(_raw("container", "rename", "elsewhere", 1, oldName="/web"))
    assert renamed.names == ("elsewhere", "web") and relevant(renamed, "p", names)
    assert not relevant(Event.parse(_raw("container", "start", "web", 1)), "p", names)


def test_own_changes_hold_events_during_a_pass_and_drop_their_own() -> None:
    own = OwnChanges()
    own.begin(100.0)
    mine = Event.parse(_raw("container", "destroy", "web_dsr_old", 100.2))
    other = Event.parse(_raw("volume", "destroy", "data", 100.3))
    assert not own.offer(mine) and not own.offer(other)  # held while the pass runs
    own.changed(["web"], 100.5)
    assert own.end() == [other]
    # After the pass: an event stamped inside the window is still ours, a later one is not.
    assert not own.offer(Event.parse(_raw("container", "rename", "web", 100.4)))
    assert own.offer(Event.parse(_raw("container", "destroy", "web", 101.0)))
    assert own.ignored == 2


# -- schedule ----------------------------------------------------------------------------


def test_next_time_follows_cron_in_local_time() -> None:
    start = 1_800_000_000.0
    first = next_time("*/5 * * * *", start)
    assert first > start and int(first) % 300 == 0 and first - start <= 300


def test_scheduler_runs_each_rule_on_time_and_counts_failures() -> None:
    clock = Clock()
    clock.now = 1_800_000_000.0 - 1  # one second before a full minute
    ran: list[str] = []
    stop = threading.Event()

    def runner(rule: str) -> bool:
        ran.append(rule)
        if len(ran) >= 2:
            stop.set()
        return rule == "good"

    scheduler = Scheduler(runner, stop, clock=clock)
    scheduler.set_rules({"good": "* * * * *", "bad": "*/2 * * * *"})
    clock.now += 2  # both are due now
    scheduler.start()
    scheduler._changed.set()
    scheduler.join(5)
    assert sorted(ran) == ["bad", "good"]
    assert scheduler.failures == {"bad": 1}
    assert all(due > clock.now for due in scheduler._due.values())


# -- notify, metrics, durations ----------------------------------------------------------


def test_notify_sends_datagrams_to_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("READY=1")
        assert sock.recv(100) == b"READY=1"
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")


def test_probe_server_and_backup_metrics() -> None:
    metrics = Metrics()
    metrics.project = "web"
    metrics.set_backups(
        [
            {"source": "volume:a", "time": "2026-11-29T03:00:00+00:00", "size": 10},
            {"source": "volume:a", "time": "2026-11-30T03:00:00+00:00", "size": 20},
            {
                "source": "volume:a",
                "time": "2026-12-01T03:00:00+00:00",
                "size": 9,
                "status": "partial",
            },
        ]
    )
    health = Health(interval=60)
    server = ProbeServer("127.0.0.1:0", metrics, health.ready)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as unready:
            urllib.request.urlopen(base + "/readyz")
        assert unready.value.code == 503
        health.engine_up, health.last_pass = True, time.monotonic()
        assert urllib.request.urlopen(base + "/readyz").status == 200
        text = urllib.request.urlopen(base + "/metrics").read().decode()
    finally:
        server.stop()
    assert 'dsr_backup_bytes{project="web",source="volume:a"} 20.0' in text
    samples = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert samples and all('project="web"' in x for x in samples), samples
    newest = datetime.fromisoformat("2026-11-30T03:00:00+00:00").timestamp()
    line = 'dsr_backup_last_success_timestamp_seconds{project="web",source="volume:a"} '
    assert [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)] == [newest]


@pytest.mark.parametrize(
    ("text", "seconds"), [("60", 60), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "m", "1.5.2s", "-3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# -- the spec in force -------------------------------------------------------------------


def test_a_broken_or_emptied_spec_keeps_the_last_good_one(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    spec = folder / "dsr.yaml"
    spec.write_text("version: 1\nvolumes:\n  proj-a: {}\n")
    source = SpecSource(Request(path=str(folder)))
    good = source.current()
    assert good is not None and set(good.volumes) == {"proj-a"} and source.generation == 1
    spec.write_text("version: 1\nvolumes:\n  proj-a: {driver: [\n")
    assert source.current() is good and source.issues
    spec.unlink()
    assert source.current() is good and source.empty_refused and not source.issues
    allowing = SpecSource(Request(path=str(folder)), allow_empty=True)
    empty = allowing.current()
    assert empty is not None and not empty.volumes and empty.project == "proj"


def test_the_command_runner_backs_up_prunes_then_reads_the_list(tmp_path: Path) -> None:
    from reconciler.daemon.schedule import CommandRunner

    calls = tmp_path / "calls"
    fake = tmp_path / "dsr"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$*" in *"backups list"*) echo \'{"format_version": 1, "backups": '
        '[{"source": "volume:a", "time": "2026-11-29T03:00:00+00:00", "size": 5}]}\';; '
        '*"backup spec --policy bad"*) echo \'{"format_version": 1, "backups": [{"policy": '
        '"bad", "source": "volume:a", "id": "a-1", "error": "x", "missed": [{"destination": '
        '"s3://b/p", "error": "refused"}]}]}\'; echo nope >&2; exit 1;; esac\n'
    )
    fake.chmod(0o755)
    seen: list[list[dict[str, object]]] = []
    failures: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    runner = CommandRunner(
        "spec",
        (),
        seen.append,
        lambda r, s: failures.append((r, s)),
        on_missed=lambda r, d: missed.append((r, d)),
    )
    runner.base = [str(fake), "--state-dir", "/x"]
    assert runner("nightly")
    assert calls.read_text().splitlines() == [
        "--state-dir /x backup spec --policy nightly --format json",
        "--state-dir /x backups prune spec",
        "--state-dir /x backups list spec --format json",
    ]
    assert seen[0][0]["size"] == 5
    assert not runner("bad") and failures == [("bad", "backup")]
    assert missed == [("bad", "s3://b/p")]  # the place the snapshot missed, said apart
    # A failed backup (a full disk) is still followed by prune, which removes what it left.
    assert calls.read_text().splitlines()[-1] == "--state-dir /x backups prune spec"
