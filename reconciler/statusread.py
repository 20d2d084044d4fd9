"""What a ``Status`` is made from, read from disk: backups in the stores, the daemon.

``dsr status`` and the daemon both call these; neither talks to the engine (the caller
brings the plan).
"""

from __future__ import annotations

import os

from reconciler.backup import places, store
from reconciler.errors import DsrError
from reconciler.spec import Desired
from reconciler.statedir import StateDir


def newest_backups(desired: Desired, state: StateDir) -> dict[tuple[str, str], float]:
    """(rule, source) -> time of the newest complete snapshot, from every destination."""
    if not desired.backups:
        return {}
    snapshots = [
        s for p in places.every_place(desired, state) for s in p.find(desired.project).snapshots
    ]
    newest: dict[tuple[str, str], float] = {}
    for s in snapshots:
        if s.status != store.COMPLETE:
            continue
        key = (s.manifest.policy, s.manifest.source)
        when = s.time.timestamp()
        if when > newest.get(key, 0.0):
            newest[key] = when
    return newest


def daemon_of(state: StateDir, engine_url: str, project: str) -> tuple[int | None, bool]:
    """The pid of the daemon holding ``project`` (or None), and whether it is suspended."""
    pid = state.lock_holder(engine_url, project + ".daemon")
    if pid is None:
        return None, False
    record = state.read_daemon(project) or {}
    suspend = record.get("suspend_file")
    suspended = record.get("pid") == pid and isinstance(suspend, str) and os.path.lexists(suspend)
    return pid, suspended


def safe_newest_backups(
    desired: Desired, state: StateDir
) -> tuple[dict[tuple[str, str], float], str | None]:
    """``newest_backups``, or nothing and why when a store cannot be read."""
    try:
        return newest_backups(desired, state), None
    except (OSError, DsrError) as err:
        return {}, f"cannot read the backups: {err}"
