"""Adoption: ``adopt: true`` takes over an existing object of the spec's name that is not
dsr's, as its own planned change (action ``adopt``, reason code ``adopt``).

- A volume is taken as it is: Docker cannot relabel one, so the apply records it in the
  project's record with its identity (``adopted``; ``LiveVolume.identity``: its folder on
  this host, else its creation time), and from then on the planner treats it as dsr's own
  (``Planning.my_volume``). A volume made again under that name behind dsr's back has
  another identity: it is not the adopted one. When its driver
  or options differ from the spec, ``on_change`` decides, as for dsr's own volumes.
- A container (or volume container) is replaced by dsr's own of the same name (risk
  ``restart``), keeping its mounts: the spec's anonymous volumes and every other anonymous
  volume only it uses (those its image declared) carry over, and the writable-layer rules
  of a replace apply.

Only an object no dsr project owns is adopted; another project's stays ``blocked``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconciler.kinds import Kind
from reconciler.plan import migrate
from reconciler.plan.context import Planning, inherited
from reconciler.plan.context import adopted as is_adopted
from reconciler.plan.model import Action as A
from reconciler.plan.model import (
    Change,
    ContainerParams,
    MountParams,
    ReasonCode,
    Risk,
    VolumeParams,
)
from reconciler.plan.params import ANONYMOUS
from reconciler.plan.reasons import human_seconds, human_size, writable_layer
from reconciler.snapshot import LiveContainer, LiveVolume
from reconciler.spec.models import NEW_SUFFIX, Container, Volume, VolumeContainer

R = ReasonCode


def takeable(planning: Planning, live: LiveContainer) -> bool:
    """No dsr project owns ``live``: it has no dsr labels, or only its image's."""
    if planning.my_container(live):
        return False
    return not live.managed or inherited(live, planning.observed)


def differences(live: LiveVolume, spec: Volume) -> str:
    """How an adopted volume differs from its spec ("" when it does not): its driver, its
    options, or a label the spec asks for (labels it has besides, compose's, are fine)."""
    out = []
    if live.driver != spec.driver:
        out.append(f"driver was {live.driver}, spec says {spec.driver}")
    if dict(live.options) != dict(spec.driver_opts):
        out.append("driver_opts differ")
    if any(live.labels.get(k) != v for k, v in spec.labels.items()):
        out.append("labels differ (Docker cannot relabel a volume)")
    return "; ".join(out)


def volume(planning: Planning, name: str, spec: Volume, live: LiveVolume, params: VolumeParams) -> Change:  # fmt: skip
    """The change that takes over ``live``, which is not dsr's, for ``spec`` (adopt: true)."""
    resource = Kind.VOLUME.resource(name)
    if not live.identity:
        return Change(
            resource,
            A.BLOCKED,
            f"a volume named {name} exists and dsr does not manage it; adopt is true, but the "
            "engine reports no creation time for it, so dsr could not tell it from a volume "
            "made again under that name later",
            R.UNMANAGED_CLASH,
        )
    what = differences(live, spec)
    if what:
        return migrate.changed(planning, name, spec, params, f"it is adopted, but {what}")
    return Change(
        resource,
        A.ADOPT,
        f"a volume named {name} exists and dsr does not manage it; adopt is true, so dsr "
        "takes it over as it is (its data, driver and options are kept; it is recorded with "
        f"{'its folder on this host' if live.origin else 'its creation time, ' + live.created_at})",
        R.ADOPT,
        target_id=name,
        identity=live.identity,
    )


def kept_mounts(planning: Planning, live: LiveContainer, params: ContainerParams) -> ContainerParams:  # fmt: skip
    """``params`` with every anonymous volume that only ``live`` uses, at a target the spec
    does not mount, carried over (an image's VOLUME would otherwise get a fresh one)."""
    taken = {m.target for m in params.mounts}
    extra = tuple(
        MountParams(type="volume", target=m.target, source=m.name)
        for m in live.mounts
        if m.type == "volume"
        and ANONYMOUS.match(m.name)
        and m.target not in taken
        # (the new half of an interrupted adoption, made with them, does not count)
        and [u for u in planning.observed.volume_users(m.name) if not u.endswith(NEW_SUFFIX)]
        == [live.name]
    )
    return dataclasses.replace(params, mounts=params.mounts + extra) if extra else params


def container(
    resource: str,
    spec: Container | VolumeContainer,
    live: LiveContainer,
    params: ContainerParams,
    depends_on: tuple[str, ...],
    pulled: str,
) -> Change:
    """The change that replaces ``live``, which is not dsr's, by dsr's own (adopt: true)."""
    what = (
        f"a container named {live.name} exists and dsr does not manage it; adopt is true, so "
        "it is replaced by dsr's own of the same name, keeping its volumes and anonymous "
        "volumes"
    )
    if isinstance(spec, Container) and spec.writable_layer == "protect" and live.size_rw:
        return Change(
            resource,
            A.BLOCKED,
            f"{what}; but its writable layer holds {human_size(live.size_rw)} and "
            f"writable_layer is protect, so it is kept: copy that data out (docker cp "
            f"{live.name}:PATH .), then docker rm {live.name}",
            R.WRITABLE_LAYER_DATA,
            risk=Risk.DATA_LOSS,
            target_id=live.id,
        )
    texts = [what]
    if live.state != "created" or live.size_rw:
        texts.append(writable_layer(live.size_rw))
    # It was not made by dsr: its stop timeout is not known; the spec's (compose's
    # stop_grace_period, imported) is what its owner gave it.
    timeout = spec.stop_timeout if isinstance(spec, Container) else 10
    if live.state in ("running", "restarting", "paused"):
        texts.append(f"stopping it may take up to {human_seconds(timeout)}")
    return Change(
        resource,
        A.ADOPT,
        "; ".join(texts) + pulled,
        R.ADOPT,
        risk=Risk.RESTART,
        depends_on=depends_on,
        target_id=live.id,
        container=params,
        stop_timeout=timeout,
    )


def recorded(adopted: Mapping[str, str], volumes: Mapping[str, LiveVolume]) -> dict[str, str]:
    """The adoption record kept: entries whose volume is still the one adopted."""
    return {
        name: identity
        for name, identity in adopted.items()
        if name in volumes and is_adopted(adopted, volumes[name])
    }
