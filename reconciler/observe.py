"""Read the engine into one ``Observed`` snapshot: three list calls, whatever the spec's
size, and one inspect per container of the project planned (restart policies, commands,
environments and port bindings are not in the list calls, and drift is compared on them).

The only module that reads Docker state. Containers are listed whatever their owner,
because a name taken by someone else's container must show up as a blocked change. The
three calls go out together: the engine answers each in its own time (listing 200
containers takes it ~35 ms, 1,000 volumes ~20 ms), and a daemon's pass waits only for the
slowest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker.errors

from reconciler.engine import Engine, describe, timed_out
from reconciler.errors import EngineError
from reconciler.labels import managed
from reconciler.snapshot import (
    LiveConfig,
    LiveContainer,
    LiveImage,
    LiveMount,
    LiveNetwork,
    LiveVolume,
    Observed,
)


def observe(engine: Engine, project: str | None = None, *, networks: bool = False) -> Observed:
    """Containers, volumes and images of the engine, as they are now; the containers dsr
    made for ``project`` also with the settings only ``docker inspect`` reports; with
    ``networks``, its networks too (a fourth list call, sent with the others)."""
    calls: list[Callable[[], Any]] = [
        lambda: engine.api.containers(all=True),
        lambda: engine.api.volumes().get("Volumes") or [],
        lambda: engine.api.images(),
    ]
    if networks:
        calls.append(lambda: engine.api.networks())
    try:
        containers, volumes, images, *listed = _together(*calls)
    except (docker.errors.DockerException, OSError) as err:
        if timed_out(err):
            raise describe(err, engine.url, engine.timeout) from err
        raise EngineError(f"cannot read the engine's state at {engine.url}: {err}") from err
    live_images: dict[str, LiveImage] = {}
    for raw in images:
        image = LiveImage(
            id=raw["Id"],
            tags=tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
            labels=raw.get("Labels") or {},
            created=int(raw.get("Created") or 0),
        )
        live_images[image.id] = image
        for tag in image.tags:
            live_images[tag] = image
    live = [_container(raw) for raw in containers]
    if project is not None:
        live = _with_configs(engine, live, project)
    return Observed(
        containers={c.name: c for c in live},
        volumes={v.name: v for v in (_volume(raw, on_this_host(engine)) for raw in volumes)},
        images=live_images,
        networks={n.name: n for n in map(_network, listed[0] if listed else [])},
    )


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Each call's value, the first in this thread and the others in their own; the first
    error (in call order) is raised once all have finished."""
    values: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            values[index] = calls[index]()
        except BaseException as err:  # handed to the caller below
            errors[index] = err

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(calls))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return values


