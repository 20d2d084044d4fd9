"""From a spec resource to the exact parameters of its Docker call, its labels and its hash.

The config hash covers the normalized spec (defaults filled in) minus what never forces a
recreate (a container's ``state``); it is stored as ``dsr.config-hash`` and compared on the
next pass. The normalized spec itself is stored as ``dsr.spec`` so a replace can say which
fields changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.plan.model import ContainerParams, MountParams, VolumeParams
from reconciler.spec.models import Container, Mount, Volume, VolumeContainer
from reconciler.state import CONFIG_HASH, KIND, MANAGED, NAME, PROJECT

SPEC = "dsr.spec"
# Volume containers need an image to be created from; one made by `docker import` of an
# empty tarball needs no registry. They are never started, so the command never runs.
EMPTY_IMAGE = "dsr/empty:1"
NEVER_STARTED = ("/dsr-volume-container-is-never-started",)
ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dsr_labels(project: str, kind: str, name: str, config_hash: str) -> dict[str, str]:
    return {MANAGED: "true", PROJECT: project, KIND: kind, NAME: name, CONFIG_HASH: config_hash}


def volume_params(project: str, name: str, spec: Volume) -> VolumeParams:
    config = {
        "driver": spec.driver,
        "driver_opts": dict(spec.driver_opts),
        "labels": dict(spec.labels),
    }
    labels = {**spec.labels, **dsr_labels(project, "volume", name, digest(config))}
    return VolumeParams(
        name=name, driver=spec.driver, driver_opts=dict(spec.driver_opts), labels=labels
    )


def normalized(spec: Container | VolumeContainer, image: str) -> dict[str, Any]:
    """The spec fields that force a recreate, defaults filled in, image resolved."""
    data = spec.model_dump(mode="json", exclude={"state"})
    data["image"] = image
    return data


def container_params(
    project: str,
    kind: str,
    name: str,
    spec: Container | VolumeContainer,
    image: str,
    *,
    pull: bool,
    carry: Mapping[str, str],
    volume_path: str | None = None,
    shown: Container | VolumeContainer | None = None,
) -> ContainerParams:
    """``carry`` maps mount targets to anonymous volumes kept from the container replaced;
    ``volume_path`` is the VOLUME of a data-packed image, given a fresh volume of dsr's;
    ``shown`` is the spec's display copy (``Desired.shown``): the stored ``dsr.spec``
    holds it, so that reasons made from it never print a value from ``${VAR}``, while the
    config hash covers the real values."""
    config = normalized(spec, image)
    labels = {
        **spec.labels,
        **dsr_labels(project, kind, name, digest(config)),
        SPEC: json.dumps(normalized(shown or spec, image), sort_keys=True, separators=(",", ":")),
    }
    anonymous = {MANAGED: "true", PROJECT: project, KIND: "anonymous_volume", NAME: name}
    mounts = tuple(_mount(m, carry, anonymous) for m in spec.mounts)
    if volume_path and all(m.target != volume_path for m in spec.mounts):
        mounts += (MountParams(type="volume", target=volume_path, labels=anonymous),)
    make_dirs = tuple(m.source for m in spec.mounts if m.type == "bind" and m.create and m.source)
    if isinstance(spec, VolumeContainer):
        return ContainerParams(
            name=name,
            image=image,
            labels=labels,
            command=NEVER_STARTED,
            mounts=mounts,
            network_disabled=True,
            start=False,
            pull=pull,
            make_dirs=make_dirs,
        )
    return ContainerParams(
        name=name,
        image=image,
        labels=labels,
        command=tuple(spec.command) if spec.command is not None else None,
        entrypoint=tuple(spec.entrypoint) if spec.entrypoint is not None else None,
        env=tuple(f"{k}={v}" for k, v in sorted(spec.env.items())),
        ports=tuple(spec.ports),
        restart=spec.restart,
        working_dir=spec.working_dir,
        user=spec.user,
        mounts=mounts,
        volumes_from=tuple(
            v.name if v.read_only is None else f"{v.name}:{'ro' if v.read_only else 'rw'}"
            for v in spec.volumes_from
        ),
        start=spec.state == "running",
        pull=pull,
        make_dirs=make_dirs,
    )


def _mount(mount: Mount, carry: Mapping[str, str], anonymous: Mapping[str, str]) -> MountParams:
    source = mount.source or ""
    labels: Mapping[str, str] = {}
    if mount.anonymous:
        source = carry.get(mount.target, "")
        labels = {} if source else anonymous
    return MountParams(
        type=mount.type,
        target=mount.target,
        source=source,
        read_only=mount.read_only,
        propagation=mount.propagation or "",
        selinux=mount.selinux or "",
        nocopy=mount.nocopy,
        tmpfs_size=mount.tmpfs_size,
        labels=labels,
    )
