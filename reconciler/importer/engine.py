"""Containers on the engine as a dsr spec, with the volumes, binds, networks and volume
containers they use, each with ``adopt: true``: applying it where they run plans only
adoptions, and never a data-loss change.

What a container got from its image (environment, command, labels, working directory,
user) is left out, so the spec says what was asked of ``docker run``; the mounts it took
through ``--volumes-from`` stay with their source. A container that is not running is
written ``state: created``, so that adopting it starts nothing.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.importer.model import Imported, Note
from reconciler.labels import managed
from reconciler.observe import ImportSource
from reconciler.spec.policy import Policy

ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")
NEVER_STARTED = "0001-01-01T00:00:00Z"
_COMPOSE = "com.docker.compose."
_DROPPED = (_COMPOSE, "dsr.")  # compose's own bookkeeping, and dsr's reserved prefix
_DEFAULT_NETWORKS = {"bridge", "default", ""}


def _esc(value: str) -> str:
    return value.replace("$", "$$")


def import_engine(
    found: ImportSource, project: str, source: str = "the engine", policy: Policy | None = None
) -> Imported:
    """The spec of ``found`` (see the module docstring); bind sources ``policy`` refuses
    are noted and left out."""
    out = Imported(project=project, source=source)
    out.policy = policy
    by_id = {c["Id"]: c for c in found.containers}
    names = {c["Id"]: c["Name"].lstrip("/") for c in found.containers}
    for c in found.containers:
        names.setdefault(c["Id"][:12], c["Name"].lstrip("/"))
    used_as_source = {
        _source_name(v, names)
        for c in found.containers
        for v in (c.get("HostConfig") or {}).get("VolumesFrom") or ()
    }
    for raw in sorted(found.containers, key=lambda c: str(c["Name"])):
        name = raw["Name"].lstrip("/")
        labels = raw.get("Config", {}).get("Labels") or {}
        if managed(labels):
            out.notes.append(Note("", 0, f"containers.{name}", "it is already a dsr object"))
            continue
        state = raw.get("State") or {}
        volume_container = (
            name in used_as_source
            and not state.get("Running")
            and state.get("StartedAt") in (None, "", NEVER_STARTED)
        )
        convert = _volume_container if volume_container else _container
        section = out.volume_containers if volume_container else out.containers
        section[name] = convert(out, found, raw, names, by_id)
    return out


def _source_name(value: str, names: dict[str, str]) -> str:
    ref = value.split(":", 1)[0]
    return names.get(ref, names.get(ref[:12], ref))


def _image_config(found: ImportSource, raw: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = (found.images.get(raw.get("Image", "")) or {}).get("Config") or {}
    return config


def _mounts(out: Imported, found: ImportSource, raw: dict[str, Any], inherited: set[str]) -> list[Any]:  # fmt: skip
    """The container's own mounts (not those of its ``--volumes-from`` sources)."""
    mounts: list[Any] = []
    for m in raw.get("Mounts") or ():
        target = m.get("Destination", "")
        if target in inherited:
            continue
        read_only = not m.get("RW", True)
        if m.get("Type") == "volume":
            volume = m.get("Name", "")
            if ANONYMOUS.match(volume):
                mounts.append({"type": "volume", "target": target})
                continue
            mounts.append({"type": "volume", "source": volume, "target": target}
                          | ({"read_only": True} if read_only else {}))  # fmt: skip
            _volume(out, found, volume)
        elif m.get("Type") == "bind":
            why = out.policy.check(m.get("Source", "")) if out.policy is not None else None
            if why:
                out.notes.append(Note("", 0, f"mounts[{target}]", f"{why}; the bind is left out"))
                continue
            mount: dict[str, Any] = {"type": "bind", "source": _esc(m.get("Source", "")),
                                     "target": target}  # fmt: skip
            if read_only:
                mount["read_only"] = True
            if m.get("Propagation") not in (None, "", "rprivate"):
                mount["propagation"] = m["Propagation"]
            mounts.append(mount)
    host = raw.get("HostConfig") or {}
    for target in sorted(host.get("Tmpfs") or {}):
        mounts.append({"type": "tmpfs", "target": target})
    return mounts


