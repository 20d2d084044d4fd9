"""systemd's notify protocol over ``NOTIFY_SOCKET``, without a dependency.

``READY=1`` after the first pass, ``STATUS=`` with the last result, and ``WATCHDOG=1``
only while the loop makes progress: a pass stuck past its deadline stops the pings, so
systemd restarts a daemon that hangs instead of trusting one that merely lives.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable


def notify(message: str) -> bool:
    """Send ``message`` to systemd; False when not run by systemd (or it cannot be sent)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never wait on a reader that stopped reading: a full queue drops the message.
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds (systemd's advice), when it is set for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


class Watchdog(threading.Thread):
    """Pings ``WATCHDOG=1`` every ``interval`` seconds while ``alive()`` says so."""

    def __init__(self, interval: float, alive: Callable[[], bool], stop: threading.Event) -> None:
        super().__init__(name="dsr-watchdog", daemon=True)
        self.interval = interval
        self.alive = alive
        self.stop_event = stop

    def run(self) -> None:
        block_signals()
        while not self.stop_event.wait(self.interval):
            if self.alive():
                notify("WATCHDOG=1")


def block_signals() -> None:
    """Leave SIGTERM, SIGINT and SIGHUP to the main thread, which runs their handlers.

    Called first in each of the daemon's threads (threads they start inherit it, such as
    watchfiles' own): a signal the kernel gives another thread reaches Python's handler
    only once the main thread wakes up on its own.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
