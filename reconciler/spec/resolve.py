"""Checks that need the whole spec set: one project, unique names, references that resolve,
no ``volumes_from`` cycles, host paths that exist and that the policy allows.

Only reads the host (``stat``); never writes to it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

from reconciler.errors import SpecIssue
from reconciler.images import REPOSITORY, context_problems
from reconciler.kinds import Kind
from reconciler.spec.desired import Desired, FileSpec, Origin
from reconciler.spec.models import NEW_SUFFIX, OLD_SUFFIX, Mount
from reconciler.spec.names import (
    COMPONENT,
    NAME_TOTAL_MAX,
    PROJECT_NAME,
    is_image_reference,
    matches,
)
from reconciler.spec.policy import Policy
from reconciler.spec.redact import Redaction
from reconciler.spec.suggest import Suggester
from reconciler.spec.yamlload import Loc

# Which sections share a Docker namespace: a container and a volume container cannot
# both be called web1.
_NAMESPACES = {
    "volumes": "volume",
    "images": "image",
    "volume_containers": "container",
    "containers": "container",
    "backups": "backup",
    "networks": "network",
}
_RESOURCE = {
    "volumes": Kind.VOLUME.value,
    "images": Kind.IMAGE.value,
    "volume_containers": Kind.VOLUME_CONTAINER.value,
    "containers": Kind.CONTAINER.value,
    "backups": "backup",
    "networks": Kind.NETWORK.value,
}


def compose_project_name(folder: str) -> str | None:
    """A folder's name lowercased, as compose makes it a project name; ``None`` when that
    is no valid project name (non-ASCII letters, spaces, dots...)."""
    name = os.path.basename(os.path.abspath(folder)).lower()
    return name if matches(PROJECT_NAME, name) else None


def resolve(
    files: list[FileSpec],
    path: str,
    project: str | None,
    policy: Policy,
    project_optional: bool = False,
    host_facts: bool = True,
) -> tuple[Desired, list[SpecIssue]]:
    """Merge the checked files into one ``Desired`` and list the set's problems.

    ``host_facts``: check that bind sources exist (``plan``, ``apply``, ``run``). Without,
    (``validate``, ``diff``, which run where the spec is reviewed) a missing one is listed in
    ``Desired.unchecked`` instead; the host-path policy applies either way."""
    issues: list[SpecIssue] = []
    name, named_by_folder, problems = _project(files, path, project)
    if project_optional and named_by_folder:
        problems = [p for p in problems if p.path != "project"]
    issues.extend(problems)
    merged: dict[str, dict[str, object]] = {section: {} for section in _NAMESPACES}
    origins: dict[str, Origin] = {}
    first_seen: dict[tuple[str, str], tuple[FileSpec, Loc]] = {}
    for spec in files:
        for section, namespace in _NAMESPACES.items():
            for key, value in getattr(spec.model, section).items():
                loc: Loc = (section, key)
                earlier = first_seen.get((namespace, key))
                if earlier is not None:
                    other, other_loc = earlier
                    where = f"{other.file}:{other.line_of(other_loc)}"
                    issues.append(spec.issue(loc, f"'{key}' is defined twice: also at {where}"))
                    issues.append(
                        other.issue(
                            other_loc,
                            f"'{key}' is defined twice: also at {spec.file}:{spec.line_of(loc)}",
                        )
                    )
                    continue
                first_seen[(namespace, key)] = (spec, loc)
                reserved = [x for x in (NEW_SUFFIX, OLD_SUFFIX) if key.endswith(x)]
                if reserved and section != "backups":
                    issues.append(
                        spec.issue(
                            loc,
                            f"'{key}' ends with {reserved[0]}, which dsr reserves for the "
                            "objects of a replace or migration in progress",
                        )
                    )
                merged[section][key] = value
                origins[f"{_RESOURCE[section]}:{key}"] = Origin(spec.file, spec.line_of(loc))
    desired = Desired(
        project=name,
        project_from_folder=named_by_folder,
        volumes=merged["volumes"],  # type: ignore[arg-type]
        images=merged["images"],  # type: ignore[arg-type]
        volume_containers=merged["volume_containers"],  # type: ignore[arg-type]
        containers=merged["containers"],  # type: ignore[arg-type]
        backups=merged["backups"],  # type: ignore[arg-type]
        networks=merged["networks"],  # type: ignore[arg-type]
        origins=origins,
        files=tuple(f.file for f in files),
        redactions=(redactions := _redactions(files)),
        redaction=functools.reduce(Redaction.merge, redactions.values(), Redaction()),
    )
    known = {section: set(merged[section]) for section in _NAMESPACES}
    for spec in files:
        for section, key in spec.broken:
            known[section].add(key)
    volumes = Suggester(known["volumes"])
    targets = Suggester(known["containers"] | known["volume_containers"])
    issues.extend(_image_names(files, name))
    for spec in files:
        issues.extend(_references(spec, known, volumes, targets))
        issues.extend(_host_paths(spec, policy, host_facts))
    issues.extend(_cycles(files, desired))
    return desired, issues


def _redactions(files: list[FileSpec]) -> dict[tuple[str, str], Redaction]:
    out: dict[tuple[str, str], Redaction] = {}
    for spec in files:
        for key, redaction in spec.redactions().items():
            out[key] = out[key].merge(redaction) if key in out else redaction
    return out


def _image_names(files: list[FileSpec], project: str) -> Iterator[SpecIssue]:
    """A data-packed image is tagged ``dsr/<project>-<key>``: that must be a name Docker
    takes (``web_`` and ``x`` make ``web_-x``, which it does not)."""
    for spec in files:
        for key in spec.model.images:
            name = f"{REPOSITORY}/{project}-{key}"
            if not matches(COMPONENT, f"{project}-{key}") or len(name) > NAME_TOTAL_MAX:
                yield spec.issue(
                    ("images", key),
                    f"the image would be named {name}, which is not a valid image name "
                    "(separators '.', '_', '__' or '-' between lower-case letters and digits, "
                    f"at most {NAME_TOTAL_MAX} characters)",
                )


def _project(
    files: list[FileSpec], path: str, option: str | None
) -> tuple[str, bool, list[SpecIssue]]:
    """The project's name, whether only the folder's name gave it, and the problems."""
    declared = [(f, f.model.project) for f in files if f.model.project]
    issues = []
    for spec, value in declared[1:]:
        first, first_value = declared[0]
        if value != first_value:
            issues.append(
                spec.issue(
                    ("project",),
                    f"'{value}' differs from '{first_value}' at {first.file}:"
                    f"{first.line_of(('project',))}; all files of a spec set must agree",
                )
            )
    if declared:
        spec, value = declared[0]
        if option and option != value:
            issues.append(spec.issue(("project",), f"'{value}' differs from --project {option}"))
        return str(value), False, issues
    if option:
        if not matches(PROJECT_NAME, option):
            issues.append(
                SpecIssue(path, 1, "", f"--project '{option}' is not a valid project name")
            )
        return option, False, issues
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    name = compose_project_name(folder)
    if name is None:
        where = files[0].file if files else path
        issues.append(
            SpecIssue(
                where,
                1,
                "project",
                f"the folder name {os.path.basename(os.path.abspath(folder))!r} is not a valid "
                "project name (lower-case letters, digits, '_' and '-'); set 'project:' in "
                "the spec or pass --project",
            )
        )
        return "default", True, issues
    return name, True, issues


def _mounts(spec: FileSpec) -> Iterator[tuple[Loc, Mount]]:
    model = spec.model
    for section, owners in (
        ("volume_containers", model.volume_containers),
        ("containers", model.containers),
    ):
        for name, owner in owners.items():
            for index, mount in enumerate(owner.mounts):
                yield (section, name, "mounts", index), mount


def _missing(kind: str, name: str, known: Suggester, excluding: str | None = None) -> str:
    close = known.closest(name, excluding=excluding)
    hint = f"; did you mean '{close}'?" if close else ""
    return f"{kind} '{name}' is not defined{hint}"


def _references(
    spec: FileSpec, known: dict[str, set[str]], volumes: Suggester, targets: Suggester
) -> Iterator[SpecIssue]:
    model = spec.model
    for loc, mount in _mounts(spec):
        if mount.type == "volume" and mount.source and mount.source not in known["volumes"]:
            yield spec.issue((*loc, "source"), _missing("volume", mount.source, volumes))
    for section, owners in (
        ("volume_containers", model.volume_containers),
        ("containers", model.containers),
    ):
        for name, owner in owners.items():
            image = owner.image
            if image and image not in known["images"] and not is_image_reference(image):
                yield spec.issue(
                    (section, name, "image"),
                    f"'{image}' is neither a key of images nor a valid image reference",
                )
    for name, container in model.containers.items():
        for index, source in enumerate(container.volumes_from):
            if source.name not in targets:
                yield spec.issue(
                    ("containers", name, "volumes_from", index),
                    _missing("container", source.name, targets, excluding=name),
                )
    containers = Suggester(known["containers"])
    for name, container in model.containers.items():
        for other in container.depends_on:
            if other not in known["containers"] or other == name:
                yield spec.issue(
                    ("containers", name, "depends_on", other),
                    "a container cannot depend on itself"
                    if other == name
                    else _missing("container", other, containers, excluding=name),
                )
    networks = Suggester(known["networks"])
    for name, container in model.containers.items():
        for network in container.networks:
            if network not in known["networks"]:
                yield spec.issue(
                    ("containers", name, "networks", network),
                    _missing("network", network, networks),
                )
    for name, backup in model.backups.items():
        for index, volume in enumerate(backup.volumes):
            if volume not in known["volumes"]:
                yield spec.issue(
                    ("backups", name, "volumes", index), _missing("volume", volume, volumes)
                )
    for name, volume_spec in model.volumes.items():
        if volume_spec.external:
            changed = [
                key
                for key in ("driver", "driver_opts", "labels", "reclaim", "on_change")
                if key in volume_spec.model_fields_set
            ]
            if changed:
                yield spec.issue(
                    ("volumes", name, changed[0]),
                    f"'{changed[0]}' has no effect on an external volume, which dsr never "
                    "creates, changes or removes",
                )


def missing_binds(files: list[FileSpec], policy: Policy) -> Iterator[SpecIssue]:
    """Bind sources that do not exist here (and that the policy allows): host facts."""
    for spec in files:
        yield from _missing_binds(spec, policy)


def _missing_binds(spec: FileSpec, policy: Policy) -> Iterator[SpecIssue]:
    for loc, mount in _mounts(spec):
        source = mount.source
        if mount.type != "bind" or not source or mount.create or os.path.lexists(source):
            continue
        if not policy.check(source):
            yield spec.issue(
                (*loc, "source"),
                f"{source} does not exist here; not checked (plan, apply and run check it "
                "on the host)",
            )


def _host_paths(spec: FileSpec, policy: Policy, host_facts: bool = True) -> Iterator[SpecIssue]:
    """Every host path the spec makes Docker or dsr touch, through the one policy check."""
    for loc, mount in _mounts(spec):
        if mount.type != "bind" or not mount.source:
            continue
        source = mount.source
        where = (*loc, "source")
        refused = policy.check(source)
        if refused:
            yield spec.issue(where, refused)
        elif host_facts and not os.path.lexists(source) and not mount.create:
            yield spec.issue(
                where,
                f"{source} does not exist (a bind source must exist; for a directory, "
                "'create: true' lets dsr create it)",
            )
    for name, volume in spec.model.volumes.items():
        if volume.external:
            continue  # dsr never creates it: its options are not dsr's to pass on
        for option, refused in dict.fromkeys(
            policy.volume_problems(volume.driver, volume.driver_opts)
        ):
            yield spec.issue(("volumes", name, "driver_opts", option), refused)
    for name, image in spec.model.images.items():
        where = ("images", name, "context")
        refused = policy.check(image.context)
        if refused:
            yield spec.issue(where, refused)
        elif not os.path.isdir(image.context):
            what = "is not a directory" if os.path.exists(image.context) else "does not exist"
            yield spec.issue(where, f"{image.context} {what}")
        else:
            yield from (spec.issue(where, p) for p in context_problems(image.context))
    for name, backup in spec.model.backups.items():
        for index, path in enumerate(backup.paths):
            refused = policy.check(path)
            if refused:
                yield spec.issue(("backups", name, "paths", index), refused)
        listed = isinstance(backup.destination, list)
        for index, folder in enumerate(backup.destinations):
            if folder not in backup.folders:
                continue  # s3://: no host path
            refused = policy.check(folder, role="destination")
            if refused:
                where = ("backups", name, "destination", *((index,) if listed else ()))
                yield spec.issue(where, refused)


def _cycles(files: list[FileSpec], desired: Desired) -> Iterator[SpecIssue]:
    """Each start-order cycle once (``volumes_from`` and ``depends_on`` both order the
    containers), found by one depth-first pass (linear time)."""
    edges = {
        name: [(v.name, "volumes_from") for v in c.volumes_from]
        + [(d, "depends_on") for d in sorted(c.depends_on)]
        for name, c in desired.containers.items()
    }
    where: dict[str, FileSpec] = {}
    for spec in files:
        for name in spec.model.containers:
            where.setdefault(name, spec)
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        if not edges[start]:  # most containers: nothing to walk
            done.add(start)
            continue
        stack: list[tuple[str, Iterator[tuple[str, str]]]] = [(start, iter(edges[start]))]
        on_path, fields = [start], list[str]()  # fields[i]: the key from on_path[i] on
        on_path_set = {start}  # membership in O(1): a 1,500-long chain stays linear
        while stack:
            node, targets = stack[-1]
            target, key = next(targets, (None, ""))
            if target is None:
                stack.pop()
                on_path_set.discard(on_path.pop())
                del fields[len(on_path) - 1 :]
                done.add(node)
            elif target in on_path_set:
                at = on_path.index(target)
                cycle, keys = [*on_path[at:], target], [*fields[at:], key]
                yield _cycle_issue(where[cycle[0]], cycle, keys)
            elif target not in done and target in edges:
                stack.append((target, iter(edges[target])))
                on_path.append(target)
                on_path_set.add(target)
                fields.append(key)


def _cycle_issue(spec: FileSpec, cycle: list[str], keys: list[str]) -> SpecIssue:
    """A cycle, at the first container's key that starts it."""
    if keys[0] == "depends_on":
        loc: Loc = ("containers", cycle[0], "depends_on", cycle[1])
    else:
        loc = ("containers", cycle[0], "volumes_from")
    named = " and ".join(sorted(set(keys)))
    verb = "forms" if len(set(keys)) == 1 else "form"
    message = f"{named} {verb} a cycle: " + " -> ".join(cycle)
    if "depends_on" in keys:
        message += " (each would have to start before the other)"
    return spec.issue(loc, message)
