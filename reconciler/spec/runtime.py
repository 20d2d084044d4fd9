"""What compose files set on a container beyond its storage: a health check, the
containers it waits for, and its limits (memory, CPUs, /dev/shm)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from reconciler.spec.base import SpecModel, parse_seconds

_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)i?b?", re.IGNORECASE)
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size_bytes(value: Any) -> Any:
    """``512m``, ``1g``, ``64mb`` or a number of bytes, as compose and docker read sizes."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if not match:
            raise ValueError(f"'{value}' is not a size like 64m, 512m or 1g")
        return int(match.group(1)) * _SCALE[match.group(2).lower()]
    return value


def _duration(value: Any) -> Any:
    if isinstance(value, str) and value and not value.isdigit():
        return parse_seconds(value)
    return value


class Healthcheck(SpecModel):
    """How Docker tells whether the container is healthy (as compose's ``healthcheck``)."""

    test: list[str] = Field(description='["CMD", argv...] or ["CMD-SHELL", "a shell line"]')
    interval: int | None = Field(None, ge=1, le=86400, description="seconds between checks")
    timeout: int | None = Field(None, ge=1, le=86400, description="seconds one check may take")
    retries: int | None = Field(None, ge=1, le=1000)
    start_period: int | None = Field(None, ge=0, le=86400, description="seconds of grace")

    _durations = field_validator("interval", "timeout", "start_period", mode="before")(_duration)

    @field_validator("test", mode="before")
    @classmethod
    def _shell(cls, value: Any) -> Any:
        # A string runs through the container's shell, as compose's string form does.
        return ["CMD-SHELL", value] if isinstance(value, str) else value

    @field_validator("test")
    @classmethod
    def _kind(cls, value: list[str]) -> list[str]:
        if not value or value[0] not in ("CMD", "CMD-SHELL") or len(value) < 2:
            raise ValueError('test must be ["CMD", argv...] or ["CMD-SHELL", "command"]')
        if any("\0" in part for part in value):
            raise ValueError("test cannot hold a NUL character")
        return value


class DependsOn(SpecModel):
    """A container this one is made and started after."""

    condition: Literal["service_started", "service_healthy"] = "service_started"

    @field_validator("condition", mode="before")
    @classmethod
    def _completed(cls, value: Any) -> Any:
        if value == "service_completed_successfully":
            raise ValueError(
                "service_completed_successfully is not supported: dsr keeps every container "
                "of a spec running (one that exits is started again), so it never waits for "
                "one to finish; use service_started or service_healthy"
            )
        return value


def depends_on_form(value: Any) -> Any:
    """compose's two forms: a list of names, or a map of name -> {condition}."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            return value
        return {name: {} for name in value}
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value
