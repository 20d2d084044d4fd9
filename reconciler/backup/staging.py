"""The state directory's ``staging/``: archives on their way to or from a store that is not
a plain folder (S3, encrypted), and the sorted runs of a tree's entries and of a large
folder's names (``spilling``). Each run works in ``PID/``, ``PID-fetch/`` or
``PID-spill/`` of its own; what a run that no longer exists left there (a SIGKILL, a
reboot) is removed by the next."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterator

from reconciler.backup import tree
from reconciler.statedir import alive

_MINE = re.compile(r"^([0-9]+)(-fetch|-spill)?$")


@contextlib.contextmanager
def folder(staging: str, kind: str = "") -> Iterator[str]:
    """A new folder of this process under ``staging``, removed after."""
    clean(staging)
    path = os.path.join(staging, f"{os.getpid()}{kind}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def spilling(staging: str) -> Iterator[None]:
    """The sorted runs that bound a backup's, verify's or restore's memory whatever the
    tree (~120 MB of them a million files) spill under ``staging``, on the state
    directory's disk, not into ``TMPDIR`` (often a small tmpfs, that is memory). They are
    files without a name, in ``PID-spill/``: one folder for the process, shared by the
    backups the applier runs at once on its threads, removed when the last one ends (or
    by the next run after a SIGKILL)."""
    global _spilling
    path = os.path.join(staging, f"{os.getpid()}-spill")
    with _spill_lock:
        if not _spilling:
            clean(staging)
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, mode=0o700)
            tree.spill_into(path)
        _spilling += 1
    try:
        yield
    finally:
        with _spill_lock:
            _spilling -= 1
            if not _spilling:
                tree.spill_into(None)
                shutil.rmtree(path, ignore_errors=True)


_spill_lock = threading.Lock()
_spilling = 0  # backups, verifies and restores of this process spilling now


def clean(staging: str) -> None:
    """Remove what processes that no longer run left in ``staging``."""
    os.makedirs(staging, mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError), os.scandir(staging) as it:
        for entry in it:
            match = _MINE.match(entry.name)
            if match and not _alive(int(match[1])):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    # kill(0 or less, 0) asks about a process group, not one process: a folder named so
    # is no process's and may go. The check stays here, not in statedir.alive, so that how
    # a lock file naming pid 0 reads does not change.
    return pid > 0 and alive(pid)
