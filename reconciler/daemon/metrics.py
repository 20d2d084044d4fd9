"""Prometheus metrics in a private registry, and the small HTTP server for probes.

``/healthz``: the process answers. ``/readyz``: the engine answers, the last completed
pass is younger than twice the interval (a loop that stopped passing goes unready, so
stale health cannot pass for good health), the daemon is not suspended and ``git pull``
works. ``/metrics``: the registry, text format, every series labelled with the project.
``/`` and ``/status.json``: the status page and its JSON (``reconciler.daemon.page``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from reconciler.apply import Outcome
from reconciler.daemon.notify import block_signals
from reconciler.plan.model import Action, Change, Plan, ReasonCode
from reconciler.spec import Desired
from reconciler.spec.redact import scrub


def reason_code(change: Change) -> str:
    return change.code.value


class Metrics:
    """Every metric the daemon exports; one instance per daemon."""

    def __init__(self) -> None:
        # The *_created series double what a scrape carries and nobody here graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.reconcile = Counter("dsr_reconcile", "Passes, by result.", ["result"], registry=r)
        self.duration = Histogram(
            "dsr_reconcile_duration_seconds",
            "Seconds per pass.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.changes = Counter(
            "dsr_changes",
            "Changes applied, by action, outcome and reason code.",
            ["action", "outcome", "reason_code"],
            registry=r,
        )
        self.drift = Counter(
            "dsr_drift",
            "Changes found while the spec had not changed.",
            ["reason_code"],
            registry=r,
        )
        self.spec_errors = Gauge("dsr_spec_errors", "Problems in the spec on disk.", registry=r)
        self.agent = Gauge(
            "dsr_agent_info",
            "1, labelled with the host whose share of the spec this agent applies.",
            ["host"],
            registry=r,
        )
        self.last_success = Gauge(
            "dsr_last_success_timestamp_seconds", "When a pass last converged.", registry=r
        )
        self.resources = Gauge(
            "dsr_resources",
            "Resources of the spec, by kind and status.",
            ["kind", "status"],
            registry=r,
        )
        self.backup_success = Gauge(
            "dsr_backup_last_success_timestamp_seconds",
            "Time of the newest complete backup, by source.",
            ["source"],
            registry=r,
        )
        self.backup_bytes = Gauge(
            "dsr_backup_bytes",
            "Size of the newest complete backup, by source.",
            ["source"],
            registry=r,
        )
        self.backup_failures = Counter(
            "dsr_backup_failures",
            "Scheduled backups that failed, by rule and step.",
            ["rule", "step"],
            registry=r,
        )
        self.backup_missed = Counter(
            "dsr_backup_destination_failures",
            "Scheduled backups whose snapshot a destination of the rule did not get "
            "(a store that failed), by rule and destination.",
            ["rule", "destination"],
            registry=r,
        )
        self.reconnects = Counter(
            "dsr_events_reconnects", "Reconnects to the engine's event stream.", registry=r
        )
        self.own_events = Counter(
            "dsr_events_ignored_own",
            "Events caused by dsr's own changes, not acted on.",
            registry=r,
        )
        self.git_pull_failures = Counter(
            "dsr_git_pull_failures", "git pulls of the spec checkout that failed.", registry=r
        )
        self.notifications = Counter(
            "dsr_notifications",
            "Notifications (--notify), by event and outcome (sent, failed, dropped).",
            ["event", "outcome"],
            registry=r,
        )
        self.suspended = Gauge(
            "dsr_suspended", "1 while the suspend file exists (nothing is applied).", registry=r
        )
        # Every series carries the project, so one dashboard serves many daemons.
        self.project = ""
        self.exposed = CollectorRegistry(auto_describe=False)
        self.exposed.register(_WithProject(self))

    def record_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            self.changes.labels(o.change.action.value, o.status, reason_code(o.change)).inc()

    def record_drift(self, changes: Iterable[Change], pending: Collection[str] = ()) -> None:
        """Count what the engine moved behind dsr's back, the spec unchanged: drift codes,
        and objects missing that the last pass left in sync (removed, or renamed away)."""
        for change in changes:
            if change.action is Action.BLOCKED:
                continue
            gone = change.code is ReasonCode.MISSING and change.resource not in pending
            if change.code.drift or gone:
                self.drift.labels(reason_code(change)).inc()

    def set_resources(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.resources.clear()
        for (kind, status), count in counts.items():
            self.resources.labels(kind, status).set(count)

    def set_backups(self, backups: Iterable[Mapping[str, Any]]) -> None:
        """From ``dsr backups list --format json``: the newest complete backup per source."""
        newest: dict[str, tuple[float, int]] = {}
        for b in backups:
            if b.get("status", "complete") != "complete" or "source" not in b:
                continue
            try:
                when = datetime.fromisoformat(str(b["time"])).timestamp()
            except (KeyError, ValueError):
                continue
            if when > newest.get(b["source"], (0.0, 0))[0]:
                newest[b["source"]] = (when, int(b.get("size") or 0))
        for source, (when, size) in newest.items():
            self.backup_success.labels(source).set(when)
            self.backup_bytes.labels(source).set(size)

    def text(self) -> bytes:
        return generate_latest(self.exposed)


class _WithProject(Collector):
    """The metrics' registry with a ``project`` label added to every sample."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        project = self.metrics.project
        for family in self.metrics.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [
                Sample(
                    s.name,
                    {"project": scrub(project), **{k: scrub(v) for k, v in s.labels.items()}},
                    *s[2:],
                )
                for s in family.samples
            ]
            yield out


