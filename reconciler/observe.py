"""Read the engine into one ``Observed`` snapshot: three list calls, whatever the spec's size.

The only module that reads Docker state. Containers are listed whatever their owner,
because a name taken by someone else's container must show up as a blocked change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import docker.errors

from reconciler.engine import Engine, describe, timed_out
from reconciler.errors import EngineError
from reconciler.snapshot import LiveContainer, LiveImage, LiveMount, LiveVolume, Observed


def observe(engine: Engine) -> Observed:
    """Containers, volumes and images of the engine, as they are now."""
    try:
        containers = engine.api.containers(all=True)
        volumes = engine.api.volumes().get("Volumes") or []
        images = engine.api.images()
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
    )


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
    )


def _volume(raw: dict[str, Any]) -> LiveVolume:
    return LiveVolume(
        name=raw["Name"],
        driver=raw.get("Driver", "local"),
        options=raw.get("Options") or {},
        labels=raw.get("Labels") or {},
        created_at=raw.get("CreatedAt", ""),
    )
