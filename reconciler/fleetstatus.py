"""``dsr status --fleet INVENTORY``: every agent's ``/status.json`` in one table.

Each host of the inventory with an ``address`` is asked at once (one thread each, a
deadline per host), so a host that is down, slow or answers nonsense is reported as such
and never holds up or hides the others. An answer is untrusted input: its size is bounded,
it must be the status document (``format_version`` 1), and every value shown is escaped.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.escape import escape_controls
from reconciler.files import parse_json

MAX_ANSWER = 4 << 20  # bytes; a status of thousands of resources is well below
UP, DOWN, BAD, NO_ADDRESS = "up", "down", "bad-answer", "no-address"


@dataclass(frozen=True)
class Agent:
    """One inventory host and where its agent listens."""

    host: str
    address: str | None


@dataclass(frozen=True)
class AgentStatus:
    """What one agent answered, or why it did not."""

    agent: Agent
    state: str  # up | down | bad-answer | no-address
    status: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def in_sync(self) -> bool:
        return self.state == UP and self.status.get("in_sync") is True

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.agent.host,
            "address": self.agent.address,
            "state": self.state,
            "in_sync": self.in_sync,
            **({"error": self.error} if self.error else {}),
            "status": dict(self.status) if self.status else None,
        }


def fetch(agent: Agent, timeout: float) -> AgentStatus:
    """Ask one agent for ``/status.json``."""
    if not agent.address:
        return AgentStatus(agent, NO_ADDRESS, error="the inventory gives no address")
    url = agent.address.rstrip("/") + "/status.json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read(MAX_ANSWER + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        return AgentStatus(agent, DOWN, error=str(reason))
    if len(body) > MAX_ANSWER:
        return AgentStatus(agent, BAD, error=f"the answer is larger than {MAX_ANSWER} bytes")
    try:
        data = parse_json(body)
    except ValueError as err:
        return AgentStatus(agent, BAD, error=f"not JSON: {err}")
    if not isinstance(data, dict) or data.get("format_version") != 1:
        return AgentStatus(agent, BAD, error="not a dsr status document (format_version 1)")
    return AgentStatus(agent, UP, data)


def fleet_status(agents: Iterable[Agent], timeout: float = 5.0) -> list[AgentStatus]:
    """Every agent's answer, asked all at once, in inventory order."""
    agents = list(agents)
    if not agents:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(agents))) as pool:
        return list(pool.map(lambda a: fetch(a, timeout), agents))


def _text(value: object) -> str:
    return escape_controls(str(value))


def _counts(status: Mapping[str, Any]) -> str:
    counts = status.get("counts")
    if not isinstance(counts, dict):
        return "-"
    parts = [f"{_text(v)} {_text(k)}" for k, v in counts.items() if isinstance(v, int) and v]
    return ", ".join(parts) or "nothing managed"


def _last_pass(status: Mapping[str, Any]) -> str:
    last = status.get("last_pass")
    if not isinstance(last, dict):
        return "-"
    return f"{_text(last.get('result', '?'))} at {_text(last.get('time', '?'))}"


def _overdue(status: Mapping[str, Any]) -> int:
    backups = status.get("backups")
    if not isinstance(backups, list):
        return 0
    return sum(1 for b in backups if isinstance(b, dict) and b.get("overdue") is True)


def rows(results: list[AgentStatus]) -> list[tuple[str, ...]]:
    """The table's rows: host, state, in sync, resources, last pass, backups overdue."""
    out: list[tuple[str, ...]] = []
    for r in results:
        if r.state != UP:
            out.append((_text(r.agent.host), r.state.upper(), "-", _text(r.error), "-", "-"))
            continue
        status = r.status
        sync = "yes" if r.in_sync else "NO"
        out.append(
            (
                _text(r.agent.host),
                UP,
                sync,
                _counts(status),
                _last_pass(status),
                str(_overdue(status)),
            )
        )
    return out


HEADERS = ("HOST", "AGENT", "IN SYNC", "RESOURCES", "LAST PASS", "BACKUPS OVERDUE")


def to_text(results: list[AgentStatus]) -> str:
    table = [HEADERS, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    down = [r.agent.host for r in results if r.state != UP]
    differs = [r.agent.host for r in results if r.state == UP and not r.in_sync]
    lines.append("")
    lines.append(
        f"{len(results)} hosts: {len(results) - len(down) - len(differs)} in sync, "
        f"{len(differs)} differ, {len(down)} not answering"
    )
    return "\n".join(line.rstrip() for line in lines)


def to_json(results: list[AgentStatus]) -> dict[str, Any]:
    return {"format_version": 1, "hosts": [r.to_json() for r in results]}


def differs(results: list[AgentStatus]) -> bool:
    """Some host is not answering or not in sync (``dsr status`` exit 2)."""
    return any(not r.in_sync for r in results)
