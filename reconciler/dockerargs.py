"""From a plan's parameters to the arguments docker-py takes: pure functions, no calls."""

from __future__ import annotations

from typing import Any

import docker.types

# The planner's port parser, so that apply creates exactly what drift later compares.
from reconciler.plan.drift import port_range, split_port
from reconciler.plan.model import MountParams


def mount(mount: MountParams) -> docker.types.Mount:
    if mount.type == "tmpfs":
        return docker.types.Mount(
            target=mount.target, source=None, type="tmpfs", tmpfs_size=mount.tmpfs_size
        )
    if mount.type == "bind":
        return docker.types.Mount(
            target=mount.target,
            source=mount.source,
            type="bind",
            read_only=mount.read_only,
            propagation=mount.propagation or None,
        )
    return docker.types.Mount(
        target=mount.target,
        source=mount.source or None,
        type="volume",
        read_only=mount.read_only,
        no_copy=mount.nocopy,
        labels=dict(mount.labels) or None,
    )


def bind(mount: MountParams) -> str:
    options = ["ro" if mount.read_only else "rw", mount.selinux]
    if mount.propagation:
        options.append(mount.propagation)
    if mount.nocopy:
        options.append("nocopy")
    return f"{mount.source}:{mount.target}:{','.join(options)}"


def restart(policy: str) -> dict[str, Any] | None:
    if policy == "no":
        return None
    name, _, count = policy.partition(":")
    out: dict[str, Any] = {"Name": name}
    if count:
        out["MaximumRetryCount"] = int(count)
    return out


def ports(ports: tuple[str, ...]) -> tuple[list[tuple[int, str]], dict[int | str, list[Any]]]:
    """``[IP:][HOST:]CONTAINER[/PROTO]`` into create's ``ports`` and ``port_bindings``."""
    exposed: list[tuple[int, str]] = []
    bindings: dict[int | str, list[Any]] = {}
    for entry in ports:
        ip, host, container, proto = split_port(entry)
        for offset, port in enumerate(port_range(container)):
            exposed.append((port, proto))
            key = f"{port}/{proto}"
            host_ports = port_range(host) if host else []
            host_port = host_ports[offset] if host_ports else None
            bindings.setdefault(key, []).append((ip, host_port) if ip else host_port)
    return exposed, bindings


def split_reference(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"