def measure_writable_layers(engine: Engine, ids: Iterable[str]) -> dict[str, int]:
    """Bytes in each container's writable layer, in one call (sizes are slow to compute)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    try:
        raw = engine.api.containers(all=True, size=True, filters={"id": wanted})
    except (docker.errors.DockerException, OSError) as err:
        if timed_out(err):
            raise describe(err, engine.url, engine.timeout) from err
        raise EngineError(f"cannot measure container sizes: {err}") from err
    return {c["Id"]: int(c.get("SizeRw") or 0) for c in raw}


def _container(raw: dict[str, Any]) -> LiveContainer:
    names = raw.get("Names") or [raw["Id"]]
    return LiveContainer(
        id=raw["Id"],
        name=names[0].lstrip("/"),
        image=raw.get("Image", ""),
        image_id=raw.get("ImageID", ""),
        state=raw.get("State", ""),
        labels=raw.get("Labels") or {},
        mounts=tuple(
            LiveMount(
                type=m.get("Type", ""),
                target=m.get("Destination", ""),
                source=m.get("Source", ""),
                name=m.get("Name", ""),
                read_only=not m.get("RW", True),
            )
            for m in raw.get("Mounts") or ()
        ),
        ports=tuple(
            sorted(
                {
                    f"{p['PublicPort']}/{p.get('Type') or 'tcp'}"
                    for p in raw.get("Ports") or ()
                    if p.get("PublicPort")
                }
            )
        ),
        networks=tuple(sorted((raw.get("NetworkSettings") or {}).get("Networks") or {})),
    )


def _network(raw: dict[str, Any]) -> LiveNetwork:
    return LiveNetwork(
        id=raw["Id"],
        name=raw["Name"],
        driver=raw.get("Driver") or "",
        internal=bool(raw.get("Internal")),
        labels=raw.get("Labels") or {},
    )


INSPECTORS = 4  # inspect calls at once: each is a short request the engine answers alone


def _with_configs(
    engine: Engine, containers: list[LiveContainer], project: str
) -> list[LiveContainer]:
    """``containers`` with ``config`` read for those labelled as ``project``'s: one
    inspect each, several at once, but for those the engine connection still knows (the
    daemon's: it forgets them on every container event). One gone meanwhile keeps
    ``config`` None."""
    mine = [c for c in containers if c.managed and c.project == project]
    if not mine:
        return containers
    kept: dict[str, LiveConfig] = engine.inspected if engine.keep_inspected else {}
    epoch = engine.inspected_epoch
    known = {c.id: v for c in mine if (v := kept.get(c.id)) is not None}
    unknown = [c for c in mine if c.id not in known]

    configs: dict[str, LiveConfig | None] = dict(known)
    try:
        if unknown:
            found = engine.inspect_containers([c.id for c in unknown], INSPECTORS)
            configs.update(
                (c.id, live_config(raw) if raw is not None else None)
                for c, raw in zip(unknown, found, strict=True)
            )
    except (docker.errors.DockerException, OSError) as err:
        if timed_out(err):
            raise describe(err, engine.url, engine.timeout) from err
        raise EngineError(f"cannot inspect containers: {err}") from err
    if engine.keep_inspected and engine.inspected_epoch == epoch:
        # Kept only if no container event came meanwhile (it may be about one read here).
        engine.inspected = {k: v for k, v in configs.items() if v is not None}
    return [
        dataclasses.replace(c, config=configs[c.id]) if configs.get(c.id) else c for c in containers
    ]


def live_config(raw: dict[str, Any]) -> LiveConfig:
    """The settings of one ``docker inspect`` answer a spec can set."""
    config = raw.get("Config") or {}
    host = raw.get("HostConfig") or {}
    policy = host.get("RestartPolicy") or {}
    restart = policy.get("Name") or "no"
    if restart == "on-failure" and policy.get("MaximumRetryCount"):
        restart = f"on-failure:{policy['MaximumRetryCount']}"
    bindings = frozenset(
        f"{port}={b.get('HostIp') or ''}:{b.get('HostPort') or ''}"
        for port, bound in (host.get("PortBindings") or {}).items()
        for b in bound or ()
    )
    timeout = config.get("StopTimeout")
    return LiveConfig(
        command=tuple(config["Cmd"]) if config.get("Cmd") is not None else None,
        entrypoint=tuple(config["Entrypoint"]) if config.get("Entrypoint") is not None else None,
        env=tuple(config.get("Env") or ()),
        working_dir=config.get("WorkingDir") or "",
        user=config.get("User") or "",
        stop_signal=config.get("StopSignal") or "",
        stop_timeout=timeout if isinstance(timeout, int) else None,
        init=bool(host.get("Init")),
        restart=restart,
        bindings=bindings,
    )


def compare_packed(
    engine: Engine, volumes: Mapping[str, str], manifests: Mapping[str, Mapping[str, str]]
) -> dict[str, bool]:
    """For each volume (name -> the tag of the build that filled it): whether it holds
    exactly the files that build's manifest lists (content and links; modes aside). False
    when it differs, or cannot be read here (a remote engine), or the manifest is unknown."""
    out = {}
    for name, tag in sorted(volumes.items()):
        manifest = manifests.get(tag)
        try:
            raw = engine.api.inspect_volume(name)
        except docker.errors.NotFound:
            continue
        except (docker.errors.DockerException, OSError) as err:
            raise EngineError(f"cannot inspect volume {name}: {err}") from err
        root = str(raw.get("Mountpoint") or "")
        local = on_this_host(engine) and os.path.isdir(root)
        out[name] = bool(manifest) and local and holds_build(root, manifest or {})
    return out


def holds_build(root: str, manifest: Mapping[str, str]) -> bool:
    """``root`` holds exactly ``manifest``'s entries: the same paths first (cheap), then
    each link's target and each file's content, stopping at the first difference."""
    wanted = {path: entry.split(":", 2) for path, entry in manifest.items()}
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for entry in (*dirs, *files):
            path = os.path.join(folder, entry)
            found[os.path.relpath(path, root)] = path
    if set(found) != set(wanted):
        return False
    for rel, parts in wanted.items():
        path = found[rel]
        kind = parts[0]
        if kind == "link":
            if not os.path.islink(path) or os.readlink(path) != entry_rest(parts):
                return False
        elif kind == "dir":
            if os.path.islink(path) or not os.path.isdir(path):
                return False
        elif os.path.islink(path) or not os.path.isfile(path) or file_sha256(path) != parts[-1]:
            return False
    return True


def entry_rest(parts: list[str]) -> str:
    return ":".join(parts[1:])


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _volume(raw: dict[str, Any], local: bool) -> LiveVolume:
    labels = raw.get("Labels") or {}
    return LiveVolume(
        name=raw["Name"],
        driver=raw.get("Driver", "local"),
        options=raw.get("Options") or {},
        labels=labels,
        created_at=raw.get("CreatedAt", ""),
        # Only a volume dsr did not make is ever told by it (an adopted one).
        origin="" if managed(labels) else volume_origin(raw, local=local),
    )


def volume_identity(raw: Mapping[str, Any], *, local: bool) -> str:
    """``LiveVolume.identity`` of a volume from the engine's inspect answer."""
    return volume_origin(raw, local=local) or str(raw.get("CreatedAt") or "")


def on_this_host(engine: Engine) -> bool:
    """The engine runs here (a unix socket): the paths it reports are this host's."""
    return engine.url.startswith("unix://")


def volume_origin(raw: Mapping[str, Any], *, local: bool) -> str:
    """The identity of a volume dsr cannot label (an adopted one), from the engine's list or
    inspect answer, when the engine runs on this host (``local``) and the volume is the
    local driver's: the inode and mtime of the volume's own folder, the parent of its
    Mountpoint. Docker makes that folder and ``_data`` in it once, so no write into the
    volume changes either, and a volume made again under the name has another folder.
    Docker's CreatedAt is no such identity: for the local driver it is ``_data``'s mtime,
    so a file made at the volume's top changes it. "" when this host cannot see it."""
    mountpoint = str(raw.get("Mountpoint") or "")
    if not local or str(raw.get("Driver") or "local") != "local":
        return ""
    if not mountpoint.startswith("/") or os.path.basename(mountpoint) != "_data":
        return ""
    try:
        info = os.stat(os.path.dirname(mountpoint), follow_symlinks=False)
    except OSError:
        return ""
    if not stat.S_ISDIR(info.st_mode):
        return ""
    return f"folder:{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}"


@dataclass(frozen=True)
class ImportSource:
    """What ``dsr import engine`` reads: containers, volumes, networks and images as the
    Engine API inspects them (raw JSON; the importer turns them into a spec)."""

    containers: list[dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    networks: dict[str, dict[str, Any]]
    images: dict[str, dict[str, Any]]  # by image id


def inspect_for_import(
    engine: Engine, names: list[str], compose_project: str | None = None
) -> ImportSource:
    """The containers named (every one when none is, or those of ``compose_project``),
    the containers they take volumes from, and every volume, network and image they use.
    One list call per kind, then one inspect per container and image, four at a time."""
    filters = (
        {"label": [f"com.docker.compose.project={compose_project}"]} if compose_project else {}
    )
    try:
        listed, volumes, networks = _together(
            lambda: engine.api.containers(all=True, filters=filters),
            lambda: engine.api.volumes().get("Volumes") or [],
            lambda: engine.api.networks(),
        )
        wanted = [
            c for c in listed if not names or (c.get("Names") or [""])[0].lstrip("/") in names
        ]
        missing = sorted(set(names) - {(c.get("Names") or [""])[0].lstrip("/") for c in wanted})
        if missing:
            raise EngineError(f"no container named {', '.join(missing)} on {engine.url}")
        with ThreadPoolExecutor(max_workers=4) as pool:
            containers = list(pool.map(lambda c: engine.api.inspect_container(c["Id"]), wanted))
            known = {c["Id"] for c in containers}
            sources = {
                v.split(":", 1)[0]
                for c in containers
                for v in (c.get("HostConfig") or {}).get("VolumesFrom") or ()
            }
            extra = [s for s in sorted(sources) if s not in known]
            containers += [
                c for c in pool.map(engine.api.inspect_container, extra) if c["Id"] not in known
            ]
            image_ids = sorted({c.get("Image", "") for c in containers} - {""})
            images = dict(zip(image_ids, pool.map(_inspect_image(engine), image_ids), strict=True))
    except (docker.errors.DockerException, OSError) as err:
        if timed_out(err):
            raise describe(err, engine.url, engine.timeout) from err
        raise EngineError(f"cannot read the engine's objects at {engine.url}: {err}") from err
    return ImportSource(
        containers=containers,
        volumes={v["Name"]: v for v in volumes},
        networks={n["Name"]: n for n in networks},
        images=images,
    )


def _inspect_image(engine: Engine) -> Callable[[str], dict[str, Any]]:
    def run(image_id: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = engine.api.inspect_image(image_id)  # type: ignore[no-untyped-call]
        except docker.errors.NotFound:
            return {}
        return found

    return run
