"""``--notify``: events POSTed to a real local HTTP server, with retries and a bound; the
daemon's reporter tells each condition once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler import lastpass, logs
from reconciler.daemon import alerts
from reconciler.daemon.alerts import Notifier, check_url
from reconciler.daemon.report import Reporter
from reconciler.errors import EngineError
from reconciler.plan.model import Action, Change, Plan, ReasonCode
from reconciler.reconcile import PassResult
from reconciler.spec.backups import Backup
from reconciler.spec.desired import Desired
from reconciler.spec.models import Volume
from reconciler.statedir import StateDir


class Server:
    """Answers each POST with the next status of ``codes`` (then 204); keeps the bodies."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                code = outer.codes.pop(0) if outer.codes else 204
                if code == 204:
                    outer.bodies.append(json.loads(data))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook?token=secret"


@pytest.fixture(autouse=True)
def _logs_to_this_tests_stderr() -> None:
    """Earlier in-process CLI tests leave structlog writing to a capture that is closed."""
    logs.configure("json")


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def notifier(
    urls: tuple[str, ...], stop: threading.Event, counts: list[tuple[str, str]]
) -> Notifier:
    n = Notifier(urls, lambda: "web", "node-1", stop, lambda e, o: counts.append((e, o)), 0.01)
    n.start()
    return n


def wait(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_503_is_retried_then_the_event_arrives(stop: threading.Event) -> None:
    server, counts = Server([503, 503]), []
    n = notifier((server.url,), stop, counts)
    n.send("pass_failed", "a pass failed", {"result": "failed"})
    wait(lambda: counts)
    assert counts == [("pass_failed", "sent")] and server.requests == 3
    [body] = server.bodies
    assert body["event"] == "pass_failed" and body["project"] == "web"
    assert body["host"] == "node-1" and body["format_version"] == 1
    assert body["details"] == {"result": "failed"} and body["time"].endswith("+00:00")


def test_the_retries_are_bounded_and_a_4xx_is_not_retried(stop: threading.Event) -> None:
    failing, refusing, counts = Server([500] * 10), Server([400] * 10), []
    n = notifier((failing.url, refusing.url), stop, counts)
    n.send("blocked", "blocked", {})
    wait(lambda: len(counts) == 2)
    assert counts == [("blocked", "failed"), ("blocked", "failed")]
    assert failing.requests == alerts.ATTEMPTS and refusing.requests == 1


def test_an_unreachable_url_fails_without_holding_anyone(stop: threading.Event) -> None:
    counts: list[tuple[str, str]] = []
    n = notifier(("http://127.0.0.1:9/none",), stop, counts)
    started = time.monotonic()
    n.send("git_pull_failed", "git pull failed", {"error": "x"})
    assert time.monotonic() - started < 0.1  # send only queues
    wait(lambda: counts)
    assert counts == [("git_pull_failed", "failed")]


def test_the_queue_is_bounded_dropping_the_oldest(stop: threading.Event) -> None:
    counts: list[tuple[str, str]] = []
    n = Notifier(
        ("http://127.0.0.1:9/",), lambda: "web", "h", stop, lambda e, o: counts.append((e, o))
    )
    for i in range(alerts.QUEUE_MAX + 5):  # not started: nothing is sent meanwhile
        n.send("blocked" if i < 5 else "pass_failed", str(i), {})
    assert counts == [("blocked", "dropped")] * 5
    assert len(n._queue) == alerts.QUEUE_MAX


def test_a_condition_is_told_once_until_it_clears(stop: threading.Event) -> None:
    server, counts = Server([]), []
    n = notifier((server.url,), stop, counts)
    for _ in range(3):
        n.raised("blocked", "", "1 blocked", {"changes": ["volume:a"]})
    n.raised("blocked", "", "2 blocked", {"changes": ["volume:a", "volume:b"]})  # other details
    n.cleared("blocked")
    n.raised("blocked", "", "2 blocked", {"changes": ["volume:a", "volume:b"]})
    wait(lambda: len(counts) == 3)
    time.sleep(0.1)
    assert [b["message"] for b in server.bodies] == ["1 blocked", "2 blocked", "2 blocked"]


def test_urls_are_checked() -> None:
    assert check_url("https://hooks.example/x") is None
    assert check_url("ftp://x") and check_url("http://a b") and check_url("file:///etc/passwd")


def test_the_reporter_tells_failed_passes_and_late_backups(
    stop: threading.Event, tmp_path: Path
) -> None:
    server, counts = Server([]), []
    n = notifier((server.url,), stop, counts)
    reporter = Reporter(StateDir(str(tmp_path)), "node-1", n, None)
    desired = Desired(
        project="web",
        volumes={"data": Volume()},
        backups={"nightly": Backup(volumes=["data"], schedule="0 3 * * *")},
    )
    failed = PassResult(desired=desired, error=EngineError("the engine does not answer"))
    reporter.after_pass(failed, "engine_error", desired, None)
    reporter.after_pass(failed, "engine_error", desired, None)  # the same: told once
    blocked = Change("volume:data", Action.BLOCKED, "taken", ReasonCode.UNMANAGED_CLASH)
    ok = PassResult(desired=desired, plan=Plan("web", (blocked,)))
    reporter.after_pass(ok, "ok", desired, "abc1234")
    wait(lambda: len(counts) == 3)
    time.sleep(0.1)
    events = {b["event"]: b for b in server.bodies}
    assert sorted(events) == ["backup_late", "blocked", "pass_failed"], server.bodies
    assert events["pass_failed"]["details"]["result"] == "engine_error"
    assert events["backup_late"]["details"]["source"] == "volume:data"
    assert "secret" not in json.dumps(server.bodies)
    record = lastpass.read(StateDir(str(tmp_path)), "web")
    assert record is not None and record.result == "blocked" and record.commit == "abc1234"
    assert record.by == "dsr run" and record.blocked == 1
    assert reporter.status is not None and reporter.status.daemon_pid is not None
