"""The spec in force: reloaded when the files change, kept when they break.

A spec that fails to load is logged with every problem and counted; the last good one
stays in force, so nothing is deleted because a file was half-written or a pull brought
a typo. A folder with no spec files at all (an empty or half-done checkout) is refused
the same way unless ``--allow-empty``, which then means: the project wants nothing.
"""

from __future__ import annotations

import os
from dataclasses import replace

from reconciler import logs
from reconciler.errors import DsrError, SpecError, SpecIssue
from reconciler.reconcile import PassRequest, load
from reconciler.spec import Desired
from reconciler.spec.load import find_spec_files
from reconciler.spec.resolve import compose_project_name

log = logs.get_logger("dsr.spec")

Fingerprint = tuple[tuple[str, int, int, int, int], ...]


def fingerprint(request: PassRequest) -> Fingerprint:
    """Each spec (and policy) file's identity and times: cheap, and changes with any save."""
    paths = find_spec_files(request.path)
    if request.policy_file:
        paths.append(request.policy_file)
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append((path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


class SpecSource:
    """Loads the spec at ``request.path``; ``last_good`` is what the daemon enforces."""

    def __init__(self, request: PassRequest, allow_empty: bool = False) -> None:
        self.request = request
        self.allow_empty = allow_empty
        self.last_good: Desired | None = None
        self.issues: tuple[SpecIssue, ...] = ()
        self.generation = 0  # grows with every spec that loads and differs from the last
        self.empty_refused = False
        self._seen: Fingerprint | None = None

    def project(self) -> str:
        """The project the daemon locks: the spec's, else --project, else the folder's."""
        if self.last_good is not None:
            return self.last_good.project
        if self.request.project:
            return self.request.project
        path = os.path.abspath(self.request.path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        # A folder whose name is no project name gives a spec error when loaded; until a
        # spec loads, the lock still needs a name.
        return compose_project_name(folder) or "unnamed"

    def current(self, force: bool = False) -> Desired | None:
        """The spec in force after reading the files again when they (may) have changed."""
        seen = fingerprint(self.request)
        if force or seen != self._seen:
            self._seen = seen
            self._reload(bool(seen))
        return self.last_good

    def _reload(self, has_files: bool) -> None:
        self.empty_refused = False
        if not has_files and self.allow_empty:
            self._accept(Desired(project=self.project()))
            return
        if not has_files:
            self.empty_refused = True
            self.issues = ()
            log.error(
                "spec refused",
                path=self.request.path,
                error="no spec files: an empty checkout would delete the whole project; "
                "the last good spec stays in force (--allow-empty applies an empty spec)",
            )
            return
        try:
            desired = load(self.request)
        except DsrError as err:  # a SpecError, or an unreadable --policy file
            if isinstance(err, SpecError):
                self.issues = err.issues
            else:
                where = self.request.policy_file or self.request.path
                self.issues = (SpecIssue(where, 1, "", str(err)),)
            log.error(
                "spec error",
                path=self.request.path,
                errors=[str(i) for i in self.issues],
                kept="the last good spec" if self.last_good else "nothing applied yet",
            )
            return
        self._accept(desired)

    def _accept(self, desired: Desired) -> None:
        self.issues = ()
        if self.last_good is None or _content(self.last_good) != _content(desired):
            self.generation += 1
        self.last_good = desired


def _content(desired: Desired) -> Desired:
    """``desired`` without where things came from: moving a line is not a new spec."""
    return replace(desired, origins={}, files=())
