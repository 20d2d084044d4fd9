"""Why a live container no longer matches its spec: the reasons for a ``replace``.

Compared are the ``dsr.config-hash`` label (the hash input stored in ``dsr.spec`` says
which fields changed), the image the reference now points to, the live mounts, and the
mounts a container took from its ``volumes_from`` sources when it was created. Each reason
comes with its code; the first one found is the change's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.files import parse_json
from reconciler.labels import BIND_KINDS, SPEC
from reconciler.plan import packed
from reconciler.plan.context import Planning
from reconciler.plan.model import Action, Change, ContainerParams, ReasonCode
from reconciler.plan.params import DEFAULT_STOP, expand, matches
from reconciler.plan.reasons import spec_differences
from reconciler.snapshot import CONFIG_HASH, NAME, LiveContainer
from reconciler.spec.models import Container, VolumeContainer

Reason = tuple[ReasonCode, str]
KIND_WORDS = {"dir": "directory", "file": "file"}


def replace_reasons(
    planning: Planning,
    spec: Container | VolumeContainer,
    live: LiveContainer,
    image: str,
    config_hash: str,
    shown: str,
    params: ContainerParams | None = None,
) -> list[Reason]:
    """Why ``live`` must be replaced to become ``spec``: its hash is ``config_hash``, and
    ``shown`` the JSON text of the hash input as the spec writes it (``${VAR}`` unexpanded),
    read only to explain a changed hash."""
    reasons: list[Reason] = []
    made_as = live.labels.get(NAME, live.name)
    if made_as != live.name:
        reasons.append(
            (
                ReasonCode.RENAMED,
                f"it is the container dsr created as {made_as}, renamed to {live.name} "
                "behind dsr's back",
            )
        )
    if isinstance(spec, Container) and spec.networks and set(live.networks) != set(spec.networks):
        reasons.append(
            (
                ReasonCode.NETWORKS_DRIFTED,
                f"it is attached to {', '.join(live.networks) or 'no network'}, spec says "
                f"{', '.join(sorted(spec.networks))}",
            )
        )
    if live.state == "dead":
        reasons.append((ReasonCode.STOPPED, "it is dead, and Docker cannot start it again"))
    reasons += [
        (ReasonCode.CONTEXT_CHANGED, text)
        for text in packed.image_change_reasons(planning, spec, live, image)
    ]
    explained: set[str] = set()  # mount targets the spec difference already names
    changed = not matches(live.labels.get(CONFIG_HASH), spec, image, now=config_hash)
    if changed:
        model = type(spec)
        stored = _json(live.labels.get(SPEC))
        old = expand(model, stored) if stored is not None else None
        # The display form the new labels store: values from ${VAR} as written.
        new = expand(model, json.loads(shown))
        if old is not None:
            _hide_expanded(old, new)
        if reasons and old is not None:
            old["image"] = new["image"]  # the data-packed image's own reason says it better
        if old is not None and _only_in_place(old, new, live, spec, image):
            # Only what docker update changes in place (the restart policy): an update,
            # planned from the live value (``restart_change``), not a replace.
            changed = False
        elif old != new:
            reasons.append((ReasonCode.CONFIG_CHANGED, spec_differences(old, new)))
            explained = _changed_targets(old, new)
        elif not reasons:
            reasons.append(
                (
                    ReasonCode.CONFIG_CHANGED,
                    "a value it takes from the environment (${VAR}) changed",
                )
            )
    current = planning.observed.image_id(image)
    if current is not None and live.image_id and live.image_id != current:
        reasons.append(
            (
                ReasonCode.IMAGE_CHANGED,
                f"image {image} now points to {current[7:19]}, the container runs "
                f"{live.image_id[7:19]}",
            )
        )
    if not changed and params is not None:  # the spec is as made: did the engine move?
        reasons += [(ReasonCode.SETTINGS_DRIFTED, text) for text in settings_drift(params, live)]
    drifted = mount_drift(
        spec, live, explained, planning.desired.bind_kinds, planning.desired.bind_real
    )
    reasons += [(ReasonCode.MOUNTS_DRIFTED, text) for text in drifted]
    if isinstance(spec, Container):
        reasons += volumes_from_drift(planning, spec, live)
    return reasons


IN_PLACE = frozenset({"restart"})  # what docker update changes without a new container


def _only_in_place(
    old: dict[str, Any],
    new: dict[str, Any],
    live: LiveContainer,
    spec: Container | VolumeContainer,
    image: str,
) -> bool:
    """The spec changed only what ``docker update`` changes: the stored and new inputs
    differ in those fields alone, and the spec with the stored values hashes to the live
    hash (so no ``${VAR}`` value changed behind an unchanged display form)."""
    keys = set(old) | set(new)
    differ = {k for k in keys if old.get(k) != new.get(k)}
    if not differ or not differ <= IN_PLACE or not isinstance(spec, Container):
        return False
    try:
        before = spec.model_copy(update={k: old.get(k) for k in differ})
    except ValueError:
        return False
    return matches(live.labels.get(CONFIG_HASH), before, image)


def settings_drift(params: ContainerParams, live: LiveContainer) -> list[str]:
    """Settings the spec sets whose live value (docker inspect) is not what dsr made:
    each needs a new container. Values are named, never printed (env may hold secrets)."""
    have = live.config
    if have is None:
        return []
    out = []
    for what, wanted, actual in (
        ("command", params.command, have.command),
        ("entrypoint", params.entrypoint or None, have.entrypoint),
        ("working_dir", params.working_dir or None, have.working_dir),
        ("user", params.user or None, have.user),
        ("stop_signal", params.stop_signal or None, have.stop_signal),
        # Docker holds no stop timeout for a container made without one: its default, 10.
        ("stop_timeout", params.stop_timeout, _or(have.stop_timeout, DEFAULT_STOP)),
    ):
        if wanted is not None and wanted != actual:
            out.append(f"its live {what} is not the one the spec sets")
    present = set(have.env)
    missing = sorted(e.split("=", 1)[0] for e in params.env if e not in present)
    if missing:
        out.append(f"its live env differs in {', '.join(missing)}")
    if params.init and not have.init:
        out.append("it runs without Docker's init, spec says init: true")
    if not params.network_disabled and port_bindings(params.ports) != have.bindings:
        out.append("its live port bindings are not the ones the spec publishes")
    return out


def port_bindings(ports: tuple[str, ...]) -> frozenset[str]:
    """``ports`` as ``LiveConfig.bindings`` holds them: CONTAINER/PROTO=HOST_IP:HOST_PORT."""
    out = set()
    for entry in ports:
        ip, host, container, proto = split_port(entry)
        outside = port_range(host) if host else []
        for offset, port in enumerate(port_range(container)):
            host_port = str(outside[offset]) if outside else ""
            out.add(f"{port}/{proto}={ip}:{host_port}")
    return frozenset(out)


def split_port(entry: str) -> tuple[str, str, str, str]:
    """``[IP:][HOST:]CONTAINER[/PROTO]`` as (ip, host, container, proto), proto "tcp" if
    unset. One parser for drift and for ``dockerargs.ports``: if they read a port entry
    differently, a container dsr just created would be seen as drifted."""
    spec, _, proto = entry.partition("/")
    ip, host, container = "", "", spec
    if spec.startswith("["):  # an IPv6 address
        end = spec.index("]")
        ip, rest = spec[1:end], spec[end + 2 :]
        host, _, container = rest.rpartition(":")
    else:
        parts = spec.split(":")
        if len(parts) == 3:
            ip, host, container = parts
        elif len(parts) == 2:
            host, container = parts
    return ip, host, container, proto or "tcp"


def port_range(text: str) -> list[int]:
    """A port or range as a list: ``8000-8002`` is [8000, 8001, 8002], ``80`` is [80]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def restart_change(
    resource: str, live: LiveContainer, params: ContainerParams, planned: tuple[str, ...]
) -> Change | None:
    """An in-place ``docker update`` when the live restart policy is not the spec's (set by
    hand, or the spec changed only that): no new container, no restart."""
    if live.config is None or live.config.restart == params.restart:
        return None
    stored = _json(live.labels.get(SPEC)) or {}
    by_hand = stored.get("restart", "no") == params.restart
    start = params.start and live.state not in ("running", "restarting", "removing")
    return Change(
        resource,
        Action.UPDATE,
        f"its restart policy is {live.config.restart} on the engine, spec says "
        f"{params.restart}: changed in place with docker update, without a restart"
        + ("; it is then started" if start else ""),
        ReasonCode.RESTART_DRIFTED if by_hand else ReasonCode.CONFIG_CHANGED,
        depends_on=planned,
        target_id=live.id,
        container=dataclasses.replace(params, start=start),
    )


