"""Spec file changes (watchfiles), turned into wake-ups that settle.

watchfiles yields a batch once no new change came for ``STEP_MS`` (20 ms), or after
``DEBOUNCE_MS`` at most. Its default (1.6 s at most, 50 ms steps) would spend most of
the half second a spec edit may take; 20 ms steps still group an editor's
write-rename-chmod into one batch. The same file saved again and again yields a batch
every other step, so the loop settles file wake-ups itself (``SETTLE``, see trigger.py):
100 saves in one second make one pass after the last, not fifty.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import watchfiles

from reconciler import logs
from reconciler.daemon.notify import block_signals

log = logs.get_logger("dsr.watch")

DEBOUNCE_MS = 200
STEP_MS = 20
SETTLE = 0.1  # seconds of quiet before a pass reads the files; see trigger.py
SUFFIXES = (".yaml", ".yml")
REPLACED_CHECK = 0.25  # seconds between checks that the watched folder is still the same


def watched(path: str) -> tuple[str, Callable[[str], bool]]:
    """The folder to watch for ``path`` and which changed paths matter.

    A single spec file is watched through its folder: editors and ``git`` replace files
    by renaming, which a watch on the file itself would lose.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):

        def in_folder(changed: str) -> bool:
            rel = os.path.relpath(changed, path)
            hidden = any(part.startswith(".") for part in rel.split(os.sep))
            return not hidden and changed.endswith(SUFFIXES)

        return path, in_folder
    return os.path.dirname(path), lambda changed: os.path.abspath(changed) == path


class SpecWatcher(threading.Thread):
    """Calls ``on_change(paths)`` for each batch of relevant changes below ``path``."""

    def __init__(
        self, path: str, on_change: Callable[[list[str]], None], stop: threading.Event
    ) -> None:
        super().__init__(name="dsr-watch", daemon=True)
        self.folder, self.matters = watched(path)
        self.on_change = on_change
        self.stop_event = stop

    def run(self) -> None:
        block_signals()
        while not self.stop_event.is_set():
            watching = _identity(self.folder)
            if watching is None:  # deleted: watched again once it is back
                self.stop_event.wait(REPLACED_CHECK)
                continue
            try:
                for batch in watchfiles.watch(
                    self.folder,
                    debounce=DEBOUNCE_MS,
                    step=STEP_MS,
                    stop_event=self.stop_event,
                    rust_timeout=int(REPLACED_CHECK * 1000),
                    yield_on_timeout=True,
                    raise_interrupt=False,
                ):
                    paths = sorted({p for _, p in batch if self.matters(p)})
                    if paths:
                        self.on_change(paths)
                    if _identity(self.folder) != watching:
                        # Renamed away, or deleted and made again: the watch follows the old
                        # folder, and edits to the new one would wait for the interval.
                        log.info("spec folder replaced; watching it again", folder=self.folder)
                        self.on_change([self.folder])
                        break
            except (OSError, RuntimeError) as err:  # the folder vanished, inotify limits...
                log.warning("watch failed; retrying", folder=self.folder, error=str(err))
                self.on_change([self.folder])
                self.stop_event.wait(REPLACED_CHECK)


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
