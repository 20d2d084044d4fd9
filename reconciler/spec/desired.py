"""The desired state: every file of a spec set merged, with where each resource came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.spec.models import Backup, Container, Image, SpecFile, Volume, VolumeContainer
from reconciler.spec.yamlload import Loc, Located


@dataclass(frozen=True)
class FileSpec(Located):
    """One checked spec file with the line of each of its spec paths."""

    file: str
    model: SpecFile
    lines: Mapping[Loc, int]
    # Resources left out of ``model`` because they are invalid: (section, key). They still
    # count as defined, so that references to them are not reported a second time.
    broken: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Origin:
    """Where a resource is defined."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Desired:
    """What the host should have, for one project. Keys are Docker names."""

    project: str
    # True when neither a `project:` key nor --project named it: the folder's name did.
    project_from_folder: bool = False
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    images: Mapping[str, Image] = field(default_factory=dict)
    volume_containers: Mapping[str, VolumeContainer] = field(default_factory=dict)
    containers: Mapping[str, Container] = field(default_factory=dict)
    backups: Mapping[str, Backup] = field(default_factory=dict)
    origins: Mapping[str, Origin] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    # Each bind source's kind at load time ("dir" or "file"): compared with the kind it had
    # when a container was made, which a replace must know of.
    bind_kinds: Mapping[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many resources of each kind, in the order of the spec format."""
        return {
            "volume": len(self.volumes),
            "image": len(self.images),
            "volume container": len(self.volume_containers),
            "container": len(self.containers),
            "backup": len(self.backups),
        }