def mount_drift(
    spec: Container | VolumeContainer,
    live: LiveContainer,
    explained: set[str],
    bind_kinds: Mapping[str, str],
    bind_real: Mapping[str, str] | None = None,
) -> list[str]:
    out = []
    real = bind_real or {}
    made = _json(live.labels.get(BIND_KINDS)) or {}
    for mount in spec.mounts:
        was, now = made.get(mount.target), bind_kinds.get(mount.source or "")
        if mount.type == "bind" and was in KIND_WORDS and now in KIND_WORDS and was != now:
            out.append(
                f"the bind source {mount.source} at {mount.target} was a {KIND_WORDS[was]} "
                f"when the container was made and is now a {KIND_WORDS[now]}"
            )
            continue
        if mount.type == "tmpfs" or mount.target in explained:
            continue
        have = live.mount_at(mount.target)
        if have is None:
            out.append(f"{mount.target} is not mounted on the live container")
        elif mount.type == "volume" and mount.source and have.name != mount.source:
            out.append(
                f"{mount.target} mounts volume {have.name or have.source}, spec says {mount.source}"
            )
        elif mount.type == "bind" and have.source != real.get(mount.source or "", mount.source):
            now_real = real.get(mount.source or "")
            via = f" (which resolves to {now_real} now)" if now_real else ""
            out.append(f"{mount.target} binds {have.source}, spec says {mount.source}{via}")
        elif have.read_only != mount.read_only:
            was = "read-only" if have.read_only else "read-write"
            now = "read-only" if mount.read_only else "read-write"
            out.append(f"mounts differ: {mount.target} was {was}, spec says {now}")
    return out


