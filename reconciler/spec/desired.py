"""The desired state: every file of a spec set merged, with where each resource came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from reconciler.spec.backups import Backup
from reconciler.spec.models import Container, Image, Network, SpecFile, Volume, VolumeContainer
from reconciler.spec.redact import Redaction
from reconciler.spec.yamlload import Loc, Located, Templated

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FileSpec(Located):
    """One checked spec file with the line of each of its spec paths."""

    file: str
    model: SpecFile
    lines: Mapping[Loc, int]
    # Resources left out of ``model`` because they are invalid: (section, key). They still
    # count as defined, so that references to them are not reported a second time.
    broken: frozenset[tuple[str, str]] = frozenset()
    # Scalars written with ${VAR}, by spec path: what plans and errors show instead.
    templated: Mapping[Loc, Templated] = field(default_factory=dict)

    def redactions(self) -> dict[tuple[str, str], Redaction]:
        """Per resource (section, key): how to show its values as written."""
        found: dict[tuple[str, str], list[Templated]] = {}
        for loc, item in self.templated.items():
            if len(loc) >= 2:
                found.setdefault((str(loc[0]), str(loc[1])), []).append(item)
        return {key: Redaction.of(items) for key, items in found.items()}


@dataclass(frozen=True)
class Origin:
    """Where a resource is defined."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Reference:
    """One resource naming another (a mount's volume, an image key, volumes_from, a backup's
    volume): wherever ``source`` is placed, ``target`` must be placed too."""

    source: str  # a resource, e.g. container:web1
    target: str  # e.g. volume:data
    file: str
    line: int
    path: str  # the spec path that names it, e.g. containers.web1.mounts[0].source


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
    networks: Mapping[str, Network] = field(default_factory=dict)
    origins: Mapping[str, Origin] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    # Each bind source's kind at load time ("dir" or "file"): compared with the kind it had
    # when a container was made, which a replace must know of.
    bind_kinds: Mapping[str, str] = field(default_factory=dict)
    # Each bind source whose resolved form differs (a symlink on the way), as resolved at
    # load time: Docker gets the resolved path, so a link re-pointed after apply cannot
    # change what a container binds at its next restart, and the next pass sees it as drift.
    bind_real: Mapping[str, str] = field(default_factory=dict)
    # How to show each resource's values as written, (section, key) -> Redaction, and all
    # of them at once (for text that names no resource: errors, pull messages).
    redactions: Mapping[tuple[str, str], Redaction] = field(default_factory=dict)
    redaction: Redaction = field(default_factory=Redaction)
    # Host placement (see spec.share): each resource's `hosts` selectors (its own, else its
    # file's); a resource missing here belongs on every host.
    placements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    # Set once narrowed to one host's share: that host's name, and the resources of the
    # whole spec placed on other hosts only (a volume here moved away: it is handed over,
    # never reclaimed as if it had left the spec).
    host: str | None = None
    elsewhere: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Placed volumes -> the folder where a move between hosts is handed over: the first
    # folder destination of a backup rule (of the whole spec) that lists the volume.
    handoff_to: Mapping[str, str] = field(default_factory=dict)
    # Loaded without host facts (validate, diff): what was not checked here, one
    # ``FILE:LINE: path: message`` each (a bind source that does not exist on this machine).
    unchecked: tuple[str, ...] = ()

    def shown(self, section: str, name: str, model: M | None = None) -> M:
        """A display copy of a resource (or of ``model``, one of its values): every value
        that came from ``${VAR}`` shows as written, never as expanded."""
        if model is None:
            model = getattr(self, section)[name]
        assert model is not None
        redaction = self.redactions.get((section, name))
        return model if not redaction else redaction.model(model)  # type: ignore[return-value]

    def counts(self) -> dict[str, int]:
        """How many resources of each kind, in the order of the spec format."""
        return {
            "volume": len(self.volumes),
            "image": len(self.images),
            "volume container": len(self.volume_containers),
            "container": len(self.containers),
            "backup": len(self.backups),
            **({"network": len(self.networks)} if self.networks else {}),
        }
