"""What the engine would hold after applying a spec: for ``dsr diff``, with no engine at all."""

from __future__ import annotations

import dataclasses

from reconciler.plan.drift import port_bindings
from reconciler.plan.model import ContainerParams
from reconciler.plan.params import digest, network_params, volume_params
from reconciler.plan.planner import plan
from reconciler.snapshot import (
    LiveConfig,
    LiveContainer,
    LiveImage,
    LiveMount,
    LiveNetwork,
    LiveVolume,
    Observed,
)
from reconciler.spec.desired import Desired


def simulate(desired: Desired, image_tags: dict[str, str]) -> Observed:
    """The snapshot an engine would give right after ``desired`` was applied to it."""
    volumes = {}
    for name, spec in desired.volumes.items():
        labels = {} if spec.external else dict(volume_params(desired.project, name, spec).labels)
        volumes[name] = LiveVolume(
            name=name, driver=spec.driver, options=dict(spec.driver_opts), labels=labels
        )
    networks = {
        name: LiveNetwork(
            id=digest(["network", name]),
            name=name,
            driver=spec.driver,
            internal=spec.internal,
            labels=dict(network_params(desired.project, name, spec).labels),
        )
        for name, spec in desired.networks.items()
    }
    images: dict[str, LiveImage] = {}
    containers: dict[str, LiveContainer] = {}
    # Creating from an engine with only the volumes gives exactly the parameters the
    # planner would use. The volumes must be there: external ones are never created, and
    # without them every container using one would be blocked, so left out. Images are
    # what the plan builds (with their labels) and what the containers use: the empty
    # image only when a volume container needed it.
    for change in plan(desired, Observed(volumes=volumes, networks=networks), image_tags).changes:
        if change.image is not None:
            tag = change.image.tag
            built = LiveImage(id=_image_id(tag), tags=(tag,), labels=dict(change.image.labels))
            images[tag] = images[built.id] = built
        params = change.container
        if params is None:
            continue
        if params.image not in images:
            used = LiveImage(id=_image_id(params.image), tags=(params.image,))
            images[params.image] = images[used.id] = used
        containers[params.name] = _container(params, containers)
    return Observed(containers=containers, volumes=volumes, images=images, networks=networks)


def _container(params: ContainerParams, earlier: dict[str, LiveContainer]) -> LiveContainer:
    mounts = [
        LiveMount(
            type=m.type,
            target=m.target,
            source=m.source if m.type == "bind" else "",
            name=m.source
            if m.type == "volume" and m.source
            else (digest([params.name, m.target]) if m.type == "volume" else ""),
            read_only=m.read_only,
        )
        for m in params.mounts
        if m.type != "tmpfs"
    ]
    for source in params.volumes_from:
        name, _, mode = source.partition(":")
        origin = earlier.get(name)
        if origin is not None:
            mounts.extend(
                dataclasses.replace(m, read_only=m.read_only if not mode else mode == "ro")
                for m in origin.mounts
                if all(m.target != x.target for x in mounts)
            )
    return LiveContainer(
        id=digest(["container", params.name]),
        name=params.name,
        image=params.image,
        image_id=_image_id(params.image),
        state="running" if params.start else "created",
        labels=dict(params.labels),
        mounts=tuple(mounts),
        size_rw=None,
        networks=tuple(sorted(e.network for e in params.networks)),
        config=LiveConfig(
            command=params.command,
            entrypoint=params.entrypoint,
            env=params.env,
            working_dir=params.working_dir or "",
            user=params.user or "",
            stop_signal=params.stop_signal,
            stop_timeout=params.stop_timeout,
            init=params.init,
            restart=params.restart,
            bindings=port_bindings(params.ports),
        ),
    )


def _image_id(reference: str) -> str:
    return "sha256:" + digest(["image", reference])