def volumes_from_drift(planning: Planning, spec: Container, live: LiveContainer) -> list[Reason]:
    out: list[Reason] = []
    for source in spec.volumes_from:
        change = planning.planned.get(planning.resource_of(source.name))
        if change is not None and change.action in (Action.CREATE, Action.REPLACE):
            out.append(
                (
                    ReasonCode.VOLUMES_FROM_REPLACED,
                    f"{source.name} is "
                    f"{'created' if change.action is Action.CREATE else 'replaced'}, and "
                    "volumes_from mounts are fixed when a container is created",
                )
            )
            continue
        origin = planning.observed.containers.get(source.name)
        if origin is None:
            continue
        for mount in origin.mounts:
            have = live.mount_at(mount.target)
            if have is None or (have.name, have.source) != (mount.name, mount.source):
                out.append(
                    (
                        ReasonCode.MOUNTS_DRIFTED,
                        f"its volumes from {source.name} are stale ({mount.target} differs)",
                    )
                )
                break
    return out


def _changed_targets(old: dict[str, Any] | None, new: dict[str, Any]) -> set[str]:
    """Targets of mounts whose spec changed: the live mount differs there as a matter of
    course, and saying so a second time would repeat the spec difference."""
    if old is None:
        return set()
    before = {m.get("target"): m for m in old.get("mounts") or () if isinstance(m, dict)}
    return {m["target"] for m in new.get("mounts") or () if before.get(m["target"]) != m}


_TEMPLATE = re.compile(r"\$\{[^}]*\}")


def _hide_expanded(old: dict[str, Any], new: dict[str, Any]) -> None:
    """A container made before ``dsr.spec`` held values as written stores them expanded:
    where the spec now writes a ``${VAR}`` the stored value lacks, the stored value may be
    an old secret, and is not shown. Hidden value by value (an env value, a mount's
    source), so every field keeps its shape for the words that describe it."""
    for key, value in new.items():
        if key in old:
            old[key] = _hidden(old[key], value)


_HIDDEN = "(stored expanded, not shown)"


def _hidden(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: _hidden(v, new[k]) if k in new else v for k, v in old.items()}
    if isinstance(old, list) and isinstance(new, list):
        return [_hidden(o, n) for o, n in zip(old, new, strict=False)] + old[len(new) :]
    wanted = set(_TEMPLATE.findall(json.dumps(new)))
    if wanted and not wanted <= set(_TEMPLATE.findall(json.dumps(old))):
        return _HIDDEN
    return old


def _json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = parse_json(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
