"""A snapshot's ``manifest.json``: what it holds and how to check it, written last.

A manifest is read back as untrusted input (a disk or a person may have edited it): it is
read with a size limit from a regular file (never a FIFO, never through a symlink), parsed
with a strict schema (every text field a pattern or free of control characters, every list
bounded, the zone one that exists), the snapshot it describes must be the folder it lies
in, and it carries a keyed digest (``signature``: HMAC-SHA256 with the state directory's
``backup-key``) so that one edited after the backup is refused by its id. The volume
settings it records are informative only: no restore creates a volume from them.
Times keep the UTC offset and the zone they were recorded in, because retention buckets
read each backup's wall clock in its own zone (as restic does).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import time as _time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from reconciler.escape import has_control

FORMAT_VERSION = 1
ARCHIVE = "archive.tar.zst"
MANIFEST = "manifest.json"
SNAPSHOT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$"
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# The most dsr reads of a manifest: a real one is a few KiB (its lists of skipped and
# changed files are bounded below).
MAX_MANIFEST_BYTES = 1 << 20
MAX_LISTED = 10_000  # skipped / changed paths a manifest may list
Text = Annotated[str, StringConstraints(max_length=4096)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")]
Project = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=4096)]
Zone = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+:/-]{1,64}$")]


class VolumeInfo(BaseModel):
    """The backed-up volume's settings, to recreate it as it was (``restore --into``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Text
    options: dict[Text, Text] = Field(default_factory=dict, max_length=256)
    labels: dict[Text, Text] = Field(default_factory=dict, max_length=256)


class Manifest(BaseModel):
    """One snapshot. ``size`` counts the tree's file bytes; ``archive_size`` the archive's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 1: the tree digest hashes each file's content with sha256; 2: with BLAKE3 (SIMD,
    # several times faster). The archive's own ``sha256`` is sha256 in both.
    format_version: Literal[1, 2] = 1
    id: Annotated[str, StringConstraints(pattern=SNAPSHOT_ID)]
    policy: Name
    project: Project
    source: Annotated[str, StringConstraints(pattern=r"^(volume|path):.+$", max_length=4096)]
    time: datetime
    zone: Zone
    dsr_version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{0,64}$")]
    spec_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{0,64}$")]
    volume: VolumeInfo | None = None
    size: int = Field(ge=0)
    files: int = Field(ge=0)
    archive: Literal["archive.tar.zst"] = "archive.tar.zst"
    archive_size: int = Field(ge=0)
    sha256: Sha256
    tree_digest: Sha256
    read_via: Literal["direct", "api"]
    # sockets and devices, which no archive restores; files that shrank while read
    skipped: list[Text] = Field(default_factory=list, max_length=MAX_LISTED)
    changed: list[Text] = Field(default_factory=list, max_length=MAX_LISTED)
    seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    signature: Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{64})?$")] = ""

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("the time has no UTC offset")
        try:
            year = value.astimezone(UTC).year
        except OverflowError:
            year = 0
        if not 1900 <= year <= 9000:
            raise ValueError("the time is not between the years 1900 and 9000")
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value == "UTC" or _fixed(value) is not None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as err:
            raise ValueError(f"{value!r} is not a time zone") from err
        return value

    @field_validator("source", "policy")
    @classmethod
    def _printable(cls, value: str) -> str:
        if has_control(value):
            raise ValueError("control characters are not allowed")
        return value

    def zoned_time(self) -> datetime:
        """``time`` in the zone it was recorded in (retention's buckets read this)."""
        return self.time.astimezone(zone_of(self.zone, self.time))

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["time"] = self.time.isoformat()
        return data


def _fixed(name: str) -> tzinfo | None:
    """The fixed offset ``UTC+02:00`` names, if it is one a clock can have (under 24 h)."""
    match = re.fullmatch(r"UTC([+-])(\d\d):(\d\d)", name)
    if not match or int(match[2]) > 23 or int(match[3]) > 59:
        return None
    sign = 1 if match[1] == "+" else -1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


def zone_of(name: str, at: datetime) -> tzinfo:
    """The zone a manifest names: an IANA name, ``UTC``, or a fixed offset ``UTC+02:00``."""
    if name == "UTC":
        return UTC
    fixed = _fixed(name)
    if fixed is not None:
        return fixed
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
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
    try:
        in_local = moment.astimezone(local)
        year = moment.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not 1900 <= year <= 9000:
        raise ValueError("the time must lie between the years 1900 and 9000")
    if zone_name and in_local.utcoffset() == moment.utcoffset():
        return in_local, zone_name
    return moment, _offset_name(moment)


def _fixed_local() -> tzinfo:
    return timezone(timedelta(seconds=-_time.timezone))


def snapshot_id(name: str, moment: datetime) -> str:
    """``registry-data-20261129T030000Z``: the source's name and the UTC time."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-")[:80] or "root"
    return f"{clean}-{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


class ManifestError(ValueError):
    """A manifest that is not one dsr wrote: unreadable, malformed, or edited."""


def parse_manifest(data: bytes) -> Manifest:
    """A manifest's bytes, checked against the strict schema; ``ManifestError`` names the
    first problem in one line (the text escaped: it came from the file)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"it is larger than the {MAX_MANIFEST_BYTES} bytes dsr reads")
    try:
        manifest = Manifest.model_validate_json(data)
        manifest.zoned_time()  # a time its zone cannot show is no time
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the document"
        raise ManifestError(f"{where}: {first['msg']}") from None
    except (ValueError, OverflowError) as err:
        raise ManifestError(str(err).splitlines()[0] if str(err) else repr(err)) from None
    return manifest


def _digest_text(manifest: Manifest) -> bytes:
    body = {k: v for k, v in manifest.to_json().items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(manifest: Manifest, key: bytes) -> Manifest:
    """``manifest`` with its keyed digest (HMAC-SHA256 of its canonical JSON under ``key``)."""
    signature = hmac.new(key, _digest_text(manifest), hashlib.sha256).hexdigest()
    return manifest.model_copy(update={"signature": signature})


def signature_problem(manifest: Manifest, key: bytes) -> str | None:
    """Why ``manifest`` is not one this state directory's key signed, or ``None``."""
    if not manifest.signature:
        return "its manifest carries no keyed digest (edited, or made by an older dsr)"
    want = hmac.new(key, _digest_text(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, manifest.signature):
        return (
            "its manifest was edited after the backup, or was signed with another state "
            "directory's backup-key"
        )
    return None