def _volume(out: Imported, found: ImportSource, name: str) -> None:
    if name in out.volumes:
        return
    live = found.volumes.get(name) or {}
    spec: dict[str, Any] = {"adopt": True}
    if live.get("Driver", "local") != "local":
        spec["driver"] = live["Driver"]
    if live.get("Options"):
        spec["driver_opts"] = {k: _esc(str(v)) for k, v in live["Options"].items()}
    labels = {
        k: _esc(v) for k, v in (live.get("Labels") or {}).items() if not k.startswith(_DROPPED)
    }
    if labels:
        spec["labels"] = labels
    out.volumes[name] = spec


def _inherited(raw: dict[str, Any], names: dict[str, str], by_id: dict[str, Any]) -> tuple[list[str], set[str]]:  # fmt: skip
    """The ``volumes_from`` entries and the mount targets they provide."""
    entries, targets = [], set()
    by_name = {c["Name"].lstrip("/"): c for c in by_id.values()}
    for value in (raw.get("HostConfig") or {}).get("VolumesFrom") or ():
        name = _source_name(value, names)
        mode = value.split(":", 1)[1] if ":" in value else ""
        entries.append(f"{name}:{mode}" if mode in ("ro", "rw") else name)
        source = by_name.get(name) or {}
        targets |= {m.get("Destination", "") for m in source.get("Mounts") or ()}
    return entries, targets


def _volume_container(out: Imported, found: ImportSource, raw: dict[str, Any], names: dict[str, str], by_id: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"image": raw["Config"]["Image"], "adopt": True}
    mounts = _mounts(out, found, raw, set())
    if mounts:
        spec["mounts"] = mounts
    return spec


