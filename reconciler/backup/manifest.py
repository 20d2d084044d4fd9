"""A snapshot's ``manifest.json``: what it holds and how to check it, written last.

A manifest is read back as untrusted input (a disk or a person may have edited it): it is
validated field by field, and the snapshot it describes must be the folder it lies in.
Times keep the UTC offset and the zone they were recorded in, because retention buckets
read each backup's wall clock in its own zone (as restic does).
"""

from __future__ import annotations

import contextlib
import os
import re
import time as _time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

FORMAT_VERSION = 1
ARCHIVE = "archive.tar.zst"
MANIFEST = "manifest.json"
SNAPSHOT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$"
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class VolumeInfo(BaseModel):
    """The backed-up volume's settings, to recreate it as it was (``restore --into``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str
    options: dict[str, str] = {}
    labels: dict[str, str] = {}


class Manifest(BaseModel):
    """One snapshot. ``size`` counts the tree's file bytes; ``archive_size`` the archive's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    id: Annotated[str, StringConstraints(pattern=SNAPSHOT_ID)]
    policy: str
    project: str
    source: Annotated[str, StringConstraints(pattern=r"^(volume|path):.+$")]
    time: datetime
    zone: str
    dsr_version: str
    spec_hash: str
    volume: VolumeInfo | None = None
    size: int = Field(ge=0)
    files: int = Field(ge=0)
    archive: Literal["archive.tar.zst"] = "archive.tar.zst"
    archive_size: int = Field(ge=0)
    sha256: Sha256
    tree_digest: Sha256
    read_via: Literal["direct", "api"]
    skipped: list[str] = []  # sockets and devices, which no archive restores
    changed: list[str] = []  # files that shrank while read (no quiesce)
    seconds: float = 0.0

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("the time has no UTC offset")
        return value

    def zoned_time(self) -> datetime:
        """``time`` in the zone it was recorded in (retention's buckets read this)."""
        return self.time.astimezone(zone_of(self.zone, self.time))

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["time"] = self.time.isoformat()
        return data


def zone_of(name: str, at: datetime) -> tzinfo:
    """The zone a manifest names: an IANA name, ``UTC``, or a fixed offset ``UTC+02:00``."""
    if name == "UTC":
        return UTC
    match = re.fullmatch(r"UTC([+-])(\d\d):(\d\d)", name)
    if match:
        sign = 1 if match[1] == "+" else -1
        return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        offset = at.utcoffset()
        return timezone(offset) if offset is not None else UTC


def local_zone_name() -> str | None:
    """This host's IANA zone (``TZ``, else ``/etc/localtime``'s link), if it has a name."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.readlink("/etc/localtime").partition("zoneinfo/")[2])
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.read().strip())
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return None


def _offset_name(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta()
    if not offset:
        return "UTC"
    sign = "+" if offset >= timedelta() else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def backup_time(text: str | None = None) -> tuple[datetime, str]:
    """(time, zone) of a backup: now, or ``--time ISO`` (as restic's), with this host's zone.

    A time without an offset is read in the host's zone; one with an offset keeps it, and
    keeps the host zone's name only when that zone has this offset at that time."""
    zone_name = local_zone_name()
    local: tzinfo = ZoneInfo(zone_name) if zone_name else _fixed_local()
    if text is None:
        moment = datetime.now(local).replace(microsecond=0)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=local)
    in_local = moment.astimezone(local)
    if zone_name and in_local.utcoffset() == moment.utcoffset():
        return in_local, zone_name
    return moment, _offset_name(moment)


def _fixed_local() -> tzinfo:
    return timezone(timedelta(seconds=-_time.timezone))


def snapshot_id(name: str, moment: datetime) -> str:
    """``registry-data-20261129T030000Z``: the source's name and the UTC time."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-")[:80] or "root"
    return f"{clean}-{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
