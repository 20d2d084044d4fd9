"""``extends``: a service made from another one (of these files, or of another file) with
its own keys merged over it by the merge rules (``compose_merge``).

As compose documents it, ``depends_on`` and ``volumes_from`` are never taken from the
service extended (a service's dependencies are always its own), and the service extended
from another file is not part of the project. Paths stay relative to the project's
folder, as compose asks of files used with ``extends``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.importer.compose_merge import Merger, Origins, subpaths
from reconciler.spec.yamlload import Loc

if TYPE_CHECKING:
    from reconciler.importer.compose_read import ComposeProject

MAX_EXTENDS = 16  # services extending services, and files read for them
# What extends may copy in all (values, as YAML aliases are bounded): 2,000 services
# extending one of 20,000 values would otherwise build 40 million.
MAX_EXTENDED_VALUES = 200_000
NOT_SHARED = ("depends_on", "volumes_from", "extends")

Reader = Callable[[list[str], int], "ComposeProject"]


def resolve_extends(project: ComposeProject, read: Reader, depth: int) -> list[SpecIssue]:
    """Replace every service that ``extends`` another by the merge of both, in place."""
    services = project.data.get("services")
    if not isinstance(services, dict):
        return []
    resolver = _Resolver(project, read, depth)
    for name in list(services):
        resolver.resolve(name, ())
    return resolver.issues


class _Resolver:
    def __init__(self, project: ComposeProject, read: Reader, depth: int) -> None:
        self.project = project
        self.read = read
        self.depth = depth
        self.done: set[str] = set()
        self.issues: list[SpecIssue] = []
        self.loaded: dict[str, ComposeProject | None] = {}
        self.copied = 0  # values copied from extended services so far

    def resolve(self, name: str, chain: tuple[str, ...]) -> dict[str, Any] | None:
        services = self.project.data["services"]
        service = services.get(name)
        if not isinstance(service, dict) or name in self.done or "extends" not in service:
            return service if isinstance(service, dict) else None
        loc: Loc = ("services", name, "extends")
        if name in chain or len(chain) >= MAX_EXTENDS:
            what = " -> ".join((*chain, name))
            self.issues.append(self.project.issue(loc, f"extends forms a cycle or nests more than {MAX_EXTENDS} deep: {what}"))  # fmt: skip
            self.done.add(name)
            return None
        found = self.base(name, service["extends"], loc, chain)
        self.done.add(name)
        if found is None:
            return None
        base, base_origins = found
        self.copied += len(base_origins) + 1
        if self.copied > MAX_EXTENDED_VALUES:
            self.issues.append(self.project.issue(loc, f"extends copies more than {MAX_EXTENDED_VALUES} values in all"))  # fmt: skip
            self.done.update(services)  # said once: nothing more is resolved
            return None
        own = {k: v for k, v in service.items() if k != "extends"}
        merger = Merger(base_origins, self.project.origins)
        merged = merger.merge(base, own, ("services", name))
        self.issues.extend(merger.issues)
        self.project.origins.update(merger.origins)
        services[name] = merged
        return merged  # type: ignore[no-any-return]

    def base(
        self, name: str, value: Any, loc: Loc, chain: tuple[str, ...]
    ) -> tuple[dict[str, Any], Origins] | None:
        """The service extended (its shared keys), with where each came from, moved to
        ``services.name``."""
        other_file = None
        if isinstance(value, dict):
            other, other_file = value.get("service"), value.get("file")
        else:
            other = value
        if not isinstance(other, str) or not other or (other_file is not None and not isinstance(other_file, str)):  # fmt: skip
            self.issues.append(self.project.issue(loc, "extends must be a service name or a mapping of service and file"))  # fmt: skip
            return None
        if other_file:
            return self.from_file(name, other, other_file, loc)
        base = self.resolve(other, (*chain, name))
        if base is None:
            if other not in self.project.data["services"]:
                self.issues.append(self.project.issue(loc, f"service '{other}' is not defined"))
            return None
        return self.shared(base, self.project.origins, other, name)

    def from_file(self, name: str, other: str, file: str, loc: Loc) -> tuple[dict[str, Any], Origins] | None:  # fmt: skip
        here = os.path.dirname(os.path.abspath(self.project.where(loc)[0]))
        path = os.path.normpath(os.path.join(here, os.path.expanduser(file)))
        if self.depth >= MAX_EXTENDS:
            self.issues.append(self.project.issue(loc, f"extends reads files more than {MAX_EXTENDS} deep"))  # fmt: skip
            return None
        if path not in self.loaded:  # each file once, however many services extend it
            try:
                self.loaded[path] = self.read([path], self.depth + 1)
            except SpecError as err:
                self.issues.extend(err.issues)
                self.loaded[path] = None
        loaded = self.loaded[path]
        if loaded is None:
            return None
        base = (loaded.data.get("services") or {}).get(other)
        if not isinstance(base, dict):
            self.issues.append(self.project.issue(loc, f"service '{other}' is not defined in {path}"))  # fmt: skip
            return None
        return self.shared(base, loaded.origins, other, name)

    @staticmethod
    def shared(
        base: dict[str, Any], origins: Origins, other: str, name: str
    ) -> tuple[dict[str, Any], Origins]:
        kept = {k: v for k, v in base.items() if k not in NOT_SHARED}
        moved: Origins = {}
        for sub in subpaths(kept):
            found = origins.get(("services", other, *sub))
            if found is not None:
                moved[("services", name, *sub)] = found
        return kept, moved