# The status page's documents: (body, content type), made when asked.
Pages = Mapping[str, Callable[[], tuple[bytes, str]]]


class ProbeServer:
    """``/healthz``, ``/readyz``, ``/metrics`` and ``pages`` on HOST:PORT, in a thread."""

    def __init__(
        self,
        address: str,
        metrics: Metrics,
        ready: Callable[[], tuple[bool, str]],
        pages: Pages | None = None,
    ):
        host, _, port = address.rpartition(":")
        handler = _handler(metrics, ready, pages or {})
        self.server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self._serve, name="dsr-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        block_signals()  # and so the threads serving each request
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(
    metrics: Metrics, ready: Callable[[], tuple[bool, str]], pages: Pages
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why + "\n").encode())
            elif path == "/metrics":
                self._send(200, metrics.text(), CONTENT_TYPE_LATEST)
            elif path in pages:
                body, kind = pages[path]()
                self._send(200, scrub(body.decode("utf-8", "replace")).encode(), kind)
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            if kind.startswith("text/html"):  # no script runs, nothing loads from elsewhere
                self.send_header(
                    "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"
                )
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the pass events

    return Handler


class Health:
    """What ``/readyz`` and systemd's watchdog judge: engine up, passes recent."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.engine_up = False
        self.last_pass: float | None = None  # the last pass that reached the engine
        self.pass_started: float | None = None
        self.suspended: Callable[[], str | None] = lambda: None  # why, while suspended
        self.git_error: str | None = None  # the last git pull failed: what git said

    def ready(self) -> tuple[bool, str]:
        why = self.suspended()
        if why:
            return False, f"suspended: {why}"
        if self.git_error is not None:
            return False, f"git pull failed: {self.git_error}"
        if not self.engine_up:
            return False, "the Docker engine does not answer"
        if self.last_pass is None:
            return False, "no pass has completed yet"
        age = self.clock() - self.last_pass
        if age > 2 * self.interval:
            return False, f"the last pass completed {age:.0f} s ago"
        return True, "ready"


def resource_counts(
    desired: Desired | None, plan: Plan, outcomes: tuple[Outcome, ...], failing: set[str]
) -> collections.Counter[tuple[str, str]]:
    """(kind, status) of each resource of the spec after the pass (``failing``: backing off)."""
    if desired is None:
        return collections.Counter()
    by_resource = {o.change.resource: o.status for o in outcomes}
    changes = {c.resource: c for c in plan.changes}
    resources = [
        *(f"volume:{n}" for n in desired.volumes),
        *(f"image:{n}" for n in desired.images),
        *(f"volume_container:{n}" for n in desired.volume_containers),
        *(f"container:{n}" for n in desired.containers),
    ]
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for resource in resources:
        kind = resource.split(":", 1)[0]
        change = changes.get(resource)
        if change is None or by_resource.get(resource) == "ok":
            status = "in_sync"
        elif change.action is Action.BLOCKED:
            status = "blocked"
        elif by_resource.get(resource) == "failed" or resource in failing:
            status = "failed"
        else:
            status = "pending"
        counts[(kind, status)] += 1
    return counts
