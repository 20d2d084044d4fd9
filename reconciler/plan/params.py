"""From a spec resource to the exact parameters of its Docker call, its labels and its hash.

The config hash (label ``dsr.config-hash``) is ``v2:`` and the sha256 of an explicit input:
the fields listed in ``HASHED`` for the resource's kind, each left out while it holds its
default, plus the resolved image. Adding an optional field to a model therefore never
changes an existing object's hash, and never restarts a fleet after an upgrade. Objects
made by dsr 0.1.0 carry the version-1 hash (every field, defaults included) and are
recognised by ``matches``. The hash input itself is stored as ``dsr.spec`` so a replace can
say which fields changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from reconciler.files import parse_json
from reconciler.kinds import Kind
from reconciler.labels import BIND_KINDS, SPEC
from reconciler.plan.model import (
    ContainerParams,
    EndpointParams,
    HealthParams,
    MountParams,
    NetworkParams,
    VolumeParams,
)
from reconciler.snapshot import CONFIG_HASH, KIND, MANAGED, NAME, PROJECT, LiveContainer
from reconciler.spec.models import (
    Container,
    Mount,
    Network,
    NetworkAttachment,
    Volume,
    VolumeContainer,
    VolumesFrom,
)
from reconciler.spec.runtime import Healthcheck

# Volume containers need an image to be created from; one made by `docker import` of an
# empty tarball needs no registry. They are never started, so the command never runs.
EMPTY_IMAGE = "dsr/empty:1"
NEVER_STARTED = ("/dsr-volume-container-is-never-started",)
ANONYMOUS = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_STOP = 10  # Docker's stop timeout, in seconds

HASH_VERSION = "v2"
# What forces a recreate, per model. A field is added here on purpose, never by default:
# `state` (a start suffices) and `writable_layer` (a planning rule) are not config.
HASHED: Mapping[type[BaseModel], tuple[str, ...]] = {
    Volume: ("driver", "driver_opts", "labels"),
    Container: (
        "image", "command", "entrypoint", "env", "ports", "restart", "labels", "working_dir",
        "user", "stop_signal", "stop_timeout", "init", "mounts", "volumes_from", "networks",
        "healthcheck", "memory", "cpus", "shm_size",
    ),
    VolumeContainer: ("image", "mounts", "labels"),
    Mount: (
        "type", "source", "target", "read_only", "create", "propagation", "selinux", "nocopy",
        "tmpfs_size",
    ),
    VolumesFrom: ("name", "read_only"),
    Network: ("driver", "internal", "labels"),
    NetworkAttachment: ("aliases",),
    Healthcheck: ("test", "interval", "timeout", "retries", "start_period"),
}  # fmt: skip
# The fields dsr 0.1.0 hashed, defaults included: its objects must not be replaced.
HASHED_V1: Mapping[type[BaseModel], tuple[str, ...]] = {
    Volume: ("driver", "driver_opts", "labels"),
    Container: (
        "image", "command", "entrypoint", "env", "ports", "restart", "labels", "working_dir",
        "user", "mounts", "volumes_from",
    ),
    VolumeContainer: ("image", "mounts", "labels"),
    Mount: HASHED[Mount],
    VolumesFrom: HASHED[VolumesFrom],
}  # fmt: skip


T = TypeVar("T")
# Spec models are frozen, and a daemon plans the same loaded spec pass after pass: what is
# computed from one (its hash input's text, its hash) is kept by the model's identity,
# with the model itself, so that an id is never taken for a later model's.
_MEMO: dict[tuple[str, int, str | None], tuple[BaseModel, Any]] = {}
_MEMO_MOST = 100_000  # entries; a new spec's models push out an old one's all at once


def _memo(what: str, model: BaseModel, image: str | None, compute: Callable[[], T]) -> T:
    key = (what, id(model), image)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is model:
        value: T = hit[1]
        return value
    value = compute()
    if len(_MEMO) >= _MEMO_MOST:
        _MEMO.clear()
    _MEMO[key] = (model, value)
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def canonical(value: Any) -> str:
    """The JSON text hashes and the ``dsr.spec`` label are made of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def hash_input(model: BaseModel, image: str | None = None) -> dict[str, Any]:
    """The explicit, sparse hash input of ``model``: its ``HASHED`` fields not at default."""
    return _sparse(model) | ({} if image is None else {"image": image})


