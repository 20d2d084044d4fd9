"""The spec in force: reloaded when the files change, kept when they break.

A spec that fails to load is logged with every problem and counted; the last good one
stays in force, so nothing is deleted because a file was half-written or a pull brought
a typo. A folder with no spec files at all (an empty or half-done checkout) is refused
the same way unless ``--allow-empty``, which then means: the project wants nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace

from reconciler import logs
from reconciler.errors import DsrError, SpecError, SpecIssue
from reconciler.reconcile import load
from reconciler.request import Request
from reconciler.spec import Desired
from reconciler.spec.load import find_spec_files
from reconciler.spec.resolve import compose_project_name

log = logs.get_logger("dsr.spec")

Fingerprint = tuple[tuple[str, int, int, int, int], ...]

# A spec file is read once it has rested this long (its size and mtime unchanged): a file
# rewritten in place in two writes, 150 ms apart, was read between them and its second
# half (a volume with reclaim: delete) taken as gone. Files a checkout wrote long ago do
# not wait; an edit is applied this much later.
QUIET = 0.3
MOST_WAIT = 10.0  # a file rewritten without end is read anyway, and re-checked (digest)
MOST_BYTES = 1 << 26  # spec files are far smaller; a larger one is refused when loaded
READS = 5  # loads whose files changed under them, before this pass gives up


def fingerprint(request: Request) -> Fingerprint:
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


def settled(request: Request, seen: Fingerprint) -> Fingerprint:
    """The files' fingerprint once none changed for ``QUIET`` (at most ``MOST_WAIT``)."""
    deadline = time.monotonic() + MOST_WAIT
    while seen and time.monotonic() < deadline:
        age = time.time() - max(st[3] for st in seen) / 1e9
        if age >= QUIET or age < -QUIET:  # rested, or a clock ahead: the digest still checks
            return seen
        time.sleep(min(QUIET - age, 0.1))
        seen = fingerprint(request)
    return seen


def digest(seen: Fingerprint) -> str:
    """The sha256 of the named files' bytes (a missing one counts as such)."""
    out = hashlib.sha256()
    for path, *_ in seen:
        out.update(os.fsencode(path) + b"\0")
        try:
            with open(path, "rb") as handle:
                out.update(hashlib.sha256(handle.read(MOST_BYTES)).digest())
        except OSError as err:
            out.update(f"unreadable {err.errno}".encode())
    return out.hexdigest()


class SpecSource:
    """Loads the spec at ``request.path``; ``last_good`` is what the daemon enforces."""

    def __init__(self, request: Request, allow_empty: bool = False) -> None:
        self.request = request
        self.allow_empty = allow_empty
        self.last_good: Desired | None = None
        self.issues: tuple[SpecIssue, ...] = ()
        self.generation = 0  # grows with every spec that loads and differs from the last
        self.empty_refused = False
        self._seen: Fingerprint | None = None
        self.digest = ""  # of the files the spec in force was read from

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
            seen = settled(self.request, seen)
            self._seen = seen
            self._reload(bool(seen))
        return self.last_good

    def unchanged(self) -> bool:
        """The files hold now, and have held for ``QUIET``, what the spec in force was read
        from: asked again before a change that loses data is applied."""
        seen = fingerprint(self.request)
        return seen == settled(self.request, seen) and digest(seen) == self.digest

    def _reload(self, has_files: bool) -> None:
        self.empty_refused = False
        for _ in range(READS):  # the same bytes before and after the load, or again
            before = digest(self._seen or ())
            self._load(has_files)
            if digest(self._seen or ()) == before:
                self.digest = before
                return
            log.warning("spec changed while read; reading it again", path=self.request.path)
            self._seen = settled(self.request, fingerprint(self.request))
            has_files = bool(self._seen)
        self.digest = ""  # never proven stable: no data-loss change until it is

    def _load(self, has_files: bool) -> None:
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
