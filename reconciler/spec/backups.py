"""The ``backups`` section: scheduled backups of volumes and host folders, their keep rules
(restic's ``forget`` meaning) and the commands run around them."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator, model_validator

from reconciler.spec.base import ContainerName, Count, SpecModel, VolumeName, parse_seconds
from reconciler.spec.fields import host_path
from reconciler.spec.hosts import Hosts
from reconciler.spec.names import cron_problem, matches

_DURATION = r"([0-9]+[ymdh])+"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# S3's bucket naming rules (3-63 characters, lower case, digits, dots and hyphens)
_S3 = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[!-~]*)?$")
# The user-info part of a URL (``http://KEY:SECRET@host``): never printed back.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@", re.DOTALL)
_RECIPIENT = re.compile(r"^(age1[02-9ac-hj-np-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( [!-~]*)?)$")


def s3_parts(url: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` of an ``s3://BUCKET/PREFIX`` destination; ``None`` for a folder."""
    match = _S3.match(url)
    if match is None:
        return None
    return match[1], (match[2] or "").strip("/")


def _recipient_problem(text: str) -> str | None:
    """Why age cannot encrypt to ``text`` (pyrage parses it as age would)."""
    import pyrage  # only specs with encrypt_to pay for loading it

    parser = pyrage.x25519.Recipient if text.startswith("age1") else pyrage.ssh.Recipient
    try:
        parser.from_str(text)
    except Exception as err:  # pyrage.RecipientError and its kin
        return f"{text[:80]!r} is not a valid age recipient: {err}"
    return None


def _destination(value: str, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("a destination is a folder or s3://BUCKET/PREFIX")
    if value.startswith("s3:"):
        parts = s3_parts(value)
        if parts is None:
            raise ValueError(
                f"'{value}' is not s3://BUCKET/PREFIX (a bucket name is 3-63 characters: "
                "lower-case letters, digits, dots and hyphens)"
            )
        if any(p in ("", ".", "..") for p in parts[1].split("/")) and parts[1]:
            raise ValueError(f"'{value}': the prefix has an empty, '.' or '..' part")
        if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in parts[1]):
            raise ValueError(f"{value!r}: the prefix contains a control character or a backslash")
        return value
    if _SCHEME.match(value) and not value.startswith(("./", "/")):
        scheme = value.partition(":")[0]
        raise ValueError(
            f"'{value}': unknown scheme '{scheme}:'; a destination is a folder or "
            "s3://BUCKET/PREFIX (write ./NAME for a folder whose name has a colon)"
        )
    return host_path(value, info)


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
    destination: str | list[str] | None = Field(
        None, description="a folder, s3://BUCKET/PREFIX, or a list of those"
    )
    endpoint: str | None = Field(None, description="the S3 service's URL (not AWS)")
    region: str | None = Field(None, description="the S3 region")
    encrypt_to: list[str] = Field([], description="age recipients: age1... or ssh-ed25519 ...")
    quiesce: StrictBool = False
    hooks: Hooks = Hooks()
    hosts: Hosts = Field(None, description="the hosts it runs on (default: every host)")

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [host_path(path, info) for path in value]

    @field_validator("destination")
    @classmethod
    def _destination(
        cls, value: str | list[str] | None, info: ValidationInfo
    ) -> str | list[str] | None:
        if value is None:
            return None
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list of destinations; leave destination out instead")
            out = [_destination(v, info) for v in value]
            # s3://b/p, s3://b/p/ and s3://b//p/ name one store (``s3_parts``), as ./x,
            # x/ and x/../x name one folder (``host_path``): two sinks of one snapshot
            # writing the same keys, and one's abort removing what the other stored
            seen: dict[object, str] = {}
            for url in out:
                key = s3_parts(url) or url
                if key in seen:
                    raise ValueError(
                        f"the same destination is listed twice ({seen[key]!r} and {url!r})"
                    )
                seen[key] = url
            return out
        return _destination(value, info)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or _ENDPOINT.match(value):
            return value
        if isinstance(value, str) and _USERINFO.match(value):
            shown = _USERINFO.sub(r"\1***@", value)[:200]
            raise ValueError(
                f"{shown!r} holds a user name or password: "
                "credentials come from AWS_* variables or profiles, never from the spec"
            )
        raise ValueError(f"{value!r} is not an http:// or https:// URL (HOST[:PORT])")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9-]{1,40}", value):
            raise ValueError(f"{value!r} is not a region name like us-east-1")
        return value

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if not isinstance(recipient, str) or not _RECIPIENT.match(recipient.strip()):
                raise ValueError(
                    f"{str(recipient)[:80]!r} is not an age recipient (age1...) or an SSH "
                    "public key (ssh-ed25519 ... or ssh-rsa ...)"
                )
        for recipient in value:
            problem = _recipient_problem(recipient.strip())
            if problem:
                raise ValueError(problem)
        return [r.strip() for r in value]

    @property
    def destinations(self) -> list[str]:
        """Every place this rule stores a snapshot, in the order written (none: default)."""
        if self.destination is None:
            return []
        return [self.destination] if isinstance(self.destination, str) else self.destination

    @property
    def folders(self) -> list[str]:
        """The destinations that are folders on this host."""
        return [d for d in self.destinations if s3_parts(d) is None]

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
        if (self.endpoint or self.region) and len(self.folders) == len(self.destinations):
            raise ValueError("endpoint and region need an s3:// destination")
        return self