def hash_text(model: BaseModel, image: str | None = None) -> str:
    """``hash_input`` as the canonical JSON text stored in ``dsr.spec``."""
    return _memo("text", model, image, lambda: canonical(hash_input(model, image)))


def config_hash(model: BaseModel, image: str | None = None) -> str:
    return _memo(
        "hash",
        model,
        image,
        lambda: f"{HASH_VERSION}:{hashlib.sha256(hash_text(model, image).encode()).hexdigest()}",
    )


def matches(
    live_hash: str | None, model: BaseModel, image: str | None = None, *, now: str | None = None
) -> bool:
    """``live_hash`` is the hash ``model`` has now (``now``, when already computed), or the
    0.1.0 hash of the same config."""
    if live_hash is None:
        return False
    if live_hash.startswith(f"{HASH_VERSION}:"):
        return live_hash == (now or config_hash(model, image))
    legacy = _legacy_input(model)
    if legacy is None:
        return False
    if image is not None:
        legacy["image"] = image
    return live_hash == digest(legacy)


def expand(model_type: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored hash input (sparse, or 0.1.0's full one) with every default filled in, so
    that two can be compared field by field."""
    out = _defaults(model_type)
    out.update(data)
    for name, item_type in (("mounts", Mount), ("volumes_from", VolumesFrom)):
        if name in out and isinstance(out[name], list):
            out[name] = [expand(item_type, i) if isinstance(i, dict) else i for i in out[name]]
    return out


def _defaults(model_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON form of each hashed field's default (a fresh copy each call)."""
    copy: dict[str, Any] = json.loads(json.dumps(_default_values(model_type)))
    return copy


@functools.cache
def _default_values(model_type: type[BaseModel]) -> dict[str, Any]:
    """Each hashed, optional field's default, asked of pydantic once per model (planning
    compares every field of every object with it: thousands of calls a pass)."""
    out = {}
    for name in HASHED.get(model_type, ()):
        info = model_type.model_fields[name]
        if not info.is_required():
            out[name] = info.get_default(call_default_factory=True)
    return out


_REQUIRED = object()


def _sparse(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    defaults = _default_values(type(model))
    for name in HASHED[type(model)]:
        value = getattr(model, name)
        if defaults.get(name, _REQUIRED) == value:
            continue
        out[name] = _json(value, sparse=True)
    return out


def _json(value: Any, *, sparse: bool) -> Any:
    if isinstance(value, BaseModel):
        return _sparse(value) if sparse else _full(value)
    if isinstance(value, list | tuple):
        return [_json(v, sparse=sparse) for v in value]
    if isinstance(value, dict):
        return {k: _json(v, sparse=sparse) for k, v in value.items()}
    return value


def _full(model: BaseModel) -> dict[str, Any]:
    return {name: _json(getattr(model, name), sparse=False) for name in HASHED_V1[type(model)]}


def _legacy_input(model: BaseModel) -> dict[str, Any] | None:
    """0.1.0's hash input, when ``model`` uses no field that 0.1.0 did not know."""
    newer = set(HASHED[type(model)]) - set(HASHED_V1[type(model)])
    if any(name in _sparse(model) for name in newer):
        return None
    return _full(model)


def dsr_labels(project: str, kind: str, name: str, config_hash: str) -> dict[str, str]:
    return {MANAGED: "true", PROJECT: project, KIND: kind, NAME: name, CONFIG_HASH: config_hash}


def volume_params(project: str, name: str, spec: Volume) -> VolumeParams:
    labels = {**spec.labels, **dsr_labels(project, Kind.VOLUME, name, config_hash(spec))}
    return VolumeParams(
        name=name, driver=spec.driver, driver_opts=dict(spec.driver_opts), labels=labels
    )


def network_params(project: str, name: str, spec: Network) -> NetworkParams:
    labels = {**spec.labels, **dsr_labels(project, Kind.NETWORK, name, config_hash(spec))}
    return NetworkParams(name=name, labels=labels, driver=spec.driver, internal=spec.internal)


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
    bind_kinds: Mapping[str, str] | None = None,
    bind_real: Mapping[str, str] | None = None,
    shown: Container | VolumeContainer | None = None,
) -> ContainerParams:
    """``carry`` maps mount targets to anonymous volumes kept from the container replaced;
    ``volume_path`` is the VOLUME of a data-packed image, given a fresh volume of dsr's;
    ``bind_kinds`` says what each bind source is (recorded, outside the hash); ``bind_real``
    the resolved form of each bind source with a link on the way (what Docker gets); ``shown`` is
    the spec's display copy (``Desired.shown``): the stored ``dsr.spec`` holds its hash
    input, so that reasons made from it never print a value from ``${VAR}``, while the
    config hash covers the real values."""
    labels = {
        **spec.labels,
        **dsr_labels(project, kind, name, config_hash(spec, image)),
        SPEC: hash_text(shown or spec, image),
    }
    known = bind_kinds or {}
    kinds = {
        m.target: known[m.source]
        for m in spec.mounts
        if m.type == "bind" and m.source is not None and m.source in known
    }
    if kinds:
        labels[BIND_KINDS] = json.dumps(kinds, sort_keys=True, separators=(",", ":"))
    anonymous = {MANAGED: "true", PROJECT: project, KIND: Kind.ANONYMOUS_VOLUME, NAME: name}
    real = bind_real or {}
    mounts = tuple(_mount(m, carry, anonymous, real) for m in spec.mounts)
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
        stop_signal=spec.stop_signal or "",
        stop_timeout=spec.stop_timeout,
        init=spec.init,
        mounts=mounts,
        volumes_from=tuple(
            v.name if v.read_only is None else f"{v.name}:{'ro' if v.read_only else 'rw'}"
            for v in spec.volumes_from
        ),
        start=spec.state == "running",
        pull=pull,
        make_dirs=make_dirs,
        networks=tuple(
            EndpointParams(network=network, aliases=tuple(attachment.aliases))
            for network, attachment in sorted(spec.networks.items())
        ),
        healthcheck=_health(spec.healthcheck),
        memory=spec.memory,
        nano_cpus=round(spec.cpus * 1e9) if spec.cpus else None,
        shm_size=spec.shm_size,
        wait_healthy=tuple(
            sorted(n for n, d in spec.depends_on.items() if d.condition == "service_healthy")
        ),
    )


def _health(check: Healthcheck | None) -> HealthParams | None:
    if check is None:
        return None
    seconds = 1_000_000_000  # the Engine API takes nanoseconds
    return HealthParams(
        test=tuple(check.test),
        interval=(check.interval or 0) * seconds,
        timeout=(check.timeout or 0) * seconds,
        retries=check.retries or 0,
        start_period=(check.start_period or 0) * seconds,
    )


def _mount(
    mount: Mount,
    carry: Mapping[str, str],
    anonymous: Mapping[str, str],
    real: Mapping[str, str],
) -> MountParams:
    source = mount.source or ""
    if mount.type == "bind":
        source = real.get(source, source)  # Docker binds what the path resolved to now
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


def stop_timeout(live: LiveContainer) -> int:
    """Seconds Docker gives ``live`` from its stop signal to SIGKILL: what dsr created it
    with (its ``dsr.spec``), else Docker's default."""
    try:
        value = parse_json(live.labels.get(SPEC) or "{}").get("stop_timeout", DEFAULT_STOP)
    except (ValueError, AttributeError):
        return DEFAULT_STOP
    return value if isinstance(value, int) and 0 <= value <= 86400 else DEFAULT_STOP
