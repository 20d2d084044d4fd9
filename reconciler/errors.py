"""The errors dsr raises, and the one shape every user-facing spec problem takes.

The tree::

    DsrError                    root: everything dsr raises on purpose
    ├── SpecError               one or more spec problems (file, line, spec path, message)
    ├── PolicyError             the admin policy file is unreadable or invalid
    ├── EngineError             the Docker engine failed or could not be reached
    │   └── EngineTimeout       the engine did not answer within --engine-timeout
    ├── LockError               another dsr process holds the project's lock
    ├── PlanError               a plan cannot be used
    │   └── StalePlanError      a saved plan no longer matches the live engine
    └── ApplyError              an operation of a change could not be carried out

Commands catch ``DsrError`` at the top, print it and exit 1; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.escape import escape_controls


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One problem in a spec file, printed as ``FILE:LINE: spec.path: message``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return escape_controls(text)  # one issue is one line, and never drives the terminal


class DsrError(Exception):
    """Root of every error dsr raises on purpose; its text is meant for the user."""


class SpecError(DsrError):
    """A spec set is invalid. Holds every issue found, sorted by file, line and path."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(sorted(set(issues)))
        super().__init__("\n".join(str(i) for i in self.issues))


class PolicyError(DsrError):
    """The admin policy file (``--policy``) cannot be read or is invalid."""


class EngineError(DsrError):
    """The Docker engine answered with an error or could not be reached."""


class EngineTimeout(EngineError):
    """The engine accepted a request and did not answer within ``--engine-timeout``."""


class LockError(DsrError):
    """Another dsr process holds the lock of this engine and project."""


class PlanError(DsrError):
    """A plan (usually a saved plan file) cannot be used."""


class StalePlanError(PlanError):
    """A saved plan was made against live state that has changed since."""


class ApplyError(DsrError):
    """An operation of a change could not be carried out as the plan said (an image that
    cannot be pulled or built, a backup that is missing, a volume that is not the one the
    plan saw); the change fails, nothing after it in that change runs."""
