"""``--notify URL``: a JSON event POSTed for what needs a person's attention.

Events: ``pass_failed`` (a pass that failed or stopped with an error), ``blocked`` (the set
of blocked changes grew or changed), ``backup_failed``, ``backup_late`` (a scheduled
backup is overdue) and ``git_pull_failed``. The same condition is told once, not at every
pass: an event is sent again only after its condition cleared, or with other details.

Sending never holds the loop: events go through a bounded queue to one thread, which
tries each URL up to ``ATTEMPTS`` times with a growing pause and a deadline per request.
When the queue is full, the oldest event is dropped (and counted). The body::

    {"format_version": 1, "event": "pass_failed", "project": "web", "host": "node-1",
     "time": "2026-12-07T16:20:18+00:00", "message": "...", "details": {...}}
"""

from __future__ import annotations

import collections
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler import logs
from reconciler.spec.redact import scrub

log = logs.get_logger("dsr.notify")

EVENTS = ("pass_failed", "blocked", "backup_failed", "backup_late", "git_pull_failed")
ATTEMPTS = 3
TIMEOUT = 5.0
FIRST_PAUSE = 1.0
QUEUE_MAX = 100
MAX_BODY = 64 * 1024

Counted = Callable[[str, str], None]  # (event, outcome) -> count it


class Notifier:
    """Posts events to every URL, in a background thread. ``start`` before ``send``."""

    def __init__(
        self,
        urls: tuple[str, ...],
        project: Callable[[], str],
        host: str,
        stop: threading.Event,
        counted: Counted | None = None,
        pause: float = FIRST_PAUSE,
    ) -> None:
        self.urls = urls
        self.project = project
        self.host = host
        self.stop_event = stop
        self.counted = counted or (lambda event, outcome: None)
        self.pause = pause
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = threading.Condition()
        self._told: dict[tuple[str, str], str] = {}  # (event, key) -> details told
        self._thread = threading.Thread(target=self._run, name="dsr-notify", daemon=True)

    def start(self) -> None:
        if self.urls:
            self._thread.start()

    # -- what the daemon reports -----------------------------------------------------------------
    def raised(
        self,
        event: str,
        key: str,
        message: str,
        details: Mapping[str, Any],
        same: object = None,
    ) -> None:
        """The condition ``(event, key)`` holds: tell it, unless it was told just so (with
        the same ``details``, or the same ``same`` when given)."""
        fingerprint = json.dumps(details if same is None else same, sort_keys=True, default=str)
        if self._told.get((event, key)) == fingerprint:
            return
        self._told[(event, key)] = fingerprint
        self.send(event, message, details)

    def cleared(self, event: str, key: str = "") -> None:
        """The condition no longer holds: the next time it does, it is told again."""
        self._told.pop((event, key), None)

    def send(self, event: str, message: str, details: Mapping[str, Any]) -> None:
        if not self.urls:
            return
        body = {
            "format_version": 1,
            "event": event,
            "project": self.project(),
            "host": self.host,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "message": message[:2000],
            "details": dict(details),
        }
        with self._ready:
            if len(self._queue) >= QUEUE_MAX:
                dropped = self._queue.popleft()
                self.counted(dropped["event"], "dropped")
                log.warning("notification dropped", kind=dropped["event"], queued=QUEUE_MAX)
            self._queue.append(body)
            self._ready.notify()

    # -- the sending thread ----------------------------------------------------------------------
    def _run(self) -> None:
        from reconciler.daemon.notify import block_signals

        block_signals()
        while not self.stop_event.is_set():
            with self._ready:
                while not self._queue and not self.stop_event.is_set():
                    self._ready.wait(1.0)
                if not self._queue:
                    return
                body = self._queue.popleft()
            data = scrub(json.dumps(body, default=str)).encode()[:MAX_BODY]
            for url in self.urls:
                try:
                    ok = self._post(url, data)
                except Exception:  # even a log stream gone bad must not end this thread
                    ok = False
                self.counted(body["event"], "sent" if ok else "failed")

    def _post(self, url: str, data: bytes) -> bool:
        pause = self.pause
        for attempt in range(1, ATTEMPTS + 1):
            request = urllib.request.Request(
                url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "dsr"},
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    response.read(MAX_BODY)
                    return True
            except urllib.error.HTTPError as err:
                error = f"HTTP {err.code}"
                if 400 <= err.code < 500 and err.code not in (408, 429):
                    attempt = ATTEMPTS  # the receiver refuses it: trying again will not help
            except (urllib.error.URLError, OSError, ValueError) as err:
                error = str(getattr(err, "reason", err))
            if attempt >= ATTEMPTS or self.stop_event.wait(pause):
                log.warning("notification failed", url=_safe_url(url), error=error)
                return False
            pause *= 2
        return False

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the queue to empty (tests, shutdown)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            time.sleep(0.05)


def _safe_url(url: str) -> str:
    """The URL without credentials or query (a webhook's token often lives there)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…"


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a notify target, or None."""
    if not url.startswith(("http://", "https://")):
        return f"{url!r} is not an http:// or https:// URL"
    if any(ord(c) < 33 for c in url):
        return "the URL holds spaces or control characters"
    try:  # what urllib would trip over at the first event, said at start instead
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as err:
        return f"{_safe_url(url)} is not a URL urllib can post to: {err}"
    if not parts.hostname:
        return f"{_safe_url(url)} names no host"
    return None
