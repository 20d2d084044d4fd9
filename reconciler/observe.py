"""Read the engine into one ``Observed`` snapshot: three list calls, whatever the spec's size.

The only module that reads Docker state. Containers are listed whatever their owner,
because a name taken by someone else's container must show up as a blocked change. The
three calls go out together: the engine answers each in its own time (listing 200
containers takes it ~35 ms, 1,000 volumes ~20 ms), and a daemon's pass waits only for the
slowest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker.errors

from reconciler.engine import Engine, describe, timed_out
from reconciler.errors import EngineError
from reconciler.snapshot import (
    LiveContainer,
    LiveImage,
    LiveMount,
    LiveNetwork,
    LiveVolume,
    Observed,
)


def observe(engine: Engine, *, networks: bool = False) -> Observed:
    """Containers, volumes and images of the engine, as they are now; with ``networks``,
    its networks too (a fourth list call, sent with the others)."""
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
    return Observed(
        containers={c.name: c for c in map(_container, containers)},
        volumes={v.name: v for v in map(_volume, volumes)},
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


def _volume(raw: dict[str, Any]) -> LiveVolume:
    return LiveVolume(
        name=raw["Name"],
        driver=raw.get("Driver", "local"),
        options=raw.get("Options") or {},
        labels=raw.get("Labels") or {},
        created_at=raw.get("CreatedAt", ""),
    )


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
