"""One host's share of a spec set: the resources whose ``hosts`` select it.

``placements`` and ``references`` are read from the files when the spec loads; ``share``
narrows a ``Desired`` to one ``Host`` and checks that every reference still resolves there
(a container on host A mounting a volume placed only on host B is a spec error for A,
reported at the line that names the volume). A resource without ``hosts``, in a file without
a ``hosts`` default, is on every host, so a spec with no ``hosts`` anywhere is its own share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.spec.backups import Backup
from reconciler.spec.desired import Desired, FileSpec, Reference
from reconciler.spec.hosts import Host, describe, matches
from reconciler.spec.yamlload import Loc, format_loc

# Section -> the resource prefix of its entries (networks once the spec has them).
SECTIONS = {
    "volumes": "volume",
    "images": "image",
    "volume_containers": "volume_container",
    "containers": "container",
    "networks": "network",
    "backups": "backup",
}


def _sections(model: object) -> Iterator[tuple[str, str, Mapping[str, object]]]:
    for section, kind in SECTIONS.items():
        entries = getattr(model, section, None)
        if isinstance(entries, Mapping):
            yield section, kind, entries


def placements(files: Iterable[FileSpec]) -> dict[str, tuple[str, ...]]:
    """Each placed resource's selectors: its own ``hosts`` (``null``: every host), else
    its file's."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in files:
        default = spec.model.hosts
        for _, kind, entries in _sections(spec.model):
            for key, value in entries.items():
                # `hosts: null` written on a resource puts it on every host, whatever
                # its file's default says.
                written = "hosts" in getattr(value, "model_fields_set", ())
                chosen = getattr(value, "hosts", None) if written else default
                if chosen is not None:
                    out[f"{kind}:{key}"] = tuple(chosen)
    return out


def references(files: Iterable[FileSpec]) -> tuple[Reference, ...]:
    """Every reference from one resource to another, with where it is written."""
    files = list(files)
    images = {k for f in files for k in f.model.images}
    containers = {k for f in files for k in f.model.containers}
    found: list[Reference] = []

    def ref(spec: FileSpec, source: str, target: str, loc: Loc) -> None:
        found.append(Reference(source, target, spec.file, spec.line_of(loc), format_loc(loc)))

    for spec in files:
        model = spec.model
        for section, kind, owners in (
            ("volume_containers", "volume_container", model.volume_containers),
            ("containers", "container", model.containers),
        ):
            for name, owner in owners.items():
                source = f"{kind}:{name}"
                if owner.image and owner.image in images:
                    ref(spec, source, f"image:{owner.image}", (section, name, "image"))
                for index, mount in enumerate(owner.mounts):
                    if mount.type == "volume" and mount.source:
                        loc: Loc = (section, name, "mounts", index, "source")
                        ref(spec, source, f"volume:{mount.source}", loc)
        for name, container in model.containers.items():
            for index, item in enumerate(container.volumes_from):
                target = "container" if item.name in containers else "volume_container"
                loc = ("containers", name, "volumes_from", index)
                ref(spec, f"container:{name}", f"{target}:{item.name}", loc)
            for index, network in enumerate(_networks(container)):
                loc = ("containers", name, "networks", index)
                ref(spec, f"container:{name}", f"network:{network}", loc)
        for name, backup in model.backups.items():
            # A rule's volumes need not share its hosts: each host backs up those it has.
            for when in ("before", "after"):
                for index, hook in enumerate(getattr(backup.hooks, when)):
                    loc = ("backups", name, "hooks", when, index, "container")
                    ref(spec, f"backup:{name}", f"container:{hook.container}", loc)
    return tuple(found)


def _networks(container: object) -> list[str]:
    """The networks a container joins, when the spec has networks (a list or a mapping)."""
    networks = getattr(container, "networks", None)
    if isinstance(networks, Mapping):
        return [str(n) for n in networks]
    if isinstance(networks, list | tuple):
        return [str(n) for n in networks]
    return []


def placed(desired: Desired, resource: str, host: Host) -> bool:
    """``resource`` belongs on ``host``."""
    return matches(desired.placements.get(resource), host)


def share(desired: Desired, host: Host) -> Desired:
    """``desired`` narrowed to what belongs on ``host``; raises ``SpecError`` when a
    resource there names one that is not."""
    if desired.host is not None:  # already narrowed (the daemon hands its share back)
        if desired.host != host.name:
            raise ValueError(f"a share of {desired.host} cannot be narrowed to {host.name}")
        return desired
    issues = problems(desired, host)
    if issues:
        raise SpecError(issues)
    kept: dict[str, dict[str, Any]] = {}
    elsewhere: dict[str, tuple[str, ...]] = {}
    for section, kind, entries in _sections(desired):
        mine: dict[str, Any] = {}
        for key, value in entries.items():
            resource = f"{kind}:{key}"
            if placed(desired, resource, host):
                mine[key] = value
            else:
                elsewhere[resource] = desired.placements[resource]
        kept[section] = mine
    kept["backups"] = _rules_here(kept["backups"], set(kept["volumes"]))
    return dataclasses.replace(
        desired,
        host=host.name,
        elsewhere=elsewhere,
        handoff_to=handoff_places(desired),
        **kept,  # type: ignore[arg-type]
    )


def _rules_here(rules: Mapping[str, Backup], volumes: set[str]) -> dict[str, Backup]:
    """The backup rules of a share, each with only the volumes on this host; a rule left
    with nothing to back up here is not this host's."""
    out = {}
    for name, rule in rules.items():
        here = [v for v in rule.volumes if v in volumes]
        if here == rule.volumes:
            out[name] = rule
        elif here or rule.paths:
            out[name] = rule.model_copy(update={"volumes": here})
    return out


def handoff_places(desired: Desired) -> dict[str, str]:
    """Each placed volume's handoff folder: the first folder destination of the first
    backup rule (by name, in the whole spec) that lists it. Volumes without one cannot
    move between hosts (a move of one is blocked on its old host)."""
    out: dict[str, str] = {}
    for _, rule in sorted(desired.backups.items()):
        folders = rule.folders
        if not folders:
            continue
        for volume in rule.volumes:
            if f"volume:{volume}" in desired.placements:
                out.setdefault(volume, folders[0])
    return out


def problems(desired: Desired, host: Host) -> list[SpecIssue]:
    """The references of ``host``'s share that lead to resources placed elsewhere."""
    if not desired.placements:
        return []
    defined = {f"{kind}:{key}" for _, kind, entries in _sections(desired) for key in entries}
    issues = []
    for ref in desired.references:
        if ref.target not in defined or not placed(desired, ref.source, host):
            continue
        if placed(desired, ref.target, host):
            continue
        kind, _, name = ref.target.partition(":")
        where = describe(desired.placements.get(ref.target))
        issues.append(
            SpecIssue(
                ref.file,
                ref.line,
                ref.path,
                f"{kind.replace('_', ' ')} '{name}' is placed on {where}, not on host "
                f"{host.name}, where {ref.source.replace(':', ' ', 1)} is",
            )
        )
    return issues


def shares(desired: Desired, hosts: Iterable[Host]) -> dict[str, Desired]:
    """Each host's share; ``SpecError`` lists the problems of every host at once."""
    out: dict[str, Desired] = {}
    issues: list[SpecIssue] = []
    for host in hosts:
        try:
            out[host.name] = share(desired, host)
        except SpecError as err:
            issues.extend(err.issues)
    if issues:
        raise SpecError(list(dict.fromkeys(issues)))
    return out
