"""Volumes that move between hosts: what each host states about one, in a shared place.

When a volume's ``hosts`` change, its old host and its new one never talk to each other:
each host's agent does its half, and they meet in a backup destination both reach (the
folder of a backup rule that lists the volume). Each host writes only its own statement
about a volume, so two agents never write one file::

    DESTINATION/.dsr-handoff/PROJECT/VOLUME/HOST.json

A statement is one of:

- ``held``: the host has the volume, placed there by the spec whose placement of the
  volume has the digest ``placement`` (written after each apply that leaves it there);
- ``offered``: the volume left the host's share; its users were stopped, it was backed up
  to the snapshot ``snapshot`` (verified as it was written), and it is kept until another
  host restored it;
- ``restored``: the host made the volume from the snapshot another host (``source``)
  offered, and the restore verified its tree digest: the old host may now reclaim its copy;
- ``released``: the host saw its offer restored and gave its copy up to its reclaim policy.

A record is input like any other: its size is bounded, its fields are checked, and the
snapshot it names is looked up under the destination by ID, never by a path it gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from reconciler import logs
from reconciler.files import InputFileError, parse_json, read_bounded, write_json

log = logs.get_logger("dsr.handoff")

FOLDER = ".dsr-handoff"
STATES = ("held", "offered", "restored", "released")
State = Literal["held", "offered", "restored", "released"]
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_MAX = 64 * 1024


@dataclass(frozen=True)
class Statement:
    """What one host says about one volume (see the module docstring)."""

    host: str
    state: State
    placement: str = ""  # digest of the volume's `hosts` when written
    snapshot: str = ""  # offered / restored: the snapshot's ID
    source: str = ""  # restored: the host whose offer it was
    time: str = ""


def placement_digest(selectors: Iterable[str] | None) -> str:
    """A short, stable digest of a volume's placement (``""``: every host)."""
    if selectors is None:
        return ""
    text = json.dumps(sorted(selectors))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def snapshot_of(destination: str, project: str, snapshot: str) -> str:
    """The folder of a volume's snapshot ``snapshot`` under ``destination`` (by ID: a
    statement never names a path)."""
    from reconciler.backup.store import snapshot_folder

    return snapshot_folder(destination, project, snapshot)


def volume_folder(destination: str, project: str, volume: str) -> str:
    return os.path.join(destination, FOLDER, project, volume)


def statement_path(destination: str, project: str, volume: str, host: str) -> str:
    return os.path.join(volume_folder(destination, project, volume), f"{host}.json")


def read_statements(destination: str, project: str, volume: str) -> dict[str, Statement]:
    """Every host's statement about ``volume`` (unreadable or malformed ones are skipped,
    with a warning: a damaged record never makes a host act)."""
    folder = volume_folder(destination, project, volume)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    out = {}
    for name in names:
        host, ext = os.path.splitext(name)
        if ext != ".json" or not _WORD.fullmatch(host):
            continue
        statement = _read(os.path.join(folder, name), host)
        if statement is not None:
            out[host] = statement
    return out


def _read(path: str, host: str) -> Statement | None:
    try:
        data = parse_json(read_bounded(path, _MAX))
    except (OSError, InputFileError, ValueError) as err:
        log.warning("handoff_unreadable", path=path, error=str(err))
        return None
    fields = {k: data.get(k) for k in ("state", "placement", "snapshot", "source", "time")}
    ok = (
        isinstance(data, dict)
        and data.get("format_version") == 1
        and data.get("host") == host
        and fields["state"] in STATES
        and all(isinstance(v, str) for k, v in fields.items() if v is not None)
        and all(
            not fields.get(k) or _WORD.fullmatch(str(fields[k])) for k in ("snapshot", "source")
        )
    )
    if not ok:
        log.warning("handoff_malformed", path=path)
        return None
    return Statement(host=host, **{k: str(v or "") for k, v in fields.items()})  # type: ignore[arg-type]


def write_statement(destination: str, project: str, volume: str, statement: Statement) -> None:
    """Write this host's statement (atomically: a whole new file or the old one)."""
    if not _WORD.fullmatch(statement.host) or not _WORD.fullmatch(volume):
        raise ValueError(f"{statement.host!r} / {volume!r}: not a host or volume name")
    path = statement_path(destination, project, volume, statement.host)
    write_json(path, {"format_version": 1, **asdict(statement)}, indent=2)
    log.info("handoff", volume=volume, host=statement.host, state=statement.state)


def read_all(destinations: Mapping[str, str], project: str) -> dict[str, dict[str, Statement]]:
    """For each volume (volume -> its handoff destination): every host's statement."""
    return {v: read_statements(d, project, v) for v, d in destinations.items()}


def hold(
    project: str,
    host: str,
    volumes: Mapping[str, tuple[str, str]],
    known: Mapping[str, Mapping[str, Statement]],
) -> None:
    """State that ``host`` holds each of ``volumes`` (volume -> (destination, placement
    digest)), where its statement does not say so already. A ``restored`` statement under
    the same placement already says it (and is what the old host waits for), so it stays.
    A destination that cannot be written is logged, never fatal: the statement is written
    by a later pass, and meanwhile a new host waits rather than acts."""
    for volume, (destination, placement) in sorted(volumes.items()):
        own = (known.get(volume) or {}).get(host)
        if own is not None and own.state in ("held", "restored") and own.placement == placement:
            continue
        try:
            write_statement(
                destination,
                project,
                volume,
                Statement(host=host, state="held", placement=placement),
            )
        except (OSError, ValueError) as err:
            log.warning("handoff_unwritten", volume=volume, host=host, error=str(err))
