"""A compose project as a dsr spec: the objects compose made, by the names compose gave
them, each with ``adopt: true``.

Names: a named volume is ``<project>_<key>`` (or its ``name:``), a network
``<project>_<key>`` (the default one ``<project>_default``), a container its
``container_name`` or ``<project>-<service>-1`` as Compose v2 names it
(``<project>_<service>_1`` with ``naming="v1"``, as the Python ``docker-compose`` 1.x that
Debian ships does). An image that compose builds is named as compose names it
(``<project>-<service>``, v1: ``<project>_<service>``) unless ``image:`` names it.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.importer.compose_read import ComposeProject, plain, project_name, text
from reconciler.importer.compose_service import convert_service
from reconciler.importer.model import Imported, Note
from reconciler.spec.names import PROJECT_NAME, matches
from reconciler.spec.policy import Policy
from reconciler.spec.yamlload import Loc, format_loc

VOLUME_KEYS = {"driver", "driver_opts", "external", "name", "labels"}
NETWORK_KEYS = {"driver", "internal", "labels", "name", "external"}


class Converter:
    """One compose project being converted; collects notes and errors as it goes."""

    def __init__(
        self, compose: ComposeProject, project: str, naming: str, policy: Policy | None = None
    ) -> None:
        self.compose = compose
        self.policy = policy
        self.project = project
        self.naming = naming
        self.out = Imported(project=project, source=", ".join(compose.files))
        self.issues: list[SpecIssue] = []
        self.volume_names: dict[str, str] = {}  # compose key -> Docker name
        self.network_names: dict[str, str | None] = {}  # compose key -> name (None: external)
        self.container_names: dict[str, str] = {}  # service -> container name

    # -- reporting ------------------------------------------------------------------------
    def note(self, loc: Loc, message: str) -> None:
        file, line = self.compose.where(loc)
        self.out.notes.append(Note(file, line, format_loc(loc), message))

    def refused(self, loc: Loc, source: str) -> bool:
        """A bind source the host-path policy refuses: noted, and left out of the spec
        (which would otherwise not validate)."""
        if self.policy is None or "$" in source or source.startswith("~"):
            return False
        why = self.policy.check(source)
        if why:
            self.note(loc, f"{why}; the bind is left out")
        return bool(why)

    def error(self, loc: Loc, message: str) -> None:
        self.issues.append(self.compose.issue(loc, message))

    # -- names ----------------------------------------------------------------------------
    def container_name(self, service: str, spec: dict[str, Any]) -> str:
        if spec.get("container_name"):
            return text(spec["container_name"])
        if self.naming == "v1":
            return f"{self.project}_{service}_1"
        return f"{self.project}-{service}-1"

    def built_image(self, service: str) -> str:
        sep = "_" if self.naming == "v1" else "-"
        return f"{self.project}{sep}{service}"

    def path(self, value: str) -> str:
        """A host path as compose resolves it: relative to the project folder."""
        if value.startswith(("/", "~", "$")):
            return value
        return os.path.normpath(os.path.join(self.compose.folder, value))

    # -- sections -------------------------------------------------------------------------
    def run(self) -> Imported:
        data = self.compose.data
        for key, spec in (data.get("volumes") or {}).items():
            self.volume(key, spec or {})
        for key, spec in (data.get("networks") or {}).items():
            self.network(key, spec or {})
        services = data["services"]
        for name, spec in services.items():
            self.container_names[name] = self.container_name(name, spec)
        self.cycles(services)
        for name, spec in services.items():
            convert_service(self, name, spec)
        for section in ("configs", "secrets", "include"):
            if section in data:
                self.note((section,), f"dsr has no {section}; mount the files with a bind")
        if self.issues:
            raise SpecError(self.issues)
        return self.out

    def cycles(self, services: dict[str, Any]) -> None:
        """A depends_on cycle (compose refuses one too): named at the first service's
        entry that starts it."""
        edges: dict[str, list[str]] = {}
        for name, spec in services.items():
            depends = spec.get("depends_on") or []
            names = depends if isinstance(depends, list) else list(depends) if isinstance(depends, dict) else []  # fmt: skip
            edges[name] = [text(n) for n in names if text(n) in services]
        done: set[str] = set()
        for start in sorted(edges):  # depth first, without recursion: chains may be long
            if start in done:
                continue
            stack, path = [(start, iter(edges[start]))], [start]
            while stack:
                node, targets = stack[-1]
                target = next(targets, None)
                if target is None:
                    stack.pop()
                    path.pop()
                    done.add(node)
                elif target in path:
                    cycle = [*path[path.index(target) :], target]
                    self.error(
                        ("services", cycle[0], "depends_on", cycle[1]),
                        "depends_on forms a cycle: " + " -> ".join(cycle),
                    )
                elif target not in done:
                    stack.append((target, iter(edges[target])))
                    path.append(target)

    def volume(self, key: str, spec: dict[str, Any]) -> None:
        loc: Loc = ("volumes", key)
        for extra in sorted(set(spec) - VOLUME_KEYS):
            self.note((*loc, extra), "dsr volumes have no such setting")
        name = text(spec["name"]) if spec.get("name") else None
        if plain(spec.get("external")) in (True, "true"):
            docker_name = name or key
            self.volume_names[key] = docker_name
            self.out.volumes[docker_name] = {"external": True}
            return
        docker_name = name or f"{self.project}_{key}"
        self.volume_names[key] = docker_name
        out: dict[str, Any] = {"adopt": True}
        driver = text(spec["driver"]) if spec.get("driver") else "local"
        if driver != "local":
            out["driver"] = driver
        options = spec.get("driver_opts") or {}
        if options:
            out["driver_opts"] = {str(k): text(v) for k, v in options.items()}
        labels = labels_of(self, (*loc, "labels"), spec.get("labels"))
        if labels:
            out["labels"] = labels
        self.out.volumes[docker_name] = out

    def network(self, key: str, spec: dict[str, Any]) -> None:
        loc: Loc = ("networks", key)
        for extra in sorted(set(spec) - NETWORK_KEYS):
            self.note((*loc, extra), "dsr networks have no such setting")
        if plain(spec.get("external")) in (True, "true"):
            self.network_names[key] = None
            self.note((*loc, "external"), "dsr has no external networks; its services "
                      "are not attached to it in the spec")  # fmt: skip
            return
        name = text(spec["name"]) if spec.get("name") else f"{self.project}_{key}"
        self.network_names[key] = name
        driver = text(spec["driver"]) if spec.get("driver") else "bridge"
        out: dict[str, Any] = {"adopt": True}
        if driver != "bridge":
            self.note((*loc, "driver"), f"dsr makes bridge networks only, not {driver}")
        if plain(spec.get("internal")) in (True, "true"):
            out["internal"] = True
        labels = labels_of(self, (*loc, "labels"), spec.get("labels"))
        if labels:
            out["labels"] = labels
        self.out.networks[name] = out

    def default_network(self) -> str:
        """The project's default network, added when a service uses it."""
        if "default" in self.network_names:
            name = self.network_names["default"]
            return name or ""
        name = f"{self.project}_default"
        self.network_names["default"] = name
        self.out.networks.setdefault(name, {"adopt": True})
        return name


