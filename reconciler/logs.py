"""structlog set-up: one event per decision, JSON or console, always to stderr.

structlog loads with the first event written, not at import: with what it brings (rich,
attrs, asyncio) it costs ~120 ms, a tenth of a ``dsr plan`` that writes no event. It is
loaded without rich (``_structlog``): structlog imports rich only to draw tracebacks, which
dsr's events do not carry, and rich was 70 ms of every ``dsr backup``'s start.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any, Literal

LogFormat = Literal["json", "console"]
# The configuration asked for; applied when structlog is (or once it is) loaded.
_wanted: dict[str, Any] = {}
_pending = False


def configure(log_format: LogFormat = "console", level: int = logging.INFO) -> None:
    """Route structlog events to stderr in the chosen format."""
    global _pending
    _wanted.clear()
    _wanted.update(format=log_format, level=level)
    _pending = True
    if "structlog" in sys.modules:
        _apply()


def _structlog() -> ModuleType:
    """structlog, imported (when nothing imported it yet) as if rich were not installed:
    ``structlog.dev`` and ``structlog.tracebacks`` then fall back to plain tracebacks
    instead of importing rich's console, text and pretty-printing modules (~70 ms)."""
    if "structlog" not in sys.modules and "rich" not in sys.modules:
        sys.modules["rich"] = None  # type: ignore[assignment]  # ``import rich`` fails
        try:
            import structlog
        finally:
            del sys.modules["rich"]  # a progress bar may import the real rich later
    import structlog

    return structlog


def _apply() -> None:
    global _pending
    _structlog()
    import structlog

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if _wanted["format"] == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrubbed,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_wanted["level"]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _pending = False


def _scrubbed(logger: Any, method: str, event: Any) -> Any:
    """Every text value of an event as the spec writes it (``redact.scrub``)."""
    from reconciler.spec.redact import scrub

    return {k: scrub(v) if isinstance(v, str) else v for k, v in event.items()}


class Logger:
    """structlog's logger ``name``, loaded when an event passes the configured level."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._log: Any = None

    def log(self, level: int, event: str, **values: Any) -> None:
        if _wanted and level < _wanted["level"]:
            return
        if self._log is None or _pending:
            structlog = _structlog()
            if _pending:
                _apply()
            self._log = structlog.get_logger(self.name)
        self._log.log(level, event, **values)

    def debug(self, event: str, **values: Any) -> None:
        self.log(logging.DEBUG, event, **values)

    def info(self, event: str, **values: Any) -> None:
        self.log(logging.INFO, event, **values)

    def warning(self, event: str, **values: Any) -> None:
        self.log(logging.WARNING, event, **values)

    def error(self, event: str, **values: Any) -> None:
        self.log(logging.ERROR, event, **values)


def get_logger(name: str) -> Logger:
    return Logger(name)
