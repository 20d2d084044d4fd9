"""Spec files in, one ``Desired`` state out, or a ``SpecError`` listing every problem.

``load_spec(PATH)`` finds the files (a file, or ``*.yaml``/``*.yml`` below a folder, sorted),
reads each with line numbers, checks it against the models, then checks the set as a
whole (``resolve``). Nothing here touches Docker or writes to the host.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import stat
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.errors import SpecError, SpecIssue
from reconciler.files import InputFileError, read_bounded
from reconciler.spec.desired import Desired, FileSpec
from reconciler.spec.models import SECTIONS, Container, SpecFile, VolumeContainer
from reconciler.spec.names import BACKUP_NAME, DOCKER_NAME, IMAGE_KEY
from reconciler.spec.policy import Policy
from reconciler.spec.redact import Redaction, remember
from reconciler.spec.resolve import missing_binds, resolve
from reconciler.spec.share import placements, references
from reconciler.spec.yamlload import Document, Loc, Plain, format_loc, load_yaml

_SUFFIXES = (".yaml", ".yml")


def find_spec_files(path: str) -> list[str]:
    """The spec files ``path`` names: itself, or every YAML file below it, sorted."""
    if os.path.isdir(path):
        found: list[str] = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            # normpath: `dsr validate .` names files `web.yaml`, not `./web.yaml`
            found.extend(
                os.path.normpath(os.path.join(root, f)) for f in files if f.endswith(_SUFFIXES)
            )
        return sorted(found)
    return [path]


def load_spec(
    path: str,
    *,
    project: str | None = None,
    policy: Policy | None = None,
    env: Mapping[str, str] | None = None,
    project_optional: bool = False,
    host_facts: bool = True,
) -> Desired:
    """Load, check and merge a spec set; raise ``SpecError`` with every problem found.

    ``host_facts=False`` (validate, diff): bind sources missing here are no error but
    listed in ``Desired.unchecked`` (see ``resolve``).

    ``project_optional``: a folder name that is no valid project name is no error (the
    project is then ``default`` and ``project_from_folder`` is set), for ``dsr diff``'s OLD,
    which is often checked out in a folder named anyhow and takes NEW's project."""
    files = find_spec_files(path)
    if not files:
        raise SpecError([SpecIssue(path, 1, "", "no *.yaml or *.yml spec files found here")])
    issues: list[SpecIssue] = []
    parsed: list[FileSpec] = []
    policy = policy or Policy()
    for file in files:
        refused = policy.check(file) if os.path.islink(file) else None
        if refused:  # a link in the specs (git stores them) to a file elsewhere on the host
            issues.append(SpecIssue(file, 1, "", f"not read: {refused}"))
            continue
        spec, problems = load_file(file, env)
        issues.extend(problems)
        if spec is not None:
            parsed.append(spec)
    desired, problems = resolve(parsed, path, project, policy, project_optional, host_facts)
    issues.extend(_redacted(problems, desired.redaction))
    if issues:
        raise SpecError(issues)
    placed = placements(parsed)  # with no `hosts` anywhere, every host's share is all
    if not host_facts:
        notes = _redacted(list(missing_binds(parsed, policy)), desired.redaction)
        desired = dataclasses.replace(desired, unchecked=tuple(str(n) for n in notes))
    env_values = {name: dict(c.env) for name, c in desired.containers.items()}
    remember(desired.redaction, env_values)  # the edge hides them from every output from now on
    return dataclasses.replace(
        desired,
        bind_kinds=bind_kinds(desired),
        bind_real=bind_real(desired),
        placements=placed,
        references=references(parsed) if placed else (),
    )


def _bind_sources(desired: Desired) -> set[str]:
    owners: list[Container | VolumeContainer] = [
        *desired.containers.values(),
        *desired.volume_containers.values(),
    ]
    return {m.source for owner in owners for m in owner.mounts if m.type == "bind" and m.source}


def bind_real(desired: Desired) -> dict[str, str]:
    """Each bind source whose resolved form is another path (links on the way)."""
    out = {}
    for source in sorted(_bind_sources(desired)):
        real = os.path.realpath(source)
        if real != source:
            out[source] = real
    return out


