"""What an interrupted backup or restore must finish or undo, kept in the project record.

Before a step that leaves a host worse while it runs, the step is written down; once it is
undone, the entry goes. A SIGKILL (or SIGTERM, a reboot) in between leaves the entry, and
the next dsr run of the project (apply, the daemon's pass, backup, restore) reads it first:

- ``stopped``: containers a quiesced backup or a ``restore --stop`` stopped (id -> name);
  they are started again.
- ``restoring``: volumes a ``restore --into`` made (name -> snapshot id); a killed one
  left a half-filled volume that a new ``restore --into`` of that name may replace.

Every read-modify-write happens under the project's lock, which all those commands hold.
"""

from __future__ import annotations

import contextlib

import docker.errors

from reconciler import logs
from reconciler.engine import Engine
from reconciler.record import ProjectRecord
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.backup")


class Journal:
    """The ``interrupted`` entries of one project's record (``state`` None: kept nowhere)."""

    def __init__(self, state: StateDir | None, project: str) -> None:
        self.state = state
        self.project = project

    def _table(self, name: str) -> dict[str, str]:
        if self.state is None:
            return {}
        return self.state.load_record(self.project).table(name)

    def _change(self, name: str, add: dict[str, str], drop: tuple[str, ...] = ()) -> None:
        if self.state is None:
            return

        def change(record: ProjectRecord) -> ProjectRecord:
            table = {**record.table(name), **add}
            for key in drop:
                table.pop(key, None)
            return record.with_table(name, table)

        self.state.update_record(self.project, change)

    def stopping(self, containers: dict[str, str]) -> None:
        if containers:
            self._change("stopped", containers)

    def started(self, ids: list[str]) -> None:
        if ids:
            self._change("stopped", {}, tuple(ids))

    def stopped(self) -> dict[str, str]:
        return self._table("stopped")

    def restoring(self, volume: str, snapshot: str) -> None:
        self._change("restoring", {volume: snapshot})

    def restored(self, volume: str) -> None:
        self._change("restoring", {}, (volume,))

    def half_restored(self, volume: str) -> bool:
        return volume in self._table("restoring")


def finish(engine: Engine, journal: Journal) -> list[str]:
    """Start again the containers an interrupted run stopped; the names started."""
    done, names = [], []
    for container, name in sorted(journal.stopped().items()):
        try:
            engine.api.start(container)
            names.append(name)
            log.info("container_started", container=name, reason="an interrupted run stopped it")
        except docker.errors.NotFound:
            pass  # removed since: nothing to start
        except docker.errors.APIError as err:
            log.error("container_not_started", container=name, error=str(err.explanation or err))
            continue
        done.append(container)
    with contextlib.suppress(OSError):
        journal.started(done)
    return names
