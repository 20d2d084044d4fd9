"""The daemon (``dsr run``): continuous reconciliation; see ``loop.py`` for its shape."""

from reconciler.daemon.loop import Daemon, DaemonOptions

__all__ = ["Daemon", "DaemonOptions"]
