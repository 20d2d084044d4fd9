"""The spec's git work tree: the commit each pass applied, and ``--git-pull``.

git runs as a subprocess with a timeout and never prompts, so a hung remote or a
credential question cannot hold the daemon.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

from reconciler import logs

log = logs.get_logger("dsr.git")

TIMEOUT = 5.0
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}


def run_git(
    folder: str | None, *args: str, timeout: float = TIMEOUT, protocols: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``git -C folder args`` (no ``-C`` without ``folder``) that never prompts nor reads
    stdin, killed after ``timeout`` (``subprocess.TimeoutExpired``); ``protocols``: the only
    transports git may use (``GIT_ALLOW_PROTOCOL``). Its output is the caller's to judge."""
    env = {**os.environ, **_ENV}
    if protocols is not None:
        env["GIT_ALLOW_PROTOCOL"] = protocols
    return subprocess.run(
        ["git", *(("-C", folder) if folder is not None else ()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def work_tree(path: str) -> str | None:
    """The top of the git work tree holding ``path``, or None."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        done = run_git(folder, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def head(top: str) -> str | None:
    try:
        done = run_git(top, "rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def pull(top: str, timeout: float = 60.0) -> tuple[bool, str]:
    """``git pull --ff-only`` from the upstream; (succeeded, what git said)."""
    try:
        done = run_git(top, "pull", "--ff-only", "--quiet", timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"git pull did not finish within {timeout:g} s"
    except OSError as err:
        return False, str(err)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


class Puller(threading.Thread):
    """Pulls every ``interval`` seconds; wakes the loop when HEAD moved."""

    def __init__(
        self,
        top: str,
        interval: float,
        on_new_commit: Callable[[str], None],
        stop: threading.Event,
        on_result: Callable[[bool, str], None] | None = None,
    ) -> None:
        super().__init__(name="dsr-git-pull", daemon=True)
        self.top = top
        self.interval = interval
        self.on_new_commit = on_new_commit
        self.stop_event = stop
        self.on_result = on_result  # (succeeded, what git said) after every pull
        self.failures = 0

    def run(self) -> None:
        # Signals stay unblocked here: the children this thread starts inherit its mask.
        while not self.stop_event.wait(self.interval):
            self.pull_once()

    def pull_once(self) -> None:
        before = head(self.top)
        ok, message = pull(self.top, timeout=max(self.interval, 10.0))
        if not ok:
            self.failures += 1
            # The files are untouched by a failed fast-forward: the last good commit stays.
            log.error("git pull failed", folder=self.top, error=message, failures=self.failures)
            if self.on_result is not None:
                self.on_result(False, message)
            return
        if self.on_result is not None:
            self.on_result(True, message)
        after = head(self.top)
        if after != before and after is not None:
            log.info("git pull", folder=self.top, before=before, after=after)
            self.on_new_commit(after)
