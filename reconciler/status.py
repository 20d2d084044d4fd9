"""``dsr status`` and the daemon's status page: what dsr manages, whether it is in sync.

A ``Status`` is a value made without I/O from what the caller gathered: the spec, a plan
against the live engine (with the outcomes of the pass that made it, for the daemon), the
last pass recorded in the state directory, the newest backup of each source, and the
daemon holding the project. ``to_json`` is the contract's shape; the text and the HTML are
rendered from the same value.

A resource is ``in-sync`` (no change planned, or its change just succeeded), ``missing``
(to create), ``blocked`` (a change dsr will not make on its own) or ``drifted`` (any other
change: a stopped container, a changed spec, an object that left the spec). A scheduled
backup is ``overdue`` when its newest complete snapshot is older than the last time its
schedule named, by more than a grace of a tenth of its period (1 min to 1 h).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from croniter import croniter

from reconciler.escape import escape_controls
from reconciler.lastpass import LastPass
from reconciler.plan.model import Action, Change, ReasonCode

if TYPE_CHECKING:
    from reconciler.spec import Desired

FORMAT = 1
IN_SYNC, DRIFTED, MISSING, BLOCKED = "in-sync", "drifted", "missing", "blocked"
STATES = (IN_SYNC, DRIFTED, MISSING, BLOCKED)
_WORSE = {IN_SYNC: 0, DRIFTED: 1, MISSING: 2, BLOCKED: 3}


@dataclass(frozen=True)
class ResourceState:
    resource: str
    state: str
    reason_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class BackupState:
    """A backup rule's source and its newest complete snapshot (epoch seconds)."""

    source: str
    policy: str
    schedule: str | None
    last: float | None

    def age(self, now: float) -> float | None:
        return None if self.last is None else max(0.0, now - self.last)

    def overdue(self, now: float) -> bool:
        return is_overdue(self.schedule, self.last, now)


@dataclass(frozen=True)
class Status:
    project: str
    host: str
    resources: tuple[ResourceState, ...] = ()
    backups: tuple[BackupState, ...] = ()
    last_pass: LastPass | None = None
    daemon_pid: int | None = None
    suspended: bool = False
    observed_at: float = 0.0  # when the engine was read
    errors: tuple[str, ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for r in self.resources:
            out[r.state] += 1
        return out

    def differs(self, now: float) -> bool:
        """Something is not as the spec says: exit 2 of ``dsr status``."""
        return (
            any(r.state != IN_SYNC for r in self.resources)
            or any(b.overdue(now) for b in self.backups)
            or bool(self.errors)
        )

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "format_version": FORMAT,
            "project": self.project,
            "host": self.host,
            "in_sync": not self.differs(now),
            "observed": _iso(self.observed_at) if self.observed_at else None,
            "counts": self.counts(),
            "resources": [
                {
                    "resource": r.resource,
                    "state": r.state,
                    **({"reason_code": r.reason_code} if r.reason_code else {}),
                    **({"reason": r.reason} if r.reason else {}),
                }
                for r in self.resources
            ],
            "last_pass": _last_pass(self.last_pass),
            "backups": [
                {
                    "source": b.source,
                    "policy": b.policy,
                    "schedule": b.schedule,
                    "last": _iso(b.last) if b.last is not None else None,
                    "age_s": None if (age := b.age(now)) is None else round(age),
                    "overdue": b.overdue(now),
                }
                for b in self.backups
            ],
            "daemon": {"pid": self.daemon_pid, "suspended": self.suspended},
            "errors": list(self.errors),
        }


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


def _last_pass(record: LastPass | None) -> dict[str, Any] | None:
    if record is None:
        return None
    out = record.to_json()
    out.pop("format_version", None)
    out["time"] = _iso(record.time)
    return out


# -- resources --------------------------------------------------------------------------------


def spec_resources(desired: Desired) -> list[str]:
    return [
        *(f"volume:{n}" for n in desired.volumes),
        *(f"image:{n}" for n in desired.images),
        *(f"volume_container:{n}" for n in desired.volume_containers),
        *(f"container:{n}" for n in desired.containers),
        *(f"network:{n}" for n in desired.networks),
    ]


