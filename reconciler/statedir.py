"""dsr's state directory: the one module that knows its layout, and the lock kept in it.

Layout (``--state-dir``, default ``/var/lib/dsr`` for root, else ``$XDG_STATE_HOME/dsr``)::

    STATE_DIR/
    ├── manifests/      one JSON per data-packed build: its context's entries, for reasons
    ├── hash-cache/     per image key: (size, mtime, inode, ctime) -> content hash
    ├── backups/        the default backup destination: PROJECT/ID/
    ├── backup-manifests/  plain copies of the encrypted manifests this host stored
    ├── staging/        PID/: an archive on its way to or from a store (S3, encrypted)
    ├── records/        DIGEST.json: what dsr remembers of a project (reconciler.record:
    │                   reclaim, migrations, adoptions...), DIGEST the sha256 of the whole
    │                   project name; DIGEST.json.lock: the lock of its read-modify-write
    ├── passes/         DIGEST.json: the last pass that could apply (time, result, changes)
    ├── daemons/        DIGEST.json: the running daemon's pid and suspend file
    ├── locks/          one flock file per engine and project
    ├── plan-key        the key that signs saved plans made on this machine (mode 0600)
    └── backup-key      the key of the snapshots' keyed digests (HMAC of each manifest)

Only this module builds paths inside the state directory; everything else asks it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reconciler.errors import LockError
from reconciler.files import parse_json, read_regular, write_json
from reconciler.record import ProjectRecord


def default_state_dir() -> str:
    """``DSR_STATE_DIR``, else ``/var/lib/dsr`` for root, else ``$XDG_STATE_HOME/dsr``."""
    if os.environ.get("DSR_STATE_DIR"):
        return os.environ["DSR_STATE_DIR"]
    if os.geteuid() == 0:
        return "/var/lib/dsr"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "dsr")


MAX_RECORD_BYTES = 16 << 20  # a record of thousands of volumes is well under 1 MiB


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _safe(text: str) -> str:
    """``text`` as one file-name component: readable, never a path."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "_"