def _container(out: Imported, found: ImportSource, raw: dict[str, Any], names: dict[str, str], by_id: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    name = raw["Name"].lstrip("/")
    config, host = raw.get("Config") or {}, raw.get("HostConfig") or {}
    image = _image_config(found, raw)
    spec: dict[str, Any] = {"image": config.get("Image") or raw.get("Image"), "adopt": True}
    if config.get("Entrypoint") != image.get("Entrypoint") and config.get("Entrypoint"):
        spec["entrypoint"] = [_esc(a) for a in config["Entrypoint"]]
    if config.get("Cmd") and (config.get("Cmd") != image.get("Cmd") or "entrypoint" in spec):
        spec["command"] = [_esc(a) for a in config["Cmd"]]
    own_env = [e for e in config.get("Env") or () if e not in set(image.get("Env") or ())]
    if own_env:
        spec["env"] = {k: _esc(v) for k, _, v in (e.partition("=") for e in own_env)}
    ports = _ports(host.get("PortBindings") or {})
    if ports:
        spec["ports"] = ports
    restart = host.get("RestartPolicy") or {}
    policy = restart.get("Name") or "no"
    if policy == "on-failure" and restart.get("MaximumRetryCount"):
        policy += f":{restart['MaximumRetryCount']}"
    if policy != "no":
        spec["restart"] = policy
    image_labels = image.get("Labels") or {}
    labels = {k: _esc(v) for k, v in (config.get("Labels") or {}).items()
              if image_labels.get(k) != v and not k.startswith(_DROPPED)}  # fmt: skip
    if labels:
        spec["labels"] = labels
    for key, field in (("WorkingDir", "working_dir"), ("User", "user")):
        if config.get(key) and config.get(key) != image.get(key):
            spec[field] = _esc(config[key])
    if config.get("StopSignal") and config.get("StopSignal") != image.get("StopSignal"):
        spec["stop_signal"] = config["StopSignal"]
    if isinstance(config.get("StopTimeout"), int):
        spec["stop_timeout"] = config["StopTimeout"]
    if host.get("Init"):
        spec["init"] = True
    if not (raw.get("State") or {}).get("Running"):
        spec["state"] = "created"
    sources, inherited = _inherited(raw, names, by_id)
    mounts = _mounts(out, found, raw, inherited)
    if mounts:
        spec["mounts"] = mounts
    if sources:
        spec["volumes_from"] = sources
    networks = _networks(out, found, raw, name)
    if networks:
        spec["networks"] = networks
    _notes(out, raw, name)
    return spec


def _ports(bindings: dict[str, Any]) -> list[str]:
    out = []
    for container_port, hosts in sorted(bindings.items()):
        number, _, proto = container_port.partition("/")
        suffix = f"/{proto}" if proto and proto != "tcp" else ""
        for host in hosts or [{}]:
            ip, published = host.get("HostIp") or "", host.get("HostPort") or ""
            if ip:  # a random host port on one address: IP::PORT, as docker -p writes it
                out.append(f"{ip}:{published}:{number}{suffix}")
            else:
                out.append(f"{published}:{number}{suffix}" if published else number + suffix)
    return out


def _networks(out: Imported, found: ImportSource, raw: dict[str, Any], name: str) -> dict[str, Any]:  # fmt: skip
    attached = ((raw.get("NetworkSettings") or {}).get("Networks")) or {}
    mode = (raw.get("HostConfig") or {}).get("NetworkMode") or ""
    networks: dict[str, Any] = {}
    for network, endpoint in sorted(attached.items()):
        if network in _DEFAULT_NETWORKS or network in ("host", "none"):
            continue
        live = found.networks.get(network) or {}
        if live.get("Driver", "bridge") != "bridge":
            out.notes.append(Note("", 0, f"containers.{name}.networks", f"{network} is a "
                                  f"{live.get('Driver')} network; dsr makes bridge ones only"))  # fmt: skip
            continue
        spec: dict[str, Any] = {"adopt": True}
        if live.get("Internal"):
            spec["internal"] = True
        labels = {k: v for k, v in (live.get("Labels") or {}).items() if not k.startswith(_DROPPED)}
        if labels:
            spec["labels"] = labels
        out.networks.setdefault(network, spec)
        short = raw["Id"][:12]
        aliases = [a for a in (endpoint or {}).get("Aliases") or () if a not in (name, short)]
        networks[network] = {"aliases": aliases} if aliases else {}
    if mode in ("host", "none") or mode.startswith("container:"):
        out.notes.append(Note("", 0, f"containers.{name}.network_mode", f"{mode} is not "
                              "carried over: specs have no host-namespace options"))  # fmt: skip
    return networks


_NOTABLE = {
    "Privileged": "privileged mode (the contract allows none)",
    "CapAdd": "added capabilities (the contract allows none)",
    "CapDrop": "dropped capabilities",
    "Devices": "devices (the contract allows none)",
    "PidMode": "the pid namespace",
    "IpcMode": "the ipc namespace",
    "ExtraHosts": "extra hosts",
    "Dns": "DNS servers",
    "Memory": "a memory limit",
    "NanoCpus": "a CPU limit",
    "ShmSize": "a /dev/shm size",
}


def _notes(out: Imported, raw: dict[str, Any], name: str) -> None:
    host = raw.get("HostConfig") or {}
    for key, what in _NOTABLE.items():
        value = host.get(key)
        if (
            value
            and not (key == "IpcMode" and value in ("private", "shareable"))
            and not (key == "ShmSize" and value == 64 << 20)
        ):
            out.notes.append(Note("", 0, f"containers.{name}", f"{what} is not carried over"))
    if (raw.get("Config") or {}).get("Healthcheck"):
        out.notes.append(Note("", 0, f"containers.{name}", "its health check is not carried over"))
