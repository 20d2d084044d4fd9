"""Saved plans: ``dsr plan --out FILE`` writes one, ``dsr apply FILE`` reads it back.

A saved plan is input like a spec: a pull request can carry one. So applying one checks,
in order, that it is whole (a damaged file is a damaged plan, not a spec), that it is the
one this state directory's key signed (an edited plan is refused), that every change passes
the same ownership and host-path checks as a spec (``check_saved``), and that nothing it
depends on moved since it was made (``check_fresh``): the objects of its project and the
names it uses, the writable layers of the containers it replaces or deletes, and the
images behind the tags it uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import PlanError, StalePlanError
from reconciler.files import InputFileError, parse_json, read_bounded, write_json
from reconciler.kinds import CONTAINER_KINDS, Kind
from reconciler.labels import owned_by
from reconciler.plan import Action, Change, Plan
from reconciler.plan.context import adopted, inherited, owns
from reconciler.snapshot import LiveContainer, Observed
from reconciler.spec import Desired, Policy
from reconciler.spec.models import OLD_SUFFIX
from reconciler.spec.policy import Role

SAVED_KIND = "dsr-saved-plan"
MAX_PLAN_BYTES = 64 << 20  # a plan of 10,000 changes is a few MiB
_SIGNED = ("digest", "signature")


@dataclass(frozen=True)
class SavedPlan:
    """A saved plan as read back: the plan and the spec names it was made for."""

    plan: Plan
    names: frozenset[str]


def names_of(desired: Desired) -> set[str]:
    """The names a spec gives engine objects: what a saved plan also depends on."""
    return {*desired.volumes, *desired.containers, *desired.volume_containers, *desired.networks}


def save(path: str, plan: Plan, desired: Desired, observed: Observed, key: bytes) -> None:
    """``dsr plan --out``: save ``plan``, made from ``desired`` and ``observed``, with the
    fingerprint of what it depends on, signed with ``key`` (the state directory's)."""
    from reconciler.render import render_json

    names = names_of(desired)
    tokens = fingerprint(observed, plan, names)
    public = json.loads(render_json(plan))
    save_plan(path, dataclasses.replace(plan, fingerprint=tokens), names, public, key)


def save_plan(path: str, saved: Plan, names: set[str], public: dict[str, Any], key: bytes) -> None:
    """Write a plan to apply later: the contract's JSON plus what applying it needs, with a
    digest of all of it and that digest signed with this state directory's key."""
    # "kind" first: a file cut short anywhere after it still says it was a saved plan.
    document = {"kind": SAVED_KIND, **public, "names": sorted(names), "plan": saved.to_dict()}
    digest = _digest(json.loads(json.dumps(document)))
    document["digest"] = digest
    document["signature"] = _sign(key, digest)
    write_json(path, document, indent=2)


def read_saved_plan(path: str, key: bytes) -> SavedPlan | None:
    """The saved plan in ``path``, checked whole and signed by ``key``; ``None`` when
    ``path`` is not a saved plan at all (a spec file, a folder). Raises ``PlanError``."""
    text = _head(path)
    if text is None:
        return None
    try:
        document = parse_json(text)
    except ValueError as err:
        if f'"{SAVED_KIND}"' in text:  # cut short or mangled: still a plan, not a spec
            raise PlanError(f"{path}: the saved plan is damaged: {err}") from err
        return None
    if not isinstance(document, dict) or document.get("kind") != SAVED_KIND:
        return None
    _check_signature(path, document, key)
    try:
        return SavedPlan(Plan.from_dict(document["plan"]), frozenset(document["names"]))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # AttributeError: a change (or its parameters) that is not a mapping at all
        raise PlanError(f"{path}: the saved plan is damaged: {err!r}") from err


def _head(path: str) -> str | None:
    """The text of ``path`` when it may be a saved plan (a regular JSON object file), read
    with a bound, as every file dsr reads and did not write this run."""
    if not os.path.isfile(path):
        return None
    try:
        text = read_bounded(path, MAX_PLAN_BYTES).decode("utf-8")
    except InputFileError as err:
        raise PlanError(f"{path}: cannot read the saved plan: {err}") from err
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.startswith("{") else None


def _check_signature(path: str, document: dict[str, Any], key: bytes) -> None:
    digest, signature = document.get("digest"), document.get("signature")
    if not isinstance(digest, str) or not isinstance(signature, str):
        raise PlanError(f"{path}: the saved plan is damaged: it has no digest or signature")
    body = {k: v for k, v in document.items() if k not in _SIGNED}
    if not hmac.compare_digest(_digest(body), digest):
        raise PlanError(
            f"{path}: the saved plan was edited after dsr plan wrote it (its content no "
            "longer matches its digest); run dsr plan --out again"
        )
    if not hmac.compare_digest(_sign(key, digest), signature):
        raise PlanError(
            f"{path}: the saved plan was not made with this state directory (its signature "
            "does not match this machine's key); make it with dsr plan --out here"
        )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _sign(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


# -- the same checks as a spec ------------------------------------------------------------


@dataclass(frozen=True)
class Adoptions:
    """What a project's record says it adopted, which Docker's labels cannot say: volumes
    (name -> identity), networks (name -> id), and the containers an interrupted adoption
    renamed ``NAME_dsr_old`` (NAME -> id)."""

    volumes: Mapping[str, str] = field(default_factory=dict)
    networks: Mapping[str, str] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)


def check_saved(
    path: str,
    saved: Plan,
    observed: Observed,
    policy: Policy,
    adoptions: Adoptions | None = None,
) -> None:
    """Refuse a saved plan any change of which a spec could not have produced: one that
    acts on or creates an object that is not its project's own (by its labels, or adopted
    by the project's record), or touches a host path the policy refuses."""
    by_id = {c.id: c for c in observed.containers.values()}  # one index, not a scan a change
    owned = adoptions or Adoptions()
    problems = [
        f"{change.resource}: {why}" for change in saved.changes for why in _problems(change, saved.project, observed, by_id, policy, owned)
    ]  # fmt: skip
    if problems:
        raise PlanError(f"{path}: the saved plan is refused: " + "; ".join(problems))


def _problems(
    change: Change,
    project: str,
    observed: Observed,
    by_id: Mapping[str, LiveContainer],
    policy: Policy,
    owned: Adoptions,
) -> list[str]:
    out = _target_problems(change, project, observed, by_id, owned)
    for labels in _labels_made(change):
        if not owned_by(labels, project):
            out.append(f"it would create an object that is not the project {project!r}'s")
    for name, params_name in _names(change):
        if name != params_name:
            out.append(f"its parameters name {params_name!r}, not {name!r}")
    if change.container is not None:
        binds = {m.source for m in change.container.mounts if m.type == "bind"}
        for folder in change.container.make_dirs:
            if folder not in binds:  # dsr only ever makes the folder a bind needs
                out.append(f"it would create the folder {folder}, which no mount binds")
    if change.volume is not None:
        volume = change.volume
        out += [why for _, why in policy.volume_problems(volume.driver, volume.driver_opts)]
    for host_path, role in dict.fromkeys(_host_paths(change)):
        why = (
            policy.check(host_path, role=role)
            if os.path.isabs(host_path)
            else f"{host_path} is not absolute"
        )
        if why:
            out.append(why)
    return out


def _target_problems(
    change: Change,
    project: str,
    observed: Observed,
    by_id: Mapping[str, LiveContainer],
    owned: Adoptions,
) -> list[str]:
    """The live objects a change acts on must be the project's own (not inherited), or
    adopted by it (the record)."""

    def mine(container_id: str) -> bool:
        live = by_id.get(container_id)
        if live is None:
            return False
        renamed = live.name.removesuffix(OLD_SUFFIX)
        if renamed != live.name and owned.renamed.get(renamed) == live.id:
            return True  # what an interrupted adoption renamed
        return owns(project, live, observed)

    out = [
        f"a container it removes ({c[:24]}) is not one of the project {project!r}'s"
        for c in change.removes
        if not mine(c)
    ]
    return out + _target_problem(change, project, observed, by_id, mine, owned)


def _target_problem(
    change: Change,
    project: str,
    observed: Observed,
    by_id: Mapping[str, LiveContainer],
    mine: Callable[[str], bool],
    owned: Adoptions,
) -> list[str]:
    target = change.target_id
    if target is None or change.action is Action.BLOCKED:
        return []
    what = f"the {change.kind} it acts on ({target[:24]})"
    if change.action is Action.ADOPT:
        return _adopt_problem(change, what, observed, by_id)
    if change.kind in CONTAINER_KINDS:
        if target not in by_id:
            return [f"{what} does not exist"]
        if mine(target):
            return []
        return [f"{what} is not one of the project {project!r}'s containers"]
    labels: Mapping[str, str] | None = None
    if change.kind is Kind.VOLUME and change.action is Action.CREATE:
        return []  # a migration's volume made again: it does not exist yet
    if change.kind is Kind.VOLUME and target in observed.volumes:
        if adopted(owned.volumes, observed.volumes[target]):
            return []
        labels = observed.volumes[target].labels
    elif change.kind is Kind.IMAGE and target in observed.images:
        labels = observed.images[target].labels
    elif change.kind is Kind.NETWORK:
        network = next((n for n in observed.networks.values() if n.id == target), None)
        if network is not None and owned.networks.get(network.name) == network.id:
            return []
        labels = network.labels if network is not None else None
    if labels is None:
        return [f"{what} does not exist"]
    if not owned_by(labels, project):
        return [f"{what} is not the project {project!r}'s"]
    return []


def _adopt_problem(
    change: Change, what: str, observed: Observed, by_id: Mapping[str, LiveContainer]
) -> list[str]:
    """An adoption takes over only what no dsr project owns, as a spec's plan would."""
    target = change.target_id or ""
    if change.kind in CONTAINER_KINDS:
        live = by_id.get(target)
        if live is None:
            return [f"{what} does not exist"]
        if live.name != change.name:
            return [f"{what} is named {live.name!r}, not {change.name!r}"]
        if live.managed and not inherited(live, observed):
            return [f"{what} is a dsr object, which is never adopted"]
        return []
    if change.kind is Kind.NETWORK:
        net = next((n for n in observed.networks.values() if n.id == target), None)
        if net is None or net.name != change.name:
            return [f"{what} does not exist"]
        return [f"{what} is a dsr object, which is never adopted"] if net.managed else []
    if change.kind is Kind.VOLUME and target == change.name and target in observed.volumes:
        if observed.volumes[target].managed:
            return [f"{what} is a dsr object, which is never adopted"]
        return []
    return [f"{what} cannot be adopted"]


def _labels_made(change: Change) -> Iterable[Mapping[str, str]]:
    if change.volume is not None:
        yield change.volume.labels
    if change.container is not None:
        yield change.container.labels
        yield from (m.labels for m in change.container.mounts if m.labels)
    if change.image is not None and change.image.context:
        yield change.image.labels
    if change.network is not None:
        yield change.network.labels


def _names(change: Change) -> Iterable[tuple[str, str]]:
    if change.volume is not None:
        yield change.name, change.volume.name
    if change.container is not None:
        yield change.name, change.container.name
    if change.network is not None:
        yield change.name, change.network.name


def _host_paths(change: Change) -> Iterable[tuple[str, Role]]:
    """Every host path a change makes Docker or dsr touch, with the role it plays: bind
    sources, folders to create, a local volume's devices, build contexts, backups."""
    if change.container is not None:
        binds = {m.source for m in change.container.mounts if m.type == "bind"}
        yield from ((p, "source") for p in sorted(binds | set(change.container.make_dirs)))
    if change.backup_to:
        yield change.backup_to, "destination"
    if change.restore_from:
        yield change.restore_from, "destination"  # a snapshot folder of dsr's backups
    if change.image is not None and change.image.context:
        yield change.image.context, "source"


# -- staleness ------------------------------------------------------------------------------


def fingerprint(observed: Observed, plan: Plan, names: Iterable[str]) -> dict[str, str]:
    """A token per thing a plan depends on; a saved plan keeps this, and any token that
    differs at apply time makes it stale. ``observed`` must hold the writable-layer sizes
    of the containers the plan replaces or deletes (``compute_plan`` measures them)."""
    names = set(names)
    project = plan.project
    tokens: dict[str, str] = {}
    for c in observed.containers.values():
        if c.project == project or c.name in names:
            tokens[Kind.CONTAINER.resource(c.name)] = _short(
                [c.id, c.state, c.image_id, dict(c.labels), [m.name for m in c.mounts]]
                + [sorted(c.networks)]
                + ([c.config.restart] if c.config is not None else [])
            )
    acted = {c.name for c in plan.changes if c.kind is Kind.NETWORK}  # adopted ones too
    for n in observed.networks.values():
        if n.project == project or n.name in names or n.name in acted:
            tokens[Kind.NETWORK.resource(n.name)] = _short(
                [n.id, n.driver, n.internal, dict(n.labels)]
            )
    for v in observed.volumes.values():
        if v.project == project or v.name in names:
            # Not created_at: the local driver reports its data folder's mtime there,
            # so a container writing a file would make every saved plan stale.
            tokens[Kind.VOLUME.resource(v.name)] = _short(
                [dict(v.labels), v.driver, dict(v.options)]
            )
    by_id = {c.id: c for c in observed.containers.values()}
    for change in plan.changes:
        live = by_id.get(change.target_id or "")
        if live is not None and change.action in (Action.REPLACE, Action.DELETE, Action.ADOPT):
            tokens[f"writable layer of {change.resource}"] = str(live.size_rw)
        if change.container is not None and not change.container.pull:
            image = change.container.image
            tokens[f"image {image}"] = observed.image_id(image) or "absent"
    return tokens


def measured_targets(plan: Plan) -> list[str]:
    """The containers whose writable layers a saved plan's staleness depends on."""
    return [
        c.target_id
        for c in plan.changes
        if c.target_id
        and c.kind in CONTAINER_KINDS
        and c.action in (Action.REPLACE, Action.DELETE, Action.ADOPT)
    ]


def check_fresh(observed: Observed, saved: SavedPlan) -> None:
    """Refuse a saved plan when anything it depends on moved since it was made."""
    now = fingerprint(observed, saved.plan, saved.names)
    before = saved.plan.fingerprint
    moved = []
    for key in sorted(before.keys() | now.keys()):
        if key not in now:
            moved.append(f"{key} is gone")
        elif key not in before:
            moved.append(f"{key} appeared")
        elif before[key] != now[key]:
            moved.append(f"{key} changed")
    if moved:
        raise StalePlanError(
            "the saved plan is stale: the engine changed since it was made ("
            + "; ".join(moved)
            + "); run dsr plan again"
        )


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
