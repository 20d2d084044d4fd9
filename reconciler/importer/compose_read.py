"""Read compose files as Docker Compose v2 reads them, keeping where each value came from.

YAML 1.2 as compose reads it (``reconciler.spec.yamlload``), with ``<<`` merge keys
applied and ``${VAR}`` left as written: a value written with ``${...}`` is kept as its
text (``Written``), so the spec expands it where dsr runs, as compose would where it runs.
Several files merge as ``docker compose -f a -f b`` merges them (``compose_merge``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.files import InputFileError, read_bounded
from reconciler.importer.compose_extends import resolve_extends
from reconciler.importer.compose_merge import Origins, merge_file, subpaths
from reconciler.spec.yamlload import Loc, Plain, format_loc, load_yaml

MAX_COMPOSE_BYTES = 4 << 20
TOP_LEVEL = {"version", "name", "services", "volumes", "networks", "configs", "secrets", "include"}
_VAR_NAMES = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# compose's "required" forms, ${VAR:?message} and ${VAR?message}: dsr's ${VAR} is an error
# when VAR is unset too (a $$ before it is an escaped $, left alone).
_REQUIRED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}")


class Written(str):
    """Text written with ``${VAR}``: kept as written (never escaped, never expanded)."""

    __slots__ = ()


@dataclass
class ComposeProject:
    """The merged compose model, and the file and line of every path in it."""

    files: list[str]
    data: dict[str, Any]
    origins: dict[Loc, tuple[str, int]] = field(default_factory=dict)

    def where(self, loc: Loc) -> tuple[str, int]:
        for end in range(len(loc), -1, -1):
            found = self.origins.get(loc[:end])
            if found is not None:
                return found
        return (self.files[0] if self.files else "", 1)

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        file, line = self.where(loc)
        return SpecIssue(file, line, format_loc(loc), message)

    @property
    def folder(self) -> str:
        """Where relative paths start: the first file's folder, as compose's project dir."""
        return os.path.dirname(os.path.abspath(self.files[0]))


def read_compose(files: list[str]) -> ComposeProject:
    """The compose files merged in order, ``extends`` resolved; raises ``SpecError``
    naming file, line and path."""
    return _read(files, 0)


def _read(files: list[str], depth: int) -> ComposeProject:
    """``depth`` > 0: a file read for ``extends``, which need not be a whole project."""
    project = ComposeProject(files=list(files), data={})
    issues: list[SpecIssue] = []
    for path in files:
        try:
            text = read_bounded(path, MAX_COMPOSE_BYTES).decode("utf-8")
        except (InputFileError, OSError, UnicodeDecodeError) as err:
            issues.append(SpecIssue(path, 1, "", f"cannot read the compose file: {err}"))
            continue
        text = _REQUIRED.sub(lambda m: "${" + m.group(1) + "}", text)
        # Every ${NAME} expands to a marker, then each such value is put back as written.
        env = {name: f"${{{name}}}" for name in _VAR_NAMES.findall(text)}
        doc = load_yaml(text, path, env=env)
        if doc.issues:
            issues.extend(doc.issues)
            continue
        data = doc.data if doc.data is not None else {}
        for loc, templated in doc.templated.items():
            data = _put(data, loc, Written(templated.written))
        if not isinstance(data, dict):
            issues.append(SpecIssue(path, 1, "", "a compose file must be a mapping"))
            continue
        data = _merge_keys(_nulls(data))
        lines: Origins = {loc: (path, line) for loc, line in doc.lines.items()}
        lines[()] = (path, 1)
        data, project.origins, problems = merge_file(
            project.data, project.origins, data, lines, doc.tags
        )
        issues.extend(problems)
        project.data = data
    if not issues:
        issues.extend(resolve_extends(project, _read, depth))
    if not issues and depth == 0:
        issues.extend(_check(project))
    if issues:
        raise SpecError(issues)
    return project


def _put(data: Any, loc: Loc, value: Any) -> Any:
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(data, list) and isinstance(head, int) and head < len(data):
        data[head] = _put(data[head], rest, value)
        return data
    if isinstance(data, dict) and head in data:
        data[head] = _put(data[head], rest, value)
    return data


def _nulls(value: Any) -> Any:
    """``key:`` with nothing after it is None (compose's "no value"), not a text."""
    if isinstance(value, Plain) and value.value is None:
        return None
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    return value


def _merge_keys(value: Any) -> Any:
    """YAML merge keys (``<<: *base``) applied: the mapping's own keys win."""
    if isinstance(value, list):
        return [_merge_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    merged = value.get("<<")
    sources = merged if isinstance(merged, list) else [merged] if merged is not None else []
    for source in sources:
        if isinstance(source, dict):
            out.update(_merge_keys(source))
    out.update({k: _merge_keys(v) for k, v in value.items() if k != "<<"})
    return out


_S, _L, _M, _N = "a value", "a list", "a mapping", "empty"
# The shape compose gives each key the importer reads (a key of a service or its parts;
# ``*`` is any key, ``[]`` any list entry);
# what is not of its shape is an error here, never a crash later.
SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {
    **{("services", "*", k): (_L,) for k in (
        "volumes", "ports", "expose", "volumes_from", "cap_add", "cap_drop", "devices",
        "secrets", "configs", "security_opt", "links", "external_links", "profiles")},
    **{("services", "*", k): (_L, _M) for k in (
        "depends_on", "environment", "labels", "networks", "extra_hosts", "sysctls",
        "annotations")},
    **{("services", "*", k): (_M,) for k in (
        "healthcheck", "deploy", "logging", "ulimits", "blkio_config", "develop")},
    **{("services", "*", k): (_S, _L) for k in (
        "command", "entrypoint", "env_file", "tmpfs", "dns", "dns_search", "dns_opt")},
    **{("services", "*", k): (_S,) for k in (
        "image", "container_name", "restart", "user", "working_dir", "stop_signal",
        "stop_grace_period", "network_mode", "shm_size", "mem_limit", "cpus", "init",
        "hostname", "platform", "pull_policy", "privileged", "read_only", "tty")},
    ("services", "*", "build"): (_S, _M),
    ("services", "*", "depends_on", "*"): (_M, _N),
    ("services", "*", "networks", "*"): (_M, _N),
    ("services", "*", "networks", "*", "aliases"): (_L,),
    ("services", "*", "volumes", "[]"): (_S, _M),
    ("services", "*", "volumes", "[]", "bind"): (_M,),
    ("services", "*", "volumes", "[]", "volume"): (_M,),
    ("services", "*", "volumes", "[]", "tmpfs"): (_M,),
    ("services", "*", "ports", "[]"): (_S, _M),
    ("services", "*", "env_file", "[]"): (_S, _M),
    ("services", "*", "healthcheck", "test"): (_S, _L),
    ("services", "*", "deploy", "resources"): (_M,),
    ("services", "*", "deploy", "resources", "limits"): (_M,),
    ("services", "*", "extends"): (_S, _M),
    ("volumes", "*", "driver_opts"): (_M,),
    ("volumes", "*", "labels"): (_L, _M),
    ("networks", "*", "labels"): (_L, _M),
}  # fmt: skip
_BY_LENGTH: dict[int, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
for _pattern, _kinds in SHAPES.items():
    _BY_LENGTH.setdefault(len(_pattern), []).append((_pattern, _kinds))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return _M
    if isinstance(value, list):
        return _L
    return _N if value is None else _S


def _fits(part: str | int, pattern: str) -> bool:
    """``*``: any key of a mapping; ``[]``: any entry of a list."""
    if pattern == "[]":
        return isinstance(part, int)
    return isinstance(part, str) and pattern in ("*", part)


def _shapes(project: ComposeProject) -> list[SpecIssue]:
    """Every value the importer reads is of the shape compose gives it."""
    issues = []
    for loc in subpaths(project.data):
        for pattern, kinds in _BY_LENGTH.get(len(loc), ()):
            if all(_fits(part, p) for part, p in zip(loc, pattern, strict=True)):
                value: Any = project.data
                for part in loc:
                    value = value[part]
                if _kind(value) not in kinds:
                    want = " or ".join(k for k in kinds if k != _N)
                    issues.append(project.issue(loc, f"must be {want}, not {_kind(value)}"))
                break
    return issues


def _check(project: ComposeProject) -> list[SpecIssue]:
    """The shape compose itself insists on; everything finer is checked per key later."""
    issues = []
    data = project.data
    for key in data:
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            issues.append(project.issue((key,), f"unknown top-level key '{key}' of a compose file"))
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        issues.append(project.issue(("services",), "a compose file needs a services mapping"))
        return issues
    for name, service in services.items():
        if not isinstance(service, dict):
            issues.append(project.issue(("services", name), "a service must be a mapping"))
        elif "image" not in service and "build" not in service:
            issues.append(project.issue(("services", name), "a service needs image or build"))
    if issues:
        return issues
    for section in ("volumes", "networks"):
        value = data.get(section)
        if value is not None and not isinstance(value, dict):
            issues.append(project.issue((section,), f"{section} must be a mapping"))
        for key, entry in (value or {}).items() if isinstance(value, dict) else ():
            if entry is not None and not isinstance(entry, dict):
                issues.append(project.issue((section, key), "must be a mapping or empty"))
    return issues or _shapes(project)


def text(value: Any) -> str:
    """A scalar as spec text: ``${VAR}`` as written, a literal ``$`` written ``$$``."""
    if isinstance(value, Written):
        return str(value)
    if isinstance(value, Plain):
        return value.text.replace("$", "$$")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value).replace("$", "$$")


def plain(value: Any) -> Any:
    """A scalar's value (a ``Plain`` number or boolean as what it is)."""
    return value.value if isinstance(value, Plain) else value


def project_name(name: str) -> str:
    """A project name as compose normalises one: lower case, [a-z0-9_-] only."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
