"""The ``backups`` section: scheduled backups of volumes and host folders, their keep rules
(restic's ``forget`` meaning) and the commands run around them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator, model_validator

from reconciler.spec.base import ContainerName, Count, SpecModel, VolumeName, parse_seconds
from reconciler.spec.fields import host_path
from reconciler.spec.hosts import Hosts
from reconciler.spec.names import cron_problem, matches

_DURATION = r"([0-9]+[ymdh])+"


class Keep(SpecModel):
    """Retention rules, with restic's ``forget --keep-*`` meaning."""

    last: Count | None = None
    hourly: Count | None = None
    daily: Count | None = None
    weekly: Count | None = None
    monthly: Count | None = None
    yearly: Count | None = None
    within: str | None = None
    within_hourly: str | None = None
    within_daily: str | None = None
    within_weekly: str | None = None
    within_monthly: str | None = None
    within_yearly: str | None = None

    @field_validator(
        "within",
        "within_hourly",
        "within_daily",
        "within_weekly",
        "within_monthly",
        "within_yearly",
    )
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not matches(_DURATION, value):
            raise ValueError(
                f"'{value}' is not a duration like 1y2m3d4h (years, months, days, hours)"
            )
        return value


class Hook(SpecModel):
    """A command run in a container around a backup (a database dump), as argv: no shell."""

    container: ContainerName
    command: list[str] = Field(min_length=1)
    timeout: str = Field("60s", description="how long it may run: 30s, 5m, 1h")
    on_error: Literal["fail", "continue"] = "fail"

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "a hook's command is a list of arguments (no shell): [pg_dumpall, -f, /dump.sql]"
            )
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        text = str(value) + ("s" if isinstance(value, int) and not isinstance(value, bool) else "")
        try:
            seconds = parse_seconds(text)
        except ValueError:
            seconds = 0
        if seconds == 0:
            raise ValueError(f"'{value}' is not a timeout like 30s, 5m or 1h")
        return text

    @property
    def seconds(self) -> int:
        return parse_seconds(self.timeout)


class Hooks(SpecModel):
    """Commands run before a rule's backups and after them (also when they failed)."""

    before: list[Hook] = []
    after: list[Hook] = []


class Backup(SpecModel):
    """Scheduled backups of volumes and host folders, with keep rules."""

    volumes: list[VolumeName] = []
    paths: list[str] = Field([], description="host folders to back up")
    schedule: str | None = Field(None, description="cron expression; the daemon acts on it")
    keep: Keep = Keep()
    destination: str | None = None
    quiesce: StrictBool = False
    hooks: Hooks = Hooks()
    hosts: Hosts = Field(None, description="the hosts it runs on (default: every host)")

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [host_path(path, info) for path in value]

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else host_path(value, info)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        problem = None if value is None else cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _has_source(self) -> Backup:
        if not self.volumes and not self.paths:
            raise ValueError("a backup needs at least one of volumes or paths")
        return self
