"""What an import produces: a spec document and the notes on what it could not carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Note:
    """Something of the source that the spec does not carry over, and why."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}{self.path}: not carried over: {self.message}"


@dataclass
class Imported:
    """A dsr spec file's content (plain values, in the spec format) and its notes."""

    project: str
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volume_containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    source: str = ""  # what it was made from, for the file's header
    policy: Any = field(default=None, repr=False)  # the host-path policy binds must pass

    def document(self) -> dict[str, Any]:
        """The spec file's mapping, sections in the spec format's order, empty ones out."""
        out: dict[str, Any] = {"version": 1, "project": self.project}
        for section in ("volumes", "networks", "volume_containers", "containers"):
            value = getattr(self, section)
            if value:
                out[section] = value
        return out