@dataclass(frozen=True)
class StateDir:
    """Paths inside one state directory. Creating the object touches nothing on disk."""

    root: str

    @property
    def manifests(self) -> str:
        return os.path.join(self.root, "manifests")

    @property
    def hash_cache(self) -> str:
        return os.path.join(self.root, "hash-cache")

    @property
    def backups(self) -> str:
        """The default backup destination (a rule's ``destination`` replaces it)."""
        return os.path.join(self.root, "backups")

    @property
    def staging(self) -> str:
        """Archives being made for, or fetched from, a store that is not a plain folder."""
        return os.path.join(self.root, "staging")

    @property
    def known_manifests(self) -> str:
        """The plain manifests of the encrypted snapshots this host stored (to prune them)."""
        return os.path.join(self.root, "backup-manifests")

    @property
    def records(self) -> str:
        return os.path.join(self.root, "records")

    @property
    def passes(self) -> str:
        return os.path.join(self.root, "passes")

    @property
    def daemons(self) -> str:
        return os.path.join(self.root, "daemons")

    @property
    def locks(self) -> str:
        return os.path.join(self.root, "locks")

    @property
    def plan_key_file(self) -> str:
        return os.path.join(self.root, "plan-key")

    @property
    def backup_key_file(self) -> str:
        # A fleet shares one key (DSR_BACKUP_KEY_FILE, e.g. a Swarm secret of 64 bytes),
        # so that a host trusts the snapshot another one offers when a volume moves.
        return os.environ.get("DSR_BACKUP_KEY_FILE") or os.path.join(self.root, "backup-key")

    def manifest(self, tag: str) -> str:
        """The manifest file of the data-packed build tagged ``tag``."""
        return os.path.join(self.manifests, tag.replace("/", "_").replace(":", "@") + ".json")

    def record(self, project: str) -> str:
        """The record file of ``project``: named by a digest of the whole name, so two
        projects never share one (names that agreed in their first 80 characters did)."""
        return os.path.join(self.records, f"{_digest(project)}.json")

    def _old_record(self, project: str) -> str | None:
        """The record file earlier versions kept (``records/NAME.json``), when that name
        can only have been this project's: a name of at most 80 characters that ``_safe``
        leaves as it is. A longer one may hold another project's record: not read."""
        if len(project) >= 80 or _safe(project) != project:
            return None
        return os.path.join(self.records, f"{project}.json")

    def last_good(self, project: str) -> str:
        """The backup rules of the spec the daemon of ``project`` last loaded whole (its
        scheduled backups run from it while the spec on disk is broken)."""
        return os.path.join(self.records, _safe(project) + ".last-good.json")

    def load_record(self, project: str) -> ProjectRecord:
        """What dsr recorded of ``project``, typed (``reconciler.record``); empty when
        nothing (or garbage). Read only: a change goes through ``update_record``."""
        return ProjectRecord.parse(self.read_record(project))

    def update_record(
        self, project: str, change: Callable[[ProjectRecord], ProjectRecord]
    ) -> ProjectRecord:
        """The one read-modify-write of ``project``'s record: under the record's own lock
        (threads of one apply and other processes alike: ``flock`` is per open file),
        ``change`` gets the record as it is now and returns the one to write. Returns it."""
        os.makedirs(self.records, exist_ok=True)
        fd = os.open(self.record(project) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            before = self.read_record(project)
            after = change(ProjectRecord.parse(before))
            self.write_record(project, after.public())
            return after
        finally:
            os.close(fd)  # closing the file releases the lock

    def read_record(self, project: str) -> dict[str, Any]:
        """The record file of ``project`` as JSON (the file layer: code reads it typed,
        through ``load_record``); empty when nothing (or garbage). Read as input: a
        regular file of at most 16 MiB, a JSON object."""
        for path in (self.record(project), self._old_record(project)):
            if path is None:
                continue
            try:
                value = parse_json(read_regular(path, MAX_RECORD_BYTES))
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                return {}
            return value if isinstance(value, dict) else {}
        return {}

    def write_record(self, project: str, record: dict[str, Any]) -> None:
        """Write the record file (the file layer: code changes it through
        ``update_record``)."""
        old = self._old_record(project)
        if self.read_record(project) != record or not os.path.lexists(self.record(project)):
            write_json(self.record(project), record, indent=1)
        if old is not None and os.path.lexists(old):  # migrated: the new file has it all
            with contextlib.suppress(OSError):
                os.unlink(old)

    def last_pass_file(self, project: str) -> str:
        return os.path.join(self.passes, _digest(project) + ".json")

    def read_last_pass(self, project: str) -> dict[str, Any] | None:
        """The last pass recorded for ``project`` (``dsr status``); None when none or garbage."""
        return _read_small_json(self.last_pass_file(project))

    def write_last_pass(self, project: str, record: dict[str, Any]) -> None:
        write_json(self.last_pass_file(project), record, indent=1)

    def daemon_file(self, project: str) -> str:
        return os.path.join(self.daemons, _digest(project) + ".json")

    def read_daemon(self, project: str) -> dict[str, Any] | None:
        return _read_small_json(self.daemon_file(project))

    def write_daemon(self, project: str, record: dict[str, Any]) -> None:
        write_json(self.daemon_file(project), record, indent=1)

    def lock_holder(self, engine_url: str, project: str) -> int | None:
        """The pid holding the lock of ``engine_url`` and ``project`` now, or None.

        Never takes the lock, not even for a moment (a daemon starting then would fail):
        the kernel's table of flock locks (``/proc/locks``) says whether the file's inode is
        locked; the pid comes from the file's text, which its holder wrote.
        """
        path = self.lock_file(engine_url, project)
        try:
            info = os.stat(path)
            with open(path, "rb") as handle:
                text = handle.read(256).decode("utf-8", "replace")
        except OSError:
            return None
        first = text.split(" ", 1)[0].strip()
        pid = int(first) if first.isdigit() else None
        held = _flocked(info)
        if held is None:  # no /proc/locks: trust a pid that still lives
            held = pid is not None and alive(pid)
        return pid if held else None

    def lock_file(self, engine_url: str, project: str) -> str:
        engine = hashlib.sha256(engine_url.encode()).hexdigest()[:12]
        return os.path.join(self.locks, f"{engine}-{_safe(project)}.lock")

    def plan_key(self) -> bytes:
        """This state directory's plan-signing key, made on first use (never leaves it)."""
        return self._key(self.plan_key_file)

    def backup_key(self) -> bytes:
        """The key of this state directory's snapshot digests, made on first use."""
        return self._key(self.backup_key_file)

    def _key(self, file: str) -> bytes:
        try:
            with open(file, "rb") as handle:
                key = handle.read(64)
            if len(key) == 64:
                return key
        except FileNotFoundError:
            pass
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        key = secrets.token_bytes(64)
        tmp = f"{file}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        try:
            os.link(tmp, file)  # the first writer wins; others read its key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        with open(file, "rb") as handle:
            return handle.read(64)


@contextmanager
def locked(
    state: StateDir, engine_url: str, project: str, *, timeout: float, what: str = ""
) -> Iterator[None]:
    """Hold the exclusive lock of ``engine_url`` and ``project`` for the ``with`` block.

    ``flock`` is released by the kernel when its holder dies, so a killed process never
    blocks anyone; the file's text (pid and command) only serves the message of a refused
    writer. Waits up to ``timeout`` seconds (0: not at all), then raises ``LockError``.
    """
    path = state.lock_file(engine_url, project)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, path, timeout)
        holder = f"{os.getpid()} {what or ' '.join(sys.argv[:2])}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockError(_held_message(fd, path, timeout))
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.25)


def _held_message(fd: int, path: str, timeout: float) -> str:
    text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    pid, _, command = text.partition(" ")
    holder = f"process {pid} ({command})" if pid.isdigit() else "another dsr process"
    waited = f"after waiting {timeout:g} s" if timeout > 0 else "(--lock-timeout 0)"
    return f"{holder} holds the lock {path} {waited}; try again when it has finished"


def _read_small_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            value = parse_json(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _flocked(info: os.stat_result) -> bool | None:
    """Whether an flock lock is held on the file ``info`` describes; None when unknown."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read(1 << 22).splitlines()
    except OSError:
        return None
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF" ("->" marks a waiter)
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        parts = fields[5].split(":")
        try:
            found = (int(parts[0], 16), int(parts[1], 16), int(parts[2]))
        except (IndexError, ValueError):
            continue
        if found == wanted:
            return True
    return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (``kill(pid, 0)``; one we may not signal runs).
    Also used by backup/staging to sweep folders of dead processes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