def state_of(change: Change) -> str:
    if change.action is Action.BLOCKED:
        return BLOCKED
    if change.code is ReasonCode.MISSING or (
        change.action in (Action.CREATE, Action.BUILD) and change.code is not ReasonCode.LEFTOVER
    ):
        return MISSING
    return DRIFTED


def resource_states(
    desired: Desired, changes: Iterable[Change], done: Mapping[str, str] | None = None
) -> tuple[ResourceState, ...]:
    """Every resource of the spec, then each other object a change acts on (an orphan, a
    leftover), in that order. ``done``: resource -> outcome of the pass that planned them
    (a change that succeeded leaves its resource in sync)."""
    done = done or {}
    found: dict[str, ResourceState] = {
        r: ResourceState(r, IN_SYNC) for r in spec_resources(desired)
    }
    for change in changes:
        if done.get(change.resource) == "ok":
            continue
        state = state_of(change)
        now = found.get(change.resource)
        if now is None or _WORSE[state] > _WORSE[now.state]:
            found[change.resource] = ResourceState(
                change.resource, state, change.code.value, change.reason
            )
    return tuple(found.values())


# -- backups ------------------------------------------------------------------------------------


def backup_states(
    desired: Desired, newest: Mapping[tuple[str, str], float]
) -> tuple[BackupState, ...]:
    """Each (rule, source) of the spec with its newest complete snapshot from ``newest``."""
    out = []
    for name, rule in sorted(desired.backups.items()):
        sources = [*(f"volume:{v}" for v in rule.volumes), *(f"path:{p}" for p in rule.paths)]
        for source in sources:
            out.append(BackupState(source, name, rule.schedule, newest.get((name, source))))
    return tuple(out)


def is_overdue(schedule: str | None, last: float | None, now: float) -> bool:
    """Whether the newest snapshot misses the last run the schedule named (see above)."""
    if not schedule:
        return False
    base = datetime.fromtimestamp(now).astimezone()
    try:
        it = croniter(schedule, base)
        prev = float(it.get_prev(float))
        before = float(it.get_prev(float))
    except (ValueError, KeyError):
        return False
    period = max(prev - before, 60.0)
    grace = min(max(period / 10, 60.0), 3600.0)
    # A run that has just been due may still be running: judge the one before it then.
    due = prev if now - prev >= grace else before
    return last is None or last < due - 60.0  # a minute of clock skew


# -- text -------------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def to_text(status: Status, now: float) -> str:
    """What ``dsr status`` prints: resources not in sync first, then the rest as a count."""
    counts = status.counts()
    verdict = "in sync" if not status.differs(now) else "DIFFERS"
    lines = [f"project {status.project} on {status.host}: {verdict}"]
    lines.append("  " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for r in status.resources:
        if r.state != IN_SYNC:
            why = f" ({r.reason_code}: {r.reason})" if r.reason else ""
            lines.append(f"  {r.state:<8} {r.resource}{why}")
    p = status.last_pass
    if p is None:
        lines.append("last pass: none recorded")
    else:
        done = ", ".join(f"{k} {v}" for k, v in p.summary.items() if v) or "no changes"
        lines.append(f"last pass: {_iso(p.time)} ({_ago(now - p.time)}) by {p.by or 'dsr'}: ")
        lines[-1] += f"{p.result}; {done}" + (f"; {p.error}" if p.error else "")
    for b in status.backups:
        age = b.age(now)
        when = "never" if b.last is None or age is None else f"{_iso(b.last)} ({_ago(age)})"
        late = "  OVERDUE" if b.overdue(now) else ""
        lines.append(f"backup {b.policy} {b.source}: last {when}{late}")
    if status.daemon_pid is None:
        lines.append("daemon: not running")
    else:
        state = "suspended" if status.suspended else "running"
        lines.append(f"daemon: pid {status.daemon_pid}, {state}")
    lines.extend(f"error: {e}" for e in status.errors)
    # Reasons and errors quote names and paths from the spec and the engine: one line each,
    # never a terminal escape.
    return "\n".join(escape_controls(line) for line in lines)
