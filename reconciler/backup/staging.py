"""The state directory's ``staging/``: archives on their way to or from a store that is not
a plain folder (S3, encrypted). Each run works in ``PID/`` or ``PID-fetch/`` of its own;
what a run that no longer exists left there (a SIGKILL, a reboot) is removed by the next."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator

from reconciler.statedir import alive

_MINE = re.compile(r"^([0-9]+)(-fetch)?$")


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
