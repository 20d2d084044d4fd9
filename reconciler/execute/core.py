"""The executors' core: a change run operation by operation; one function per payload class of ``plan.payloads``, each one engine or
backup call, made exactly as the plan says.

``run_change`` runs a change's operations in order; when one fails, the operations its
planner gave as ``rollback`` run (best effort), and the change fails with the first error.
"Already so" counts as success (a volume or container already gone, a start of one that
runs), so an interrupted apply is finished by the next one. Nothing here chooses what to
do: what a change's operations are, and in which order, is the planner's (``plan.operations``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors

from reconciler import logs
from reconciler.engine import Engine
from reconciler.errors import ApplyError, PlanError
from reconciler.plan.model import Change, Operation
from reconciler.statedir import StateDir

log = logs.get_logger("dsr.apply")


@dataclass
class Run:
    """What one change's earlier operations left for its later ones."""

    change: Change
    stopped: set[str] = field(default_factory=set)  # containers it stopped while they ran
    backup: str | None = None  # the folder of the snapshot it took
    skipped: list[str] = field(default_factory=list)  # what that snapshot left out
    quiet: Any = None  # the users' state when a migration's backup started
    original: str = ""  # the dsr.instance of the volume a migration backed up


@dataclass(frozen=True)
class Executors:
    """The engine, the project and the state directory the executors act on."""

    engine: Engine
    project: str
    state: StateDir | None = None

    @property
    def api(self) -> docker.APIClient:
        return self.engine.api

    def run_change(self, change: Change) -> None:
        """Every operation of ``change``, in order."""
        run = Run(change)
        for operation in change.operations:
            if operation.payload is None:
                raise PlanError(f"{change.resource}: the operation {operation} has no payload")
            try:
                EXECUTORS[type(operation.payload)](self, run, operation.payload)
            except BaseException:
                self.roll_back(run, operation)
                raise

    def roll_back(self, run: Run, failed: Operation) -> None:
        for operation in failed.rollback:
            if operation.payload is None:
                continue
            try:
                EXECUTORS[type(operation.payload)](self, run, operation.payload)
            except docker.errors.APIError as err:
                log.error("rollback_failed", operation=str(operation), error=str(err))

    def need_state(self, what: str) -> StateDir:
        if self.state is None:
            raise ApplyError(f"{what} needs dsr's state directory")
        return self.state


P = TypeVar("P")
Executor = Callable[[Executors, Run, Any], None]
EXECUTORS: dict[type, Executor] = {}


def executes(kind: type[P]) -> Callable[[Callable[[Executors, Run, P], None]], Callable[[Executors, Run, P], None]]:  # fmt: skip
    """Register the executor of the payload class ``kind`` (one per class)."""

    def register(function: Callable[[Executors, Run, P], None]) -> Callable[[Executors, Run, P], None]:  # fmt: skip
        if kind in EXECUTORS:
            raise TypeError(f"two executors of {kind.__name__}")
        EXECUTORS[kind] = function
        return function

    return register