def bind_kinds(desired: Desired) -> dict[str, str]:
    """What each bind source is now (``dir`` or ``file``, symlinks followed): a container
    made when it was the other is drift, whatever the spec says."""
    out = {}
    for source in sorted(_bind_sources(desired)):
        try:
            out[source] = "dir" if stat.S_ISDIR(os.stat(source).st_mode) else "file"
        except OSError:
            continue  # missing with create: true: made as a folder
    return out


def _redacted(issues: list[SpecIssue], redaction: Redaction) -> list[SpecIssue]:
    """``issues`` quoting values from ``${VAR}`` as written, never as expanded."""
    if not redaction:
        return issues
    return [dataclasses.replace(i, message=redaction.text(i.message)) for i in issues]


def load_file(
    file: str, env: Mapping[str, str] | None = None
) -> tuple[FileSpec | None, list[SpecIssue]]:
    """One file checked on its own: its model (when it has one) and its problems."""
    try:
        text = read_bounded(file).decode("utf-8")
    except FileNotFoundError:
        return None, [SpecIssue(file, 1, "", "no such file or directory")]
    except InputFileError as err:
        return None, [SpecIssue(file, 1, "", f"cannot read the file: {err}")]
    except OSError as err:
        return None, [SpecIssue(file, 1, "", f"cannot read the file: {err.strerror or err}")]
    except UnicodeDecodeError as err:
        return None, [SpecIssue(file, 1, "", f"cannot read the file: not UTF-8 text ({err})")]
    doc = load_yaml(text, file, env)
    spec, issues = _check(doc)
    if ("project",) in doc.templated:
        # The project names every object's ownership and heads every plan: written out.
        issues = [i for i in issues if i.path != "project"]  # this is the problem to fix
        issues.append(doc.issue(("project",), "must be written out, not taken from ${VAR}"))
        spec = None
    return spec, _redacted(issues, Redaction.of(doc.templated.values()))


def _check(doc: Document) -> tuple[FileSpec | None, list[SpecIssue]]:
    file = doc.file
    if doc.data is None:
        if doc.issues:  # a syntax error: nothing more can be read from this file
            return None, doc.issues
        return None, [
            SpecIssue(file, 1, "", "the file is empty; a spec file starts with 'version: 1'")
        ]
    if not isinstance(doc.data, dict):
        return None, [
            SpecIssue(file, 1, "", "a spec file must be a mapping that starts with 'version: 1'")
        ]
    if "services" in doc.data and "containers" not in doc.data:
        return None, [
            doc.issue(
                ("services",),
                "this is a docker compose file (it has services:), not a dsr spec: dsr "
                "reads 'version: 1' and containers: (compose's volumes: is mounts:, "
                "environment: is env:); dsr schema prints the whole format",
            )
        ]
    data = {k: v for k, v in doc.data.items() if not k.startswith("x-")}
    context = {"base_dir": os.path.dirname(os.path.abspath(file))}
    issues = list(doc.issues)
    broken: set[tuple[str, str]] = set()
    try:
        model = SpecFile.model_validate(data, context=context)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        # A value the loader already faulted (an unset ${VAR}) is not faulted again.
        faulted = {i.path for i in doc.issues}
        issues.extend(
            i for i in map(functools.partial(_issue, doc), errors) if i.path not in faulted
        )
        # Set the broken resources aside and check the rest, so that one bad entry
        # does not hide the reference and path problems of all the others.
        broken = {(str(e["loc"][0]), str(e["loc"][1])) for e in errors if _in_section(e["loc"])}
        if not all(_in_section(e["loc"]) for e in errors):
            return None, issues
        for section, key in broken:
            data[section] = {k: v for k, v in data[section].items() if k != key}
        try:
            model = SpecFile.model_validate(data, context=context)
        except ValidationError:
            return None, issues
    spec = FileSpec(
        file=file,
        model=model,
        lines=doc.lines,
        broken=frozenset(broken),
        templated=doc.templated,
    )
    return spec, issues


def _in_section(loc: tuple[Any, ...]) -> bool:
    """The error lies inside one resource of a section (not in the file's top level)."""
    return len(loc) >= 2 and loc[0] in SECTIONS and loc[1] != "[key]"


