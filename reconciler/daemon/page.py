"""The daemon's status page (``/``) and its JSON (``/status.json``), from one ``Status``.

Plain HTML with a little CSS and no script: the browser reloads it every ``REFRESH``
seconds (``<meta http-equiv="refresh">``). Every text from the spec or the engine is
escaped. Rendered documents are kept for a second, so a page polled hard while a pass
runs costs one render, not one per request.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable

from reconciler.status import IN_SYNC, STATES, Status

REFRESH = 10
CACHE_SECONDS = 1.0
HTML = "text/html; charset=utf-8"
JSON = "application/json"

_COLOURS = {"in-sync": "#1a7f37", "drifted": "#9a6700", "missing": "#bc4c00", "blocked": "#cf222e"}


class Pages:
    """``/`` and ``/status.json`` for the status the daemon last made."""

    def __init__(
        self, current: Callable[[], Status | None], clock: Callable[[], float] = time.time
    ) -> None:
        self.current = current
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, int, bytes]] = {}

    def warm(self) -> None:
        """Render both documents now (the loop calls it after each pass), so that requests
        find them made instead of rendering while a pass holds the interpreter."""
        self._render("html")
        self._render("json")

    def routes(self) -> dict[str, Callable[[], tuple[bytes, str]]]:
        return {
            "/": lambda: (self._render("html"), HTML),
            "/status.json": lambda: (self._render("json"), JSON),
        }

    def _render(self, what: str) -> bytes:
        status = self.current()
        now = self.clock()
        with self._lock:
            cached = self._cache.get(what)
            if cached and cached[1] == id(status) and now - cached[0] < CACHE_SECONDS:
                return cached[2]
        if status is None:
            body = (
                json.dumps({"format_version": 1, "error": {"message": "no pass has run yet"}})
                if what == "json"
                else _page("dsr", "<p>No pass has run yet.</p>")
            ).encode()
        elif what == "json":
            body = json.dumps(status.to_json(now), separators=(",", ":")).encode()
        else:
            body = render_html(status, now).encode()
        with self._lock:
            self._cache[what] = (now, id(status), body)
        return body


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


_CSS = (
    "body{font:15px/1.4 system-ui,sans-serif;margin:24px 32px;color:#1f2328;background:#fff}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px}"
    "table{border-collapse:collapse;min-width:640px}"
    "td,th{padding:4px 12px 4px 0;text-align:left;border-bottom:1px solid #d0d7de;"
    "vertical-align:top}"
    ".state{font-weight:600}.muted{color:#656d76}.bad{color:#cf222e;font-weight:600}"
    ".ok{color:#1a7f37;font-weight:600}.counts>span{margin-right:20px}"
)


def _state(state: str) -> str:
    colour = _COLOURS.get(state, "#1f2328")
    return f'<span class=state style="color:{colour}">{html.escape(state)}</span>'


def render_html(status: Status, now: float) -> str:
    e = html.escape
    differs = status.differs(now)
    verdict = "<span class=bad>differs</span>" if differs else "<span class=ok>in sync</span>"
    counts = status.counts()
    parts = [
        f"<h1>dsr: project {e(status.project)} on {e(status.host)}</h1>",
        f"<p id=verdict>{verdict}",
        f" <span class=muted>(engine read {_ago(now, status.observed_at)};"
        f" this page reloads every {REFRESH} s)</span></p>",
        "<p class=counts>"
        + "".join(f"<span>{_state(s)}: <b id=count-{s}>{counts[s]}</b></span>" for s in STATES)
        + "</p>",
    ]
    daemon = (
        "suspended: nothing is applied while the suspend file exists"
        if status.suspended
        else "running"
    )
    parts.append(f"<p>daemon pid {status.daemon_pid}: <b id=daemon>{e(daemon)}</b></p>")
    parts.append("<h2>Last pass</h2>")
    p = status.last_pass
    if p is None:
        parts.append("<p class=muted>none recorded</p>")
    else:
        done = ", ".join(f"{k} {v}" for k, v in p.summary.items() if v) or "no changes"
        result = f"<b id=last-result class={'ok' if p.result == 'ok' else 'bad'}>{e(p.result)}</b>"
        parts.append(
            f"<p>{result} {_ago(now, p.time)} by {e(p.by or 'dsr')}: {e(done)}"
            + (f"; applied {p.applied}" if p.applied else "")
            + (f"; <span class=bad>{p.failed} failed</span>" if p.failed else "")
            + (f"<br><span class=bad>{e(p.error)}</span>" if p.error else "")
            + "</p>"
        )
    parts.append("<h2>Resources</h2><table id=resources><tr><th>resource<th>state<th>why</tr>")
    # Those needing attention first; in-sync ones after, in spec order.
    ordered = sorted(status.resources, key=lambda r: r.state == IN_SYNC)
    for r in ordered:
        why = f"{e(r.reason_code or '')}: {e(r.reason or '')}" if r.reason_code else ""
        parts.append(f"<tr><td>{e(r.resource)}<td>{_state(r.state)}<td>{why}</tr>")
    parts.append("</table>")
    if status.backups:
        parts.append("<h2>Backups</h2><table id=backups>")
        parts.append("<tr><th>source<th>rule<th>schedule<th>last<th></tr>")
        for b in status.backups:
            last = "never" if b.last is None else _ago(now, b.last)
            late = "<span class=bad>overdue</span>" if b.overdue(now) else ""
            parts.append(
                f"<tr><td>{e(b.source)}<td>{e(b.policy)}<td>{e(b.schedule or '-')}"
                f"<td>{e(last)}<td>{late}</tr>"
            )
        parts.append("</table>")
    for problem in status.errors:
        parts.append(f"<p class=bad>{e(problem)}</p>")
    parts.append('<p class=muted>JSON: <a href="status.json">status.json</a></p>')
    title = f"dsr {status.project}: {'differs' if differs else 'in sync'}"
    return _page(title, "\n".join(parts))


def _ago(now: float, when: float) -> str:
    if not when:
        return "never"
    s = max(0, int(now - when))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"
