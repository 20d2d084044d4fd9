"""Docker events: a listener thread that reconnects, and the judge of what an event means.

Only a few events can make the engine differ from the spec: a container destroyed,
stopped, dead or renamed, a volume destroyed. The listener asks the engine for those
alone. Container events carry the container's labels, so ``dsr.project`` tells whose it
is; volume events carry none, so names come from the last loaded spec.

The engine keeps only its last 256 events and drops a slow subscriber's, so no event is
trusted to be complete: every (re)connect wakes the loop for a full pass (habit 7).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests

from reconciler import logs
from reconciler.daemon.notify import block_signals
from reconciler.labels import owned_by
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX

log = logs.get_logger("dsr.events")

# update: docker update (a restart policy changed in place is drift, as a stop is).
CONTAINER_ACTIONS = ("destroy", "die", "stop", "rename", "update")
VOLUME_ACTIONS = ("destroy",)
FILTERS = {"type": ["container", "volume"], "event": sorted({*CONTAINER_ACTIONS, *VOLUME_ACTIONS})}
SLACK = 0.01  # seconds: Docker stamps an event before it answers the call that caused it


@dataclass(frozen=True)
class Event:
    """The part of a Docker event the daemon uses."""

    kind: str  # container | volume
    action: str
    names: tuple[str, ...]  # a rename has the new name and the old one
    time: float  # engine wall clock, seconds
    labels: dict[str, str]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Event:
        actor = raw.get("Actor") or {}
        attrs: dict[str, str] = actor.get("Attributes") or {}
        kind = raw.get("Type", "")
        if kind == "volume":
            names: tuple[str, ...] = (actor.get("ID", ""),)
        else:
            names = tuple(n.lstrip("/") for n in (attrs.get("name"), attrs.get("oldName")) if n)
        stamp = raw.get("timeNano")
        when = stamp / 1e9 if stamp else float(raw.get("time", 0))
        return cls(kind, raw.get("Action", "").split(":")[0], names, when, attrs)


def base_name(name: str) -> str:
    """The spec name of a container caught mid-replace (``web_dsr_new`` is ``web``)."""
    for suffix in (NEW_SUFFIX, OLD_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def relevant(event: Event, project: str, names: set[str]) -> bool:
    """Whether ``event`` may have moved the engine away from the spec of ``project``."""
    if event.kind == "volume":
        return event.action in VOLUME_ACTIONS and event.names[0] in names
    if event.kind != "container" or event.action not in CONTAINER_ACTIONS:
        return False
    ours = owned_by(event.labels, project)
    return ours or any(base_name(n) in names for n in event.names)


class OwnChanges:
    """Which events dsr caused itself, so they do not start another pass (no flapping).

    For each resource a pass changes, the window from the pass's start to the moment the
    change finished (engine wall clock; dsr talks to a local engine). An event on that
    resource stamped inside the window is dsr's own, whenever it arrives. Events arriving
    during a pass are held until it ends, because the pass may still be changing them.
    A change made by someone else to the very resource dsr is changing, in that same
    window, is only seen by the next timer pass: the price of not fighting ourselves.
    """

    def __init__(self, keep: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, float]] = {}
        self._started: float | None = None
        self._held: list[Event] = []
        self._keep = keep
        self.ignored = 0

    def begin(self, now: float) -> None:
        with self._lock:
            self._started = now
            self._windows = {n: w for n, w in self._windows.items() if w[1] > now - self._keep}

    def changed(self, names: Iterable[str], now: float) -> None:
        with self._lock:
            start = self._started if self._started is not None else now
            for name in names:
                self._windows[name] = (start, now + SLACK)

    def end(self) -> list[Event]:
        """The held events that were not dsr's own: they need another pass."""
        with self._lock:
            self._started = None
            held, self._held = self._held, []
            return [e for e in held if not self._own(e)]

    def offer(self, event: Event) -> bool:
        """True when ``event`` should wake the loop now."""
        with self._lock:
            if self._own(event):
                return False
            if self._started is not None:
                self._held.append(event)
                return False
            return True

    def _own(self, event: Event) -> bool:
        for name in event.names:
            window = self._windows.get(base_name(name))
            if window and window[0] <= event.time <= window[1]:
                self.ignored += 1
                return True
        return False


class EventListener(threading.Thread):
    """Follows the engine's event stream; reconnects with a capped backoff."""

    def __init__(
        self,
        url: str,
        on_event: Callable[[Event], None],
        on_connect: Callable[[bool], None],
        on_disconnect: Callable[[str], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="dsr-events", daemon=True)
        self.url = url
        self.on_event = on_event
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.stop_event = stop
        self._stream: Any = None
        self.connects = 0

    def run(self) -> None:
        block_signals()
        delay = 0.1
        while not self.stop_event.is_set():
            connects = self.connects
            try:
                self._follow()
                reason = "the event stream ended"
            except (docker.errors.DockerException, requests.RequestException, OSError) as err:
                reason = str(err)
            if self.connects > connects:
                delay = 0.1  # it was up: retry soon, the engine is probably restarting
            if self.stop_event.is_set():
                return
            self.on_disconnect(reason)
            self.stop_event.wait(delay)
            delay = min(delay * 2, 5.0)

    def _follow(self) -> None:
        api = docker.APIClient(base_url=self.url, version="auto", timeout=10)
        try:
            self._stream = api.events(decode=True, filters=FILTERS)
            self.connects += 1
            self.on_connect(self.connects == 1)
            for raw in self._stream:
                if self.stop_event.is_set():
                    return
                self.on_event(Event.parse(raw))
        finally:
            self._stream = None
            api.close()

    def close(self) -> None:
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a dying stream from another thread; nothing to do
                log.debug("event stream close failed", exc_info=True)
