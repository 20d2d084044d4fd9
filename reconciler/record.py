"""The project record: what dsr remembers of one project between runs, as one typed value.

One JSON file per project in the state directory (``StateDir.record``); this module is its
one model, its one parser and its one writer form. Every reader gets a ``ProjectRecord``,
never the raw dict, and every change is one locked read-modify-write
(``StateDir.update_record``). The file's shape (kept as earlier versions wrote it, so an
upgrade reads old records and an older dsr reads new ones)::

    {
      "volumes":     {NAME: {"reclaim", "destination", "instance"?}},   reclaim in force
      "migrations":  {NAME: {"folder", "original"}},                    (or FOLDER, older)
      "adopted":     {"volume": {NAME: IDENTITY}, "network": {NAME: ID}},
      "adopting":    {"container": {NAME: ID}},   renamed NAME_dsr_old by an adoption
      "networks":    true | false,        the project has networks: the next pass lists them
      "interrupted": {"stopped": {ID: NAME}, "restoring": {VOLUME: SNAPSHOT}},
      ...                                 keys of a newer dsr: kept as they are
    }

The record is read as input (it lies on a disk others may write): the parser keeps only
entries of the right types and drops the rest, so a damaged entry is forgotten rather
than trusted; a file that is not a JSON object reads as an empty record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

RETAIN = "retain"


@dataclass(frozen=True)
class VolumeRecord:
    """A volume's reclaim policy as the last apply recorded it while it was in the spec,
    with where a backup-then-delete puts its data. ``instance``: the ``dsr.instance`` of the
    volume it was decided for, set once the volume left the spec ("": still in it)."""

    reclaim: str = RETAIN
    destination: str = ""
    instance: str = ""

    def public(self) -> dict[str, str]:
        out = {"reclaim": self.reclaim, "destination": self.destination}
        return {**out, "instance": self.instance} if self.instance else out

    @classmethod
    def parse(cls, value: object) -> VolumeRecord | None:
        """A record entry, or ``None`` when it is not one."""
        if isinstance(value, VolumeRecord):
            return value
        if not isinstance(value, Mapping):
            return None
        reclaim, destination, instance = (
            value.get("reclaim", RETAIN),
            value.get("destination") or "",
            value.get("instance") or "",
        )
        if not all(isinstance(v, str) for v in (reclaim, destination, instance)):
            return None
        return cls(reclaim, destination, instance)


@dataclass(frozen=True)
class Migration:
    """A volume migration in flight: the folder of its verified backup, and the
    ``dsr.instance`` of the volume that backup was taken of (``""`` in older records, or a
    volume dsr did not make: the original is not known)."""

    folder: str
    original: str = ""

    def public(self) -> dict[str, str]:
        return {"folder": self.folder, "original": self.original}

    @classmethod
    def of(cls, value: object) -> Migration | None:
        """A record entry (a folder, or ``{"folder", "original"}``); ``None`` if neither."""
        if isinstance(value, Migration):
            return value
        if isinstance(value, str) and value:
            return cls(value)
        if isinstance(value, Mapping):
            folder, original = value.get("folder"), value.get("original")
            if isinstance(folder, str) and folder:
                return cls(folder, original if isinstance(original, str) else "")
        return None


@dataclass(frozen=True)
class ProjectRecord:
    """Everything one project's record holds (see the module docstring for its file)."""

    volumes: Mapping[str, VolumeRecord] = field(default_factory=dict)
    migrations: Mapping[str, Migration] = field(default_factory=dict)
    # Objects taken over (spec: adopt): kind ("volume", "network") -> name -> identity.
    adopted: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Containers an adoption renamed NAME_dsr_old and has not removed yet: NAME -> its id
    # (it has no dsr labels: only this says it is the rest of an adoption to finish).
    adopting: Mapping[str, str] = field(default_factory=dict)
    networks: bool = False
    # Work an interrupted backup or restore must finish (backup.journal): table -> entries.
    interrupted: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Keys this version does not know (written by a newer dsr): kept, never read.
    other: Mapping[str, Any] = field(default_factory=dict)

    def adoptions(self, kind: str) -> dict[str, str]:
        """The objects of ``kind`` ("volume", "network") this project adopted."""
        return dict(self.adopted.get(kind) or {})

    def with_adoptions(self, kind: str, table: Mapping[str, str]) -> ProjectRecord:
        return replace(self, adopted={**self.adopted, kind: dict(table)})

    def with_migration(self, volume: str, migration: Migration | None) -> ProjectRecord:
        """The record with ``volume``'s migration set (``None``: over)."""
        migrations = {k: v for k, v in self.migrations.items() if k != volume}
        if migration is not None:
            migrations[volume] = migration
        return replace(self, migrations=migrations)

    def with_adopting(self, name: str, container: str | None) -> ProjectRecord:
        """The record with the adoption of ``name`` renaming ``container`` (an id) recorded
        (``None``: forgotten)."""
        table = {k: v for k, v in self.adopting.items() if k != name}
        if container is not None:
            table[name] = container
        return replace(self, adopting=table)

    def table(self, name: str) -> dict[str, str]:
        """One table of the interrupted work (``stopped``, ``restoring``)."""
        return dict(self.interrupted.get(name) or {})

    def with_table(self, name: str, table: Mapping[str, str]) -> ProjectRecord:
        return replace(self, interrupted={**self.interrupted, name: dict(table)})

    def public(self) -> dict[str, Any]:
        """The record as its file holds it."""
        return {
            **self.other,
            "volumes": {k: v.public() for k, v in self.volumes.items()},
            "migrations": {k: v.public() for k, v in self.migrations.items()},
            "adopted": {k: dict(v) for k, v in self.adopted.items()},
            "adopting": {"container": dict(self.adopting)},
            "networks": self.networks,
            "interrupted": {k: dict(v) for k, v in self.interrupted.items()},
        }

    @classmethod
    def parse(cls, value: object) -> ProjectRecord:
        """The one parser: whatever the file held, the entries of the right types."""
        if not isinstance(value, Mapping):
            return cls()
        volumes = {
            name: entry
            for name, raw in _mapping(value.get("volumes")).items()
            if (entry := VolumeRecord.parse(raw)) is not None
        }
        migrations = {
            name: migration
            for name, raw in _mapping(value.get("migrations")).items()
            if (migration := Migration.of(raw)) is not None
        }
        return cls(
            volumes=volumes,
            migrations=migrations,
            adopted=_tables(value.get("adopted")),
            adopting=_tables(value.get("adopting")).get("container", {}),
            networks=value.get("networks") is True,
            interrupted=_tables(value.get("interrupted")),
            other={k: v for k, v in value.items() if isinstance(k, str) and k not in _KNOWN},
        )


_KNOWN = frozenset({"volumes", "migrations", "adopted", "adopting", "networks", "interrupted"})


def _mapping(value: object) -> dict[str, object]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and k}


def _tables(value: object) -> dict[str, dict[str, str]]:
    """A table of tables of strings (``adopted``, ``interrupted``), the rest dropped."""
    return {
        name: {k: v for k, v in _mapping(table).items() if isinstance(v, str)}
        for name, table in _mapping(value).items()
        if isinstance(table, Mapping)
    }