def _issue(doc: Document, error: Any) -> SpecIssue:
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return doc.issue(loc[:-1], f"required key '{loc[-1]}' is missing")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = _compose_hint(loc) or _suggest(key, _fields_at(loc[:-1]))
        issue = doc.issue(loc[:-1], f"unknown key '{key}'{hint}")
        return SpecIssue(issue.file, doc.line_of(loc), issue.path, issue.message)
    if loc and loc[-1] == "[key]":
        return doc.issue(loc[:-1], _bad_name(loc, value))
    if kind == "value_error":
        return doc.issue(loc, str(ctx.get("error", error["msg"])))
    if kind == "literal_error":
        return doc.issue(loc, f"must be {ctx.get('expected')}, not {_describe(value)}")
    if kind == "string_pattern_mismatch" and loc == ("project",):
        return doc.issue(
            loc, f"'{value}' is not a valid project name (lower-case letters, digits, '_' and '-')"
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == DOCKER_NAME:
        return doc.issue(loc, f"'{value}' is not a valid Docker name (must match {DOCKER_NAME})")
    if kind == "greater_than_equal":
        hint = " (-1 keeps all)" if ctx.get("ge") == -1 else ""
        return doc.issue(loc, f"must be {ctx.get('ge')} or more{hint}, not {_describe(value)}")
    if kind in _EXPECTED:
        return doc.issue(loc, f"expected {_EXPECTED[kind]}, got {_describe(value)}")
    return doc.issue(loc, str(error["msg"]))


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _describe(value: Any) -> str:
    if isinstance(value, Plain):
        value = value.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _bad_name(loc: Loc, value: Any) -> str:
    section = loc[0] if loc else ""
    if section == "images":
        return f"'{value}' is not a valid image key (lower case; must match {IMAGE_KEY})"
    if section == "backups":
        return f"'{value}' is not a valid backup name (must match {BACKUP_NAME})"
    return f"'{value}' is not a valid Docker name (must match {DOCKER_NAME})"


# Keys a compose file gives a service, and what a dsr container says instead.
_COMPOSE = {
    "volumes": "mounts (the same short form: SOURCE:TARGET[:ro]; volumes_from takes "
    "another container's)",
    "environment": "env (a mapping of NAME: value)",
    "container_name": "the container's key (it is the Docker name)",
    "depends_on": "nothing: containers are made after those they take volumes from",
    "build": "an images key (a data-packed image) or an image reference",
}


def _compose_hint(loc: Loc) -> str:
    """A compose habit on a container (``volumes:``, ``environment:``): what dsr calls it."""
    if len(loc) == 3 and loc[0] in ("containers", "volume_containers"):
        instead = _COMPOSE.get(str(loc[-1]))
        if instead:
            return f"; compose's '{loc[-1]}' is {instead} in dsr"
    return ""


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid keys: {', '.join(valid)}" if valid else ""


def _fields_at(loc: Loc) -> list[str]:
    """The valid keys of the model found by following ``loc`` from ``SpecFile``."""
    current: Any = SpecFile
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


def describe_counts(desired: Desired) -> str:
    """``2 volumes, 1 image, ...`` for the one line ``dsr validate`` prints on success."""
    parts = []
    for label, count in desired.counts().items():
        parts.append(f"{count} {label}{'' if count == 1 else 's'}")
    files = len(desired.files)
    return f"{files} file{'s' if files != 1 else ''}: " + ", ".join(parts)


__all__ = ["describe_counts", "find_spec_files", "format_loc", "load_file", "load_spec"]


def load_checked(
    path: str,
    *,
    project: str | None = None,
    policy_file: str | None = None,
    docker_host: str | None = None,
    state_dir: str | None = None,
    project_optional: bool = False,
    host_facts: bool = True,
) -> Desired:
    """The spec set at ``path``, checked against the admin policy file (if any) and the
    engine socket and state directory dsr runs with (both protected): what every command
    loads. ``project_optional``: a folder name that is no project name is no error (dsr
    diff's OLD, checked out anywhere). Raises ``SpecError`` (or ``PolicyError``)."""
    from reconciler.spec.policy import load_policy

    policy = load_policy(policy_file, (path,), docker_host=docker_host, state_dir=state_dir)
    return load_spec(
        path,
        project=project,
        policy=policy,
        project_optional=project_optional,
        host_facts=host_facts,
    )