def labels_of(converter: Converter, loc: Loc, value: Any) -> dict[str, str]:
    """compose labels: a map, or a list of ``KEY=VALUE`` (``KEY`` alone: empty)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): text(v) for k, v in value.items()}
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            key, _, val = text(item).partition("=")
            if not key:
                converter.error((*loc, index), f"'{item}' is not KEY=VALUE")
            out[key] = val
        return out
    converter.error(loc, "labels must be a mapping or a list")
    return {}


def split_command(converter: Converter, loc: Loc, value: Any) -> list[str] | None:
    """compose's command and entrypoint: a list, or a string split as a shell would
    (compose runs no shell for it)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [text(v) for v in value]
    try:
        return [part.replace("$", "$$") for part in shlex.split(str(plain(value)))]
    except ValueError as err:
        converter.error(loc, f"cannot split the command: {err}")
        return None


def import_compose(
    compose: ComposeProject, project: str | None, naming: str = "v2", policy: Policy | None = None
) -> Imported:
    """The dsr spec of ``compose`` (see the module docstring). ``project``: compose's
    ``--project-name``; else the files' ``name:``, else the first file's folder."""
    given = project or (text(compose.data["name"]) if compose.data.get("name") else None)
    name = project_name(given or os.path.basename(compose.folder))
    if not matches(PROJECT_NAME, name):
        raise SpecError(
            [SpecIssue(compose.files[0], 1, "name", f"'{given}' gives no valid project name")]
        )
    return Converter(compose, name, naming, policy).run()
